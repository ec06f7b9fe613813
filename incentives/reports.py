"""The operator's reports: read-only selectors, each one or two set-based SQL statements over one
community and a window, every hour, day, week and month in the community's time zone.

Definitions (the figures only mean something with a fixed definition, so they are written here
once and the API, the dashboard and docs/incentives.md repeat them):

* **Active** (DAU, WAU, MAU, retention, the stage rule's WAU): a member with at least one
  ``check_in`` or ``message`` event in the period. Reactions and shares alone do not make a
  member active: they are too cheap to inflate.
* Reversed events (``reversed_at`` set) count in no report.
* Days, weeks (ISO, Monday first) and months are the community's local ones: an event's
  ``local_day`` (computed at ingestion by ``points.timeutils.local_day``) and, for hours,
  ``occurred_at AT TIME ZONE community.timezone`` in SQL. A window starts at a local midnight
  (``_window``), converted to an instant once in Python so that the event index on
  ``(community, type, occurred_at)`` serves the range.
* **Author class** (content mix): ``kol`` for members with the role KOL, ``official`` for owner
  and staff, ``ugc`` for everyone else, by their role today (roles have no history).
* **DAU/MAU** of a month: the month's average DAU (over its elapsed days, days without anyone
  active counting as 0) divided by its MAU.

``reward_spend`` reads the rewards tables by name (``rewards_*``): ``incentives`` does not import
``rewards`` (the dependency runs the other way), the SQL is the only coupling.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone

from points.exceptions import DomainError, FieldError
from points.expiry import CREDIT_KINDS
from points.models import Community, EventType
from points.selectors import rules_in_force
from points.timeutils import community_zone, month_start, week_start
from points.timeutils import today as local_today

ACTIVE_TYPES = (EventType.CHECK_IN.value, EventType.MESSAGE.value)
CONTENT_TYPES = (
    EventType.UGC_POST.value,
    EventType.SHARE.value,
    EventType.CONTENT_FEATURED.value,
)
OFFICIAL_ROLES = ("owner", "staff")
STAGES = ("kol_driven", "official_content", "ugc_driven")
# Morning 06-11, noon 11-14, afternoon 14-18, evening 18-24 (docs/incentives.md); night 00-06.
SLOTS = (("night", 0, 6), ("morning", 6, 11), ("noon", 11, 14), ("afternoon", 14, 18),
         ("evening", 18, 24))  # fmt: skip

DEFAULT_WEEKS = 12
DEFAULT_MONTHS = 12
USUAL_HOUR_DAYS = 30
EXPIRING_WITHIN_DAYS = 30


class ReportNotFound(DomainError):
    code = "report_not_found"
    status = 404
    title = "Report not found"


@dataclass(frozen=True)
class StageRule:
    """The content-mix stage rule (spec 3.5, notes section 7): a week *suggests* a stage when
    that class's share of the week's content reaches its threshold (checked in this order: KOL,
    official, UGC; UGC also needs its distinct authors to be at least ``ugc_authors_of_wau`` of
    the week's WAU). The *reported* stage changes only after ``weeks_to_change`` consecutive
    weeks suggest the same new stage; a week suggesting nothing (mixed, or no content) breaks
    the run and keeps the reported stage."""

    kol_share: float = 0.5
    official_share: float = 0.5
    ugc_share: float = 0.5
    ugc_authors_of_wau: float = 0.1
    weeks_to_change: int = 4

    def describe(self) -> str:
        return (
            f"KOL-driven if KOL content >= {self.kol_share:.0%}; official content if owner and "
            f"staff content >= {self.official_share:.0%}; UGC-driven if everyone else's content "
            f">= {self.ugc_share:.0%} and their distinct authors >= "
            f"{self.ugc_authors_of_wau:.0%} of the week's WAU (checked in that order). The "
            f"reported stage changes only after {self.weeks_to_change} consecutive weeks "
            "suggesting the same new stage."
        )

    def suggest(self, kol: int, official: int, ugc: int, ugc_authors: int, wau: int) -> str | None:
        total = kol + official + ugc
        if total == 0:
            return None
        if kol / total >= self.kol_share:
            return "kol_driven"
        if official / total >= self.official_share:
            return "official_content"
        if ugc / total >= self.ugc_share and ugc_authors >= self.ugc_authors_of_wau * wau:
            return "ugc_driven"
        return None


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or timezone.now()


def _midnight(day: dt.date, tz: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=community_zone(tz))


def _window(community: Community, *, weeks: int, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The last ``weeks`` local ISO weeks, the current one included: (first Monday, today)."""
    today = local_today(community.timezone, now)
    return week_start(today) - dt.timedelta(weeks=weeks - 1), today


def _months_back(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 1)


def _rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


# --- activity by hour and day --------------------------------------------------------------------


def activity_heatmap(
    community: Community, *, weeks: int = DEFAULT_WEEKS, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Events (every type) by local hour (0-23) × ISO day of week (1 = Monday … 7), the peak
    hour and the day slots. ``cells[d - 1][h]`` is the count for ISO day ``d`` and hour ``h``."""
    now = _now(now)
    first, today = _window(community, weeks=weeks, now=now)
    rows = _rows(
        """
        SELECT extract(isodow FROM occurred_at AT TIME ZONE %s)::int AS dow,
               extract(hour FROM occurred_at AT TIME ZONE %s)::int AS hour,
               count(*)
        FROM points_event
        WHERE community_id = %s AND occurred_at >= %s AND occurred_at <= %s
          AND reversed_at IS NULL
        GROUP BY 1, 2
        """,
        [community.timezone, community.timezone, community.pk,
         _midnight(first, community.timezone), now],
    )  # fmt: skip
    cells = [[0] * 24 for _ in range(7)]
    for dow, hour, count in rows:
        cells[dow - 1][hour] = count
    by_hour = [sum(cells[d][h] for d in range(7)) for h in range(24)]
    by_day = [sum(row) for row in cells]
    total = sum(by_day)
    peak_hour = max(range(24), key=lambda h: (by_hour[h], -h)) if total else None
    peak_cell = (
        max(((d, h) for d in range(7) for h in range(24)), key=lambda c: cells[c[0]][c[1]])
        if total
        else None
    )
    return {
        "timezone": community.timezone,
        "from": first,
        "to": today,
        "weeks": weeks,
        "total": total,
        "cells": cells,
        "by_hour": by_hour,
        "by_day": by_day,
        "peak_hour": peak_hour,
        "peak_cell": None if peak_cell is None else {"day": peak_cell[0] + 1, "hour": peak_cell[1]},
        "slots": {name: sum(by_hour[lo:hi]) for name, lo, hi in SLOTS},
    }


# --- DAU, WAU, MAU -------------------------------------------------------------------------------


def active_users(
    community: Community, *, weeks: int = DEFAULT_WEEKS, now: dt.datetime | None = None
) -> dict[str, Any]:
    """DAU per local day, WAU per ISO week (the weeks starting in the window), MAU per month,
    and DAU/MAU per month, over the last ``weeks`` weeks widened to whole months (so that the
    first month's MAU is whole)."""
    now = _now(now)
    first_week, today = _window(community, weeks=weeks, now=now)
    first = month_start(first_week)
    rows = _rows(
        """
        WITH active AS (
            SELECT DISTINCT member_id, local_day
            FROM points_event
            WHERE community_id = %s AND type = ANY(%s) AND occurred_at >= %s
              AND occurred_at <= %s AND reversed_at IS NULL
        )
        SELECT 'day', local_day, count(*) FROM active GROUP BY local_day
        UNION ALL
        SELECT 'week', date_trunc('week', local_day)::date, count(DISTINCT member_id)
        FROM active GROUP BY 2
        UNION ALL
        SELECT 'month', date_trunc('month', local_day)::date, count(DISTINCT member_id)
        FROM active GROUP BY 2
        """,
        [community.pk, list(ACTIVE_TYPES), _midnight(first, community.timezone), now],
    )
    found: dict[str, dict[dt.date, int]] = {"day": {}, "week": {}, "month": {}}
    for grain, start, count in rows:
        found[grain][start] = count
    days = [first + dt.timedelta(days=i) for i in range((today - first).days + 1)]
    dau = [found["day"].get(d, 0) for d in days]
    daily = [{"day": d, "dau": n} for d, n in zip(days, dau, strict=True)]
    weekly = [
        {"week": w, "wau": found["week"].get(w, 0)}
        for w in sorted({week_start(d) for d in days})
        if w >= first  # whole weeks only: a week begun in the month before is left out
    ]
    monthly = []
    for m in sorted({month_start(d) for d in days}):
        in_month = [n for d, n in zip(days, dau, strict=True) if month_start(d) == m]
        mau = found["month"].get(m, 0)
        average = sum(in_month) / len(in_month)
        monthly.append(
            {
                "month": m,
                "mau": mau,
                "average_dau": round(average, 2),
                "dau_mau": _ratio(average, mau),
                "days": len(in_month),
            }
        )
    return {
        "timezone": community.timezone,
        "from": first,
        "to": today,
        "active_means": "at least one check_in or message event that day, week or month",
        "daily": daily,
        "weekly": weekly,
        "monthly": monthly,
    }


# --- retention -----------------------------------------------------------------------------------


def retention(
    community: Community, *, months: int = DEFAULT_MONTHS, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Cohorts by local join month (the last ``months`` months, the current one included): how
    many joined, and the share of them active in their join month (offset 0) and in each month
    after it up to the current one."""
    now = _now(now)
    today = local_today(community.timezone, now)
    first = _months_back(today, months - 1)
    since = _midnight(first, community.timezone)
    rows = _rows(
        """
        WITH cohort AS (
            SELECT id, date_trunc('month', joined_at AT TIME ZONE %s)::date AS cohort
            FROM points_member
            WHERE community_id = %s AND joined_at >= %s AND joined_at <= %s
        ),
        active AS (
            SELECT DISTINCT member_id, date_trunc('month', local_day)::date AS month
            FROM points_event
            WHERE community_id = %s AND type = ANY(%s) AND occurred_at >= %s
              AND occurred_at <= %s AND reversed_at IS NULL
        )
        SELECT c.cohort, -1 AS offset_, count(*) FROM cohort c GROUP BY c.cohort
        UNION ALL
        SELECT c.cohort,
               ((extract(year FROM a.month) - extract(year FROM c.cohort)) * 12
                + extract(month FROM a.month) - extract(month FROM c.cohort))::int,
               count(*)
        FROM cohort c JOIN active a ON a.member_id = c.id AND a.month >= c.cohort
        GROUP BY 1, 2
        """,
        [community.timezone, community.pk, since, now,
         community.pk, list(ACTIVE_TYPES), since, now],
    )  # fmt: skip
    sizes: dict[dt.date, int] = {}
    active: dict[tuple[dt.date, int], int] = {}
    for cohort, offset, count in rows:
        if offset < 0:
            sizes[cohort] = count
        else:
            active[(cohort, offset)] = count
    current = month_start(today)
    cohorts = []
    for cohort in sorted(sizes):
        span = (current.year - cohort.year) * 12 + current.month - cohort.month
        counts = [active.get((cohort, k), 0) for k in range(span + 1)]
        cohorts.append(
            {
                "cohort": cohort,
                "joined": sizes[cohort],
                "active": counts,
                "retention": [_ratio(c, sizes[cohort]) for c in counts],
            }
        )
    return {
        "timezone": community.timezone,
        "from": first,
        "to": today,
        "active_means": "at least one check_in or message event in the month",
        "cohorts": cohorts,
    }


# --- content mix and stage -----------------------------------------------------------------------


def content_mix(
    community: Community,
    *,
    weeks: int = DEFAULT_WEEKS,
    rule: StageRule | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Per local week: ugc_post, share and content_featured events by author class, their
    shares, the UGC authors and the WAU, the stage the week suggests and the stage reported
    after the rule's hysteresis (``StageRule``)."""
    rule = rule or StageRule()
    now = _now(now)
    first, today = _window(community, weeks=weeks, now=now)
    rows = _rows(
        """
        WITH ev AS (
            SELECT date_trunc('week', e.local_day)::date AS week, e.type, e.member_id,
                   CASE WHEN r.role = 'kol' THEN 'kol'
                        WHEN r.role = ANY(%s) THEN 'official'
                        ELSE 'ugc' END AS class
            FROM points_event e
            LEFT JOIN incentives_memberrole r
                   ON r.community_id = e.community_id AND r.member_id = e.member_id
            WHERE e.community_id = %s AND e.type = ANY(%s) AND e.occurred_at >= %s
              AND e.occurred_at <= %s AND e.reversed_at IS NULL
        )
        SELECT week,
               count(*) FILTER (WHERE type = ANY(%s) AND class = 'kol'),
               count(*) FILTER (WHERE type = ANY(%s) AND class = 'official'),
               count(*) FILTER (WHERE type = ANY(%s) AND class = 'ugc'),
               count(DISTINCT member_id) FILTER (WHERE type = ANY(%s) AND class = 'ugc'),
               count(DISTINCT member_id) FILTER (WHERE type = ANY(%s))
        FROM ev GROUP BY week
        """,
        [list(OFFICIAL_ROLES), community.pk, list(CONTENT_TYPES + ACTIVE_TYPES),
         _midnight(first, community.timezone), now, list(CONTENT_TYPES), list(CONTENT_TYPES),
         list(CONTENT_TYPES), list(CONTENT_TYPES), list(ACTIVE_TYPES)],
    )  # fmt: skip
    by_week = {row[0]: row[1:] for row in rows}
    stage: str | None = None
    run_stage: str | None = None
    run = 0
    out = []
    week = first
    while week <= today:
        kol, official, ugc, ugc_authors, wau = by_week.get(week, (0, 0, 0, 0, 0))
        total = kol + official + ugc
        suggested = rule.suggest(kol, official, ugc, ugc_authors, wau)
        run = run + 1 if suggested is not None and suggested == run_stage else 1
        run_stage = suggested
        if suggested is None:
            run = 0
        elif run >= rule.weeks_to_change:
            stage = suggested
        out.append(
            {
                "week": week,
                "kol": kol,
                "official": official,
                "ugc": ugc,
                "total": total,
                "kol_share": _ratio(kol, total),
                "official_share": _ratio(official, total),
                "ugc_share": _ratio(ugc, total),
                "ugc_authors": ugc_authors,
                "wau": wau,
                "suggested": suggested,
                "stage": stage,
            }
        )
        week += dt.timedelta(weeks=1)
    return {
        "timezone": community.timezone,
        "from": first,
        "to": today,
        "content_types": list(CONTENT_TYPES),
        "rule": rule.describe(),
        "weeks_to_change": rule.weeks_to_change,
        "stage": stage,
        "weeks": out,
    }


# --- usual hours ---------------------------------------------------------------------------------


def usual_hours(
    community: Community,
    *,
    days: int = USUAL_HOUR_DAYS,
    member_id: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Each member's usual active hour over the last ``days`` local days: the circular mean of
    the local times of their events (every type) on a 24-hour circle, so that 23:00 and 01:00
    average to 00:00, not 12:00. Returns members per usual hour (the mean's hour, 0-23) and the
    community's circular mean of the members' usual hours (each member counts once).

    ``resultant_length`` (0-1) says how concentrated the hours are: near 0 the mean says little.
    ``member_id`` limits the report to one member (a member-level lookup)."""
    now = _now(now)
    today = local_today(community.timezone, now)
    first = today - dt.timedelta(days=days - 1)
    rows = _rows(
        """
        WITH per_member AS (
            SELECT member_id,
                   avg(sin(2 * pi() * h / 24)) AS s, avg(cos(2 * pi() * h / 24)) AS c
            FROM (
                SELECT member_id,
                       extract(epoch FROM (occurred_at AT TIME ZONE %s)::time) / 3600.0 AS h
                FROM points_event
                WHERE community_id = %s AND occurred_at >= %s AND occurred_at <= %s
                  AND reversed_at IS NULL AND (%s::bigint IS NULL OR member_id = %s)
            ) events
            GROUP BY member_id
        ),
        usual AS (
            SELECT member_id,
                   mod((atan2(s, c) * 24 / (2 * pi()) + 24)::numeric, 24) AS hour
            FROM per_member
            WHERE s * s + c * c > 1e-18
        )
        SELECT -1, count(*), avg(sin(2 * pi() * hour / 24)), avg(cos(2 * pi() * hour / 24)),
               NULL::numeric
        FROM usual
        UNION ALL
        SELECT mod(floor(round(hour, 6))::int, 24), count(*), NULL, NULL,
               CASE WHEN count(*) = 1 THEN min(hour) END
        FROM usual GROUP BY 1
        """,
        [community.timezone, community.pk, _midnight(first, community.timezone), now,
         member_id, member_id],
    )  # fmt: skip
    distribution = [0] * 24
    members, mean, resultant = 0, None, None
    single: float | None = None
    for bucket, count, s, c, only in rows:
        if bucket < 0:
            members = count
            if count:
                s, c = float(s), float(c)
                resultant = round(math.hypot(s, c), 4)
                if resultant > 1e-9:
                    mean = round(math.degrees(math.atan2(s, c)) / 15 % 24, 4) % 24
        else:
            distribution[bucket] = count
            if only is not None:
                single = float(only)
    body: dict[str, Any] = {
        "timezone": community.timezone,
        "from": first,
        "to": today,
        "days": days,
        "members": members,
        "distribution": distribution,
        "circular_mean_hour": mean,
        "resultant_length": resultant,
        "peak_usual_hour": (
            max(range(24), key=lambda h: (distribution[h], -h)) if members else None
        ),
    }
    if member_id is not None:
        body["member_usual_hour"] = None if single is None else round(single % 24, 4) % 24
    return body


# --- points liability ----------------------------------------------------------------------------


def liability(
    community: Community,
    *,
    within_days: int = EXPIRING_WITHIN_DAYS,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Points outstanding (Σ balance), held for pending redemptions (Σ held), spendable, owed
    (reversals the balance could not cover), and, when the community's rules expire points,
    what will have expired within ``within_days`` at the latest (the expiry job's FIFO formula
    of ``points.expiry``, assuming no more spending)."""
    now = _now(now)
    rules = rules_in_force(community, now).rules
    expiry_days = rules.expiry_days
    cutoff = None if expiry_days is None else now + dt.timedelta(days=within_days - expiry_days)
    rows = _rows(
        """
        SELECT 'members', count(*), COALESCE(sum(balance), 0), COALESCE(sum(held), 0),
               COALESCE(sum(owed), 0), count(*) FILTER (WHERE balance > 0)
        FROM points_member WHERE community_id = %s
        UNION ALL
        SELECT 'expiring', count(*), COALESCE(sum(old_credits - debits), 0), 0, 0, 0
        FROM (
            SELECT COALESCE(sum(points) FILTER (
                       WHERE points > 0 AND kind = ANY(%s) AND created_at <= %s), 0)
                       AS old_credits,
                   COALESCE(-sum(points) FILTER (WHERE points < 0), 0) AS debits
            FROM points_ledgerentry
            WHERE community_id = %s AND %s::timestamptz IS NOT NULL
            GROUP BY member_id
        ) lots
        WHERE old_credits > debits
        """,
        [community.pk, list(CREDIT_KINDS), cutoff, community.pk, cutoff],
    )
    figures = {row[0]: row[1:] for row in rows}
    members, balance, held, owed, holders = figures["members"]
    expiring_members, expiring = figures["expiring"][:2]
    return {
        "at": now,
        "members": members,
        "members_with_points": holders,
        "outstanding": int(balance),
        "held": int(held),
        "spendable": int(balance - held),
        "owed": int(owed),
        "expiry_days": expiry_days,
        "expiring_within_days": within_days if expiry_days is not None else None,
        "expiring": int(expiring) if expiry_days is not None else None,
        "expiring_members": expiring_members if expiry_days is not None else None,
    }


# --- reward spend --------------------------------------------------------------------------------


def reward_spend(
    community: Community, *, months: int = DEFAULT_MONTHS, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Per local month (the last ``months``, the current one included): points spent (net
    ``spend`` ledger entries: spends minus spends given back), cash paid (payouts confirmed,
    fen) and committed (payouts requested, not yet confirmed), each by source (a redemption, or
    a campaign's kind), and redemptions by reward kind and status. Payouts fall in the month of
    their ``local_day`` (the day they were requested, as the monthly budget counts them)."""
    now = _now(now)
    today = local_today(community.timezone, now)
    first = _months_back(today, months - 1)
    since = _midnight(first, community.timezone)
    rows = _rows(
        """
        SELECT 'points', date_trunc('month', created_at AT TIME ZONE %s)::date, 'spend',
               -sum(points), count(*)
        FROM points_ledgerentry
        WHERE community_id = %s AND kind = 'spend' AND created_at >= %s AND created_at <= %s
        GROUP BY 2
        UNION ALL
        SELECT 'payout_' || p.status, date_trunc('month', p.local_day)::date,
               COALESCE(c.kind, 'redemption'), sum(p.amount_fen), count(*)
        FROM rewards_payout p
        LEFT JOIN rewards_allocation a ON a.id = p.allocation_id
        LEFT JOIN rewards_campaign c ON c.id = a.campaign_id
        WHERE p.community_id = %s AND p.status IN ('confirmed', 'requested')
          AND p.local_day >= %s AND p.local_day <= %s
        GROUP BY 1, 2, 3
        UNION ALL
        SELECT 'redemption_' || r.status,
               date_trunc('month', r.created_at AT TIME ZONE %s)::date, w.kind,
               sum(r.points), count(*)
        FROM rewards_redemption r JOIN rewards_reward w ON w.id = r.reward_id
        WHERE r.community_id = %s AND r.created_at >= %s AND r.created_at <= %s
        GROUP BY 1, 2, 3
        """,
        [community.timezone, community.pk, since, now,
         community.pk, first, today,
         community.timezone, community.pk, since, now],
    )  # fmt: skip
    months_list: list[dt.date] = []
    m = first
    while m <= today:
        months_list.append(m)
        m = _months_back(m, -1)
    out: dict[dt.date, dict[str, Any]] = {
        m: {
            "month": m,
            "points_spent": 0,
            "spends": 0,
            "cash_paid_fen": 0,
            "cash_committed_fen": 0,
            "paid_by_source": {},
            "committed_by_source": {},
            "redemptions": {},
        }
        for m in months_list
    }
    for what, month, kind, amount, count in rows:
        row = out.get(month)
        if row is None:
            continue
        amount = int(amount or 0)
        if what == "points":
            row["points_spent"], row["spends"] = amount, count
        elif what == "payout_confirmed":
            row["cash_paid_fen"] += amount
            row["paid_by_source"][kind] = amount
        elif what == "payout_requested":
            row["cash_committed_fen"] += amount
            row["committed_by_source"][kind] = amount
        else:
            status = what.removeprefix("redemption_")
            by_kind = row["redemptions"].setdefault(kind, {})
            by_kind[status] = {"count": count, "points": amount}
    return {
        "timezone": community.timezone,
        "from": first,
        "to": today,
        "months": [out[m] for m in months_list],
    }


# --- the catalogue of reports --------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    parameters: dict[str, tuple[int, int, int]]  # name -> (default, minimum, maximum)


REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report("activity", "Activity by hour and day", {"weeks": (DEFAULT_WEEKS, 1, 104)}),
        Report("active_users", "DAU, WAU, MAU", {"weeks": (DEFAULT_WEEKS, 1, 104)}),
        Report("retention", "Retention by join month", {"months": (DEFAULT_MONTHS, 1, 36)}),
        Report("content_mix", "Content mix and stage", {"weeks": (DEFAULT_WEEKS, 1, 104)}),
        Report("usual_hours", "Usual active hours", {"days": (USUAL_HOUR_DAYS, 1, 90)}),
        Report("liability", "Points liability", {}),
        Report("reward_spend", "Reward spend", {"months": (DEFAULT_MONTHS, 1, 36)}),
    )
}
ALIASES = {"stage": "content_mix"}


def report_run(
    community: Community, name: str, params: dict[str, int], *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Run the report ``name`` (or an alias) with validated parameters."""
    name = ALIASES.get(name, name)
    if name not in REPORTS:
        raise ReportNotFound(
            f"No report '{name}'.",
            [FieldError("name", "unknown_report", f"must be one of {sorted(REPORTS)}")],
        )
    if name == "activity":
        return activity_heatmap(community, now=now, **params)
    if name == "active_users":
        return active_users(community, now=now, **params)
    if name == "retention":
        return retention(community, now=now, **params)
    if name == "content_mix":
        return content_mix(community, now=now, weeks=params.get("weeks", DEFAULT_WEEKS))
    if name == "usual_hours":
        return usual_hours(community, now=now, **params)
    if name == "liability":
        return liability(community, now=now)
    return reward_spend(community, now=now, **params)
