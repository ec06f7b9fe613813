"""Rate limits per API key and per member token, counted atomically.

Fixed one-minute (configurable) windows. With ``REDIS_URL`` set the counter is a Redis
``INCR`` (with its expiry set in the same pipeline); otherwise a PostgreSQL upsert
``… ON CONFLICT DO UPDATE SET count = count + 1 RETURNING count`` on an unlogged table. Both are
single atomic operations, so concurrent requests cannot slip past the limit the way DRF's stock
throttles (read the history, then write it back) allow. Over the limit: 429 problem+json with
``Retry-After`` (seconds to the next window).
"""

from __future__ import annotations

import random
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from api.auth import MemberGrant
from points.models import CommunityApiKey

UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` → (600, 60)."""
    count, _, unit = rate.partition("/")
    return int(count), UNITS[unit.strip().lower()]


@lru_cache(maxsize=4)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def counter_hit(ident: str, period: int, now: float | None = None) -> tuple[int, int]:
    """Count one hit for ``ident`` in the current window; (hits so far, seconds left)."""
    now = time.time() if now is None else now
    window = int(now // period)
    left = max(int(period - now % period), 1)
    url = getattr(settings, "REDIS_URL", "")
    if url:
        key = f"ratelimit:{ident}:{window}"
        pipe = _redis(url).pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, period + 1)
        count, _ = pipe.execute()
        return int(count), left
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO api_rate_window (ident, window_start, hits) VALUES (%s, %s, 1)
            ON CONFLICT (ident, window_start) DO UPDATE SET hits = api_rate_window.hits + 1
            RETURNING hits
            """,
            [ident, window * period],
        )
        count = cursor.fetchone()[0]
        if random.random() < 0.01:  # noqa: S311 - housekeeping, not security
            cursor.execute(
                "DELETE FROM api_rate_window WHERE window_start < %s", [(window - 2) * period]
            )
    return int(count), left


class AtomicRateThrottle(BaseThrottle):
    """``API_RATE_LIMITS = {"key": "600/min", "member": "120/min"}``; a missing entry means
    no limit for that kind of caller."""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        limits = getattr(settings, "API_RATE_LIMITS", {})
        auth = request.auth
        if isinstance(auth, CommunityApiKey) and "key" in limits:
            ident, rate = f"key:{auth.pk}", limits["key"]
        elif isinstance(auth, MemberGrant) and "member" in limits:
            ident, rate = f"member:{auth.member.pk}", limits["member"]
        else:
            return True
        allowed, period = parse_rate(rate)
        hits, left = counter_hit(ident, period)
        if hits > allowed:
            self.retry_after = left
            return False
        return True

    def wait(self) -> float | None:
        return self.retry_after
