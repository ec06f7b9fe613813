"""Settings for the test suite: DATABASE_URL, else the local server on :5432, else embedded."""

import os

os.environ.setdefault("DB_PREFER_LOCAL", "1")

from config.database import filesystem_broker_options, task_queue_dir  # noqa: E402

from .local import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# Tests revoke keys and expect the next request to fail; the cache has its own test.
API_KEY_CACHE_SECONDS = 0.0

# No rate limits in tests but the throttle's own (tests/api/test_rate_limits.py).
API_RATE_LIMITS = {}  # noqa: F405
REDIS_URL = ""

# Tasks the tests queue on the filesystem broker name rows of the test database, which is gone
# when the run ends: never in the folder of the database DATABASE_URL names (``make run``'s).
if CELERY_BROKER_URL.startswith("filesystem://"):  # noqa: F405
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(task_queue_dir("dbname=tests"))
