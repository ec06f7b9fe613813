"""The Redis database the rate-limit tests count in, one per pytest-xdist worker: each test
flushes it first, and two workers sharing one reset each other's counters mid-test (their
members and keys have the same ids, each worker having its own PostgreSQL database)."""

from __future__ import annotations

import os

_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
# 15 for the first (or only) worker, then 13, 12, … down to 1 (14 is the bench's).
REDIS = f"redis://127.0.0.1:6379/{15 if _WORKER == 0 else max(1, 14 - _WORKER)}"


def redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
