"""Django REST Framework and OpenAPI settings."""

import os

REST_FRAMEWORK = {
    "DEFAULT_THROTTLE_CLASSES": ["api.throttles.AtomicRateThrottle"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.ApiKeyAuthentication",
        "api.auth.MemberTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.HasCommunityScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.LimitedJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api.middleware.FastContentNegotiation",
    "EXCEPTION_HANDLER": "api.errors.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Community incentives API",
    "DESCRIPTION": (
        "Bots post contribution events into an exactly-once points ledger and read members' "
        "balances. Authenticate with `Authorization: Api-Key <key>`; a key belongs to one "
        "community and carries scopes. Errors are RFC 9457 problem details."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Security schemes (ApiKeyAuth, MemberToken) come from the extensions in api/schema.py.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.problem_media_type",
        "api.schema.strict_request_strings",
    ],
}

# Requests per caller and window (api/throttles.py); counted in Redis when REDIS_URL is set,
# else in PostgreSQL, by leases of 1% of the limit (at most 100) per process: a fleet never
# admits more than the limit, and may refuse up to processes x (lease - 1) requests early.
# Batches count as one request.
API_RATE_LIMITS = {
    kind: rate
    for kind, rate in (
        ("key", os.environ.get("API_RATE_LIMIT_KEY", "1200/min")),
        ("member", os.environ.get("API_RATE_LIMIT_MEMBER", "120/min")),
    )
    if rate.strip()  # an empty value switches that limit off
}
REDIS_URL = os.environ.get("REDIS_URL", "").strip()

# How far before its community's creation an event may be back-dated (docs/decisions.md 21).
EVENTS_BACKFILL_DAYS = int(os.environ.get("EVENTS_BACKFILL_DAYS", "365"))
# Months of events and ledger kept online (points/history.py, decision 49): events may not be
# dated before the first of them, and only older months may be archived.
HISTORY_ONLINE_MONTHS = int(os.environ.get("HISTORY_ONLINE_MONTHS", "24"))

# Group commit of concurrent single events in one process (points/ingest/group.py, decision
# 46): "0" ingests each request in its own transaction (for measuring, or a single-threaded
# server where groups cannot form anyway).
EVENTS_GROUP_COMMIT = os.environ.get("EVENTS_GROUP_COMMIT", "1") == "1"

# Rank lookups and single events by API key answered before Django's handler (api/fastpath.py,
# decision 58: the same answers for less CPU). Off: every request goes through Django (for an
# A/B measurement, or if the lean path were ever suspected).
API_FAST_PATHS = os.environ.get("API_FAST_PATHS", "1") == "1"
