"""The environment the tests start our real server with (gunicorn as ``bench/server.py`` and
``make run`` start it): this run's database, the local settings, no rate limits, no Redis, and
tasks to a filesystem queue in the test's own data folder (nobody consumes it)."""

from __future__ import annotations

import os
from pathlib import Path


def server_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "API_RATE_LIMIT_KEY": "",
        "API_RATE_LIMIT_MEMBER": "",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "INCENTIVES_DATA_DIR": str(data_dir),
        **extra,
    }
