"""One Redis client per URL and process, for the counters and marks that processes of a fleet
share (rate-limit leases, replica write marks, the leaderboard refresh claim)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=4)
def redis_client(url: str) -> Any:
    """A client that gives up within a second: every caller has a fallback."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
