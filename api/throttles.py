"""Rate limits per API key and per member token, counted atomically, mostly without a round trip.

Fixed one-minute (configurable) windows. The shared counter is a Redis ``INCRBY`` (with its
expiry set in the same pipeline) when ``REDIS_URL`` is set, otherwise a PostgreSQL upsert
``… ON CONFLICT DO UPDATE SET hits = hits + n RETURNING hits`` on an unlogged table. Both are
single atomic operations, so concurrent requests cannot slip past the limit the way DRF's stock
throttles (read the history, then write it back) allow. Over the limit: 429 problem+json with
``Retry-After`` (seconds to the next window).

**Leases.** A process does not count each request in the shared counter: it takes a *lease* of
``lease_size(limit)`` hits at once (one ``INCRBY``; 1% of the limit, at least 1, at most
``LEASE_MAX``) and admits requests from it in memory until it is used up or the window ends.
The shared counter therefore counts every hit that any process may still admit, and a process
only admits hits its lease covers, so:

* **a fleet never admits more than the limit in a window**, whatever the number of processes
  (the lease that crosses the limit is cut to what is left under it);
* the price is the other way: a lease a process took but did not use before the window ended
  is lost, so a caller whose requests are spread over ``P`` processes can be refused after as
  few as ``limit − P × (lease − 1)`` admitted requests in a window (at 1,200/min, a lease of
  12, 6 worker processes: 1,134);
* a limit under 200 per window has a lease of 1: every request is counted in the shared counter
  as before, exact to the request.

Once the shared counter says a caller's window is used up, the process refuses that caller's
further requests in the window without asking again (the counter never goes down within one).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from api.auth import MemberGrant
from config.redis_client import redis_client
from points.models import CommunityApiKey

UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600}
LEASE_FRACTION = 0.01  # of the limit, per lease
LEASE_MAX = 100  # hits per lease at most


def parse_rate(rate: str) -> tuple[int, int]:
    """``"600/min"`` → (600, 60)."""
    count, _, unit = rate.partition("/")
    return int(count), UNITS[unit.strip().lower()]


def lease_size(allowed: int) -> int:
    """Hits a process takes from the shared counter at once for a limit of ``allowed``."""
    return max(1, min(LEASE_MAX, int(allowed * LEASE_FRACTION)))


def counter_hit(
    ident: str, period: int, now: float | None = None, hits: int = 1
) -> tuple[int, int]:
    """Count ``hits`` for ``ident`` in the current window of the shared counter; (hits so far,
    this call's included; seconds left in the window)."""
    now = time.time() if now is None else now
    window = int(now // period)
    left = max(int(period - now % period), 1)
    url = getattr(settings, "REDIS_URL", "")
    if url:
        key = f"ratelimit:{ident}:{window}"
        pipe = redis_client(url).pipeline(transaction=True)
        pipe.incrby(key, hits)
        pipe.expire(key, period + 1)
        count, _ = pipe.execute()
        return int(count), left
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO api_rate_window (ident, window_start, hits) VALUES (%s, %s, %s)
            ON CONFLICT (ident, window_start) DO UPDATE SET hits = api_rate_window.hits + %s
            RETURNING hits
            """,
            [ident, window * period, hits, hits],
        )
        count = cursor.fetchone()[0]
        if random.random() < 0.01:  # noqa: S311 - housekeeping, not security
            cursor.execute(
                "DELETE FROM api_rate_window WHERE window_start < %s", [(window - 2) * period]
            )
    return int(count), left


@dataclass
class _Lease:
    window: int
    remaining: int  # hits this process may still admit in the window; 0 and spent: refuse


_leases: dict[tuple[str, str, int, int], _Lease] = {}
_leases_lock = threading.Lock()


def rate_limit_leases_clear() -> None:
    """Forget this process's leases (tests that reuse an ident with a fresh counter)."""
    with _leases_lock:
        _leases.clear()


def counter_take(
    ident: str, allowed: int, period: int, now: float | None = None
) -> tuple[bool, int]:
    """Admit one request of ``ident`` under ``allowed`` per ``period`` seconds: (admitted,
    seconds left in the window). From this process's lease when it has one, else from a new
    lease taken in the shared counter (see the module's docstring for the bounds)."""
    now = time.time() if now is None else now
    window = int(now // period)
    left = max(int(period - now % period), 1)
    slot = (ident, getattr(settings, "REDIS_URL", "") or "postgresql", allowed, period)
    with _leases_lock:
        lease = _leases.get(slot)
        if lease is not None and lease.window == window:
            if lease.remaining > 0:
                lease.remaining -= 1
                return True, left
            if lease.remaining < 0:  # the window is used up
                return False, left
    size = lease_size(allowed)
    total, _ = counter_hit(ident, period, now, hits=size)
    granted = max(0, min(size, allowed - (total - size)))
    with _leases_lock:
        if len(_leases) > 10_000:
            _leases.clear()
        current = _leases.get(slot)
        if current is not None and current.window == window and current.remaining > 0:
            current.remaining += max(granted - 1, 0)  # another thread's lease: add this one
        else:
            # granted == 0: the counter is at the limit for this window; remember it (-1).
            _leases[slot] = _Lease(window, granted - 1 if granted else -1)
    return granted > 0, left


# Where a request the lean path (``api.fastpath``) already counted carries its decision
# (``None``: admitted; else seconds to wait), so that Django, serving it after all, does not
# count it twice. A WSGI environ key without ``HTTP_``: no caller's header can set it.
RATE_DECIDED = "incentives.rate_limit"
_UNDECIDED = object()


def rate_limit_take(auth: Any) -> int | None:
    """Admit one request of the caller ``auth`` (a key or a member grant) under
    ``API_RATE_LIMITS``: ``None`` when admitted (or no limit applies), else the seconds until
    its window ends."""
    limits = getattr(settings, "API_RATE_LIMITS", {})
    if isinstance(auth, CommunityApiKey) and "key" in limits:
        ident, rate = f"key:{auth.pk}", limits["key"]
    elif isinstance(auth, MemberGrant) and "member" in limits:
        ident, rate = f"member:{auth.member.pk}", limits["member"]
    else:
        return None
    allowed, period = parse_rate(rate)
    admitted, left = counter_take(ident, allowed, period)
    return None if admitted else left


class AtomicRateThrottle(BaseThrottle):
    """``API_RATE_LIMITS = {"key": "600/min", "member": "120/min"}``; a missing entry means
    no limit for that kind of caller."""

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        decided = request.META.get(RATE_DECIDED, _UNDECIDED)
        if decided is _UNDECIDED:
            decided = rate_limit_take(request.auth)
        self.retry_after = decided
        return decided is None

    def wait(self) -> float | None:
        return self.retry_after
