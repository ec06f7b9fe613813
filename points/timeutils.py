"""The one place where a community's local day is computed from an instant."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache


@lru_cache(maxsize=256)
def community_zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_day(instant: dt.datetime, timezone_name: str) -> dt.date:
    """The calendar date of an aware instant in the community's time zone."""
    if instant.tzinfo is None:
        raise ValueError("aware datetimes only")
    return instant.astimezone(community_zone(timezone_name)).date()


def month_start(day: dt.date, add: int = 0) -> dt.date:
    """The first day of ``day``'s month, or of the month ``add`` months later (or earlier)."""
    index = day.year * 12 + day.month - 1 + add
    return dt.date(index // 12, index % 12 + 1, 1)


def week_start(day: dt.date) -> dt.date:
    """Weeks start on Monday (ISO 8601), as in China."""
    return day - dt.timedelta(days=day.weekday())


def today(timezone_name: str, now: dt.datetime | None = None) -> dt.date:
    from django.utils import timezone

    return local_day(now or timezone.now(), timezone_name)
