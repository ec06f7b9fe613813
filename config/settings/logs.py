"""Logging to stdout, one JSON object per line (``LOG_FORMAT=plain`` for a human-readable
line), every record carrying the request id of the request or task it belongs to."""

import os

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.observability.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "config.observability.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain" if os.environ.get("LOG_FORMAT") == "plain" else "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # A 4xx is the caller's mistake and already on the access line; 5xx stay (with the
        # traceback), so that each request writes one line unless something broke.
        "django.request": {"level": "ERROR"},
    },
}

# /metrics (Prometheus); set a token to require "Authorization: Bearer <token>".
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
