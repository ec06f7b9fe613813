"""The monthly honor roll (光荣榜): computed set-based once a local month has ended, then frozen.

Categories (``docs/incentives.md``): top points, full attendance (全勤: a counted check-in on
every local day of the month), best content (featured posts, then distinct reactors), most
helpful, top inviters (invitees whose join paid the inviter), new KOCs (confirmed that month),
promotions. Ranks are competition ranks (1, 2, 2, 4): every member tied at the last place shown
is shown too, marked ``tied``.

A roll is published once per community and month (``UNIQUE (community, month)``, and the
``run_once`` fence): a re-run, or a run racing it, returns the published roll; the roll and
its honors are append-only by trigger.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.utils import timezone

from incentives.jobs import run_once
from incentives.models import Honor, HonorRoll
from points import outbox
from points.exceptions import DomainError, FieldError, ValidationFailed
from points.models import Community, Member
from points.timeutils import community_zone, month_start, today

JOB = "honor_roll"
TOP = {"top_points": 10, "best_content": 5, "most_helpful": 5, "top_inviters": 5}
# Categories without a top (full attendance, new KOCs, promotions) list at most this many in
# the roll and its webhook (a big community promotes tens of thousands in a month); every
# member's honor is still an ``Honor`` row, and ``honor_counts`` gives each category's size.
LISTED = 200
CATEGORIES = (
    "top_points",
    "full_attendance",
    "best_content",
    "most_helpful",
    "top_inviters",
    "new_kocs",
    "promotions",
)


class HonorRollNotFound(DomainError):
    code = "honor_roll_not_found"
    status = 404
    title = "Honor roll not found"


def parse_month(value: str, field: str = "month") -> dt.date:
    try:
        return dt.datetime.strptime(value, "%Y-%m").date()  # noqa: DTZ007 - a date
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(
            "The month is invalid.", [FieldError(field, "invalid", "must be YYYY-MM")]
        ) from exc


def previous_month(community: Community, now: dt.datetime | None = None) -> dt.date:
    """The local month that ended most recently in the community's time zone."""
    this_month = month_start(today(community.timezone, now))
    return month_start(this_month - dt.timedelta(days=1))


def honor_roll_publish(
    *, community: Community, month: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Publish the roll of ``month`` (``YYYY-MM``; default: the month that just ended)."""
    now = now or timezone.now()
    start = previous_month(community, now) if month is None else parse_month(month)
    if start >= month_start(today(community.timezone, now)):
        raise ValidationFailed(
            "Only a month that has ended can be published.",
            [
                FieldError(
                    "month", "not_ended", "the month has not ended in the community's time zone"
                )
            ],
        )
    label = f"{start:%Y-%m}"

    def compute() -> dict[str, Any]:
        existing = HonorRoll.objects.filter(community=community, month=start).first()
        if existing is not None:
            return {"month": label, "published": False, "roll": existing.pk}
        roll = _publish(community, start, now)
        return {
            "month": label,
            "published": True,
            "roll": roll.pk,
            "honors": sum(len(v) for v in roll.categories.values()),
        }

    return run_once(community=community, job=JOB, period=label, compute=compute)


def _publish(community: Community, start: dt.date, now: dt.datetime) -> HonorRoll:
    days = calendar.monthrange(start.year, start.month)[1]
    end = start + dt.timedelta(days=days)
    zone = community_zone(community.timezone)
    params: dict[str, Any] = {
        "c": community.pk,
        "start": start,
        "end": end,
        "days": days,
        "t_start": dt.datetime.combine(start, dt.time(), tzinfo=zone),
        "t_end": dt.datetime.combine(end, dt.time(), tzinfo=zone),
        **{f"top_{k}": v for k, v in TOP.items()},
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH points AS (
                SELECT member_id, points AS value, 0::bigint AS second
                FROM points_periodtotal
                WHERE community_id = %(c)s AND kind = 'month' AND start = %(start)s
                  AND active AND points > 0
            ), attendance AS (
                SELECT member_id, count(*) AS value, 0::bigint AS second
                FROM points_dailytally
                WHERE community_id = %(c)s AND event_type = 'check_in' AND count > 0
                  AND day >= %(start)s AND day < %(end)s
                GROUP BY member_id HAVING count(*) = %(days)s
            ), reactors AS (
                SELECT beneficiary_id AS member_id, count(DISTINCT member_id) AS n
                FROM points_event
                WHERE community_id = %(c)s AND type = 'reaction'
                  AND occurred_at >= %(t_start)s AND occurred_at < %(t_end)s
                  AND beneficiary_id IS NOT NULL AND beneficiary_id <> member_id
                  AND reversed_at IS NULL
                GROUP BY beneficiary_id
            ), featured AS (
                SELECT member_id, sum(count) AS n FROM points_dailytally
                WHERE community_id = %(c)s AND event_type = 'content_featured' AND count > 0
                  AND day >= %(start)s AND day < %(end)s
                GROUP BY member_id
            ), content AS (
                SELECT COALESCE(f.member_id, r.member_id) AS member_id,
                       COALESCE(f.n, 0) AS value, COALESCE(r.n, 0) AS second
                FROM featured f FULL JOIN reactors r ON r.member_id = f.member_id
            ), helpful AS (
                SELECT member_id, sum(count) AS value, 0::bigint AS second
                FROM points_dailytally
                WHERE community_id = %(c)s AND event_type = 'help' AND count > 0
                  AND day >= %(start)s AND day < %(end)s
                GROUP BY member_id
            ), inviters AS (
                SELECT beneficiary_id AS member_id, count(DISTINCT member_id) AS value,
                       0::bigint AS second
                FROM points_event
                WHERE community_id = %(c)s AND type = 'join' AND beneficiary_id IS NOT NULL
                  AND points > 0 AND reversed_at IS NULL
                  AND occurred_at >= %(t_start)s AND occurred_at < %(t_end)s
                GROUP BY beneficiary_id
            ), kocs AS (
                SELECT member_id, 1::bigint AS value, 0::bigint AS second
                FROM incentives_koccandidate
                WHERE community_id = %(c)s AND status = 'confirmed'
                  AND decided_at >= %(t_start)s AND decided_at < %(t_end)s
            ), promotions AS (
                SELECT DISTINCT ON (member_id) member_id, to_level::bigint AS value,
                       0::bigint AS second
                FROM incentives_tierchange
                WHERE community_id = %(c)s AND kind = 'promotion'
                  AND created_at >= %(t_start)s AND created_at < %(t_end)s
                ORDER BY member_id, created_at DESC, id DESC
            ), ranked AS (
                SELECT 'top_points' AS category, member_id, value, second,
                       rank() OVER (ORDER BY value DESC) AS rank, %(top_top_points)s AS top
                FROM points
                UNION ALL
                SELECT 'full_attendance', member_id, value, second, 1, NULL FROM attendance
                UNION ALL
                SELECT 'best_content', member_id, value, second,
                       rank() OVER (ORDER BY value DESC, second DESC), %(top_best_content)s
                FROM content
                UNION ALL
                SELECT 'most_helpful', member_id, value, second,
                       rank() OVER (ORDER BY value DESC), %(top_most_helpful)s
                FROM helpful
                UNION ALL
                SELECT 'top_inviters', member_id, value, second,
                       rank() OVER (ORDER BY value DESC), %(top_top_inviters)s
                FROM inviters
                UNION ALL
                SELECT 'new_kocs', member_id, value, second, 1, NULL FROM kocs
                UNION ALL
                SELECT 'promotions', member_id, value, second, 1, NULL FROM promotions
            )
            SELECT r.category, r.member_id, m.external_id, m.display_name, r.value, r.second,
                   r.rank, count(*) OVER (PARTITION BY r.category, r.rank) > 1 AS tied
            FROM ranked r JOIN points_member m ON m.id = r.member_id
            WHERE r.top IS NULL OR r.rank <= r.top
            ORDER BY r.category, r.rank, m.external_id
            """,
            params,
        )
        rows = cursor.fetchall()
    categories: dict[str, list[dict[str, Any]]] = {name: [] for name in CATEGORIES}
    tier_codes = _tier_codes(community)
    for category, _, external_id, display_name, value, second, rank, tied in rows:
        entry: dict[str, Any] = {
            "rank": rank,
            "member": external_id,
            "display_name": display_name,
            "tied": tied,
        }
        if category == "best_content":
            entry.update(featured=value, distinct_reactors=second)
        elif category == "promotions":
            entry.update(tier=tier_codes.get(int(value), str(value)))
        elif category != "new_kocs":
            entry["value"] = value
        if len(categories[category]) < LISTED:
            categories[category].append(entry)
    roll = HonorRoll.objects.create(
        community=community, month=start, published_at=now, categories=categories
    )
    Honor.objects.bulk_create(
        [
            Honor(
                community=community,
                roll=roll,
                member_id=member_id,
                category=category,
                rank=rank,
                value=value,
            )
            for category, member_id, _, _, value, _, rank, _ in rows
        ],
        batch_size=5000,
    )
    outbox.publish(
        community,
        [("honor_roll.published", {"month": f"{start:%Y-%m}", "categories": categories})],
    )
    return roll


def _tier_codes(community: Community) -> dict[int, str]:
    from incentives.config import community_ladder

    return {t.level: t.code for t in community_ladder(community.pk).tiers}


# --- reads ------------------------------------------------------------------------------------


def honor_roll_get(community: Community, month: str) -> HonorRoll:
    start = parse_month(month)
    roll = HonorRoll.objects.filter(community=community, month=start).first()
    if roll is None:
        raise HonorRollNotFound(
            f"No honor roll published for {month}: rolls are published on the 1st of the next "
            "month, in the community's time zone."
        )
    return roll


def honor_counts(roll: HonorRoll) -> dict[str, int]:
    """How many members each category of a published roll honors (its list may be cut)."""
    from django.db.models import Count

    counts = dict(Honor.objects.filter(roll=roll).values_list("category").annotate(n=Count("id")))
    return {name: int(counts.get(name, 0)) for name in CATEGORIES}


@dataclass(frozen=True)
class MemberHonor:
    month: str
    category: str
    rank: int
    value: int


def member_honors(
    member: Member, months: int = 2, now: dt.datetime | None = None
) -> list[MemberHonor]:
    """The member's honors in the last ``months`` published rolls (this and last month's by
    default: the roll of the month that just ended and the one before)."""
    latest = previous_month(member.community, now)
    earliest = latest
    for _ in range(months - 1):
        earliest = month_start(earliest - dt.timedelta(days=1))
    rows = (
        Honor.objects.filter(
            community_id=member.community_id, member=member, roll__month__gte=earliest
        )
        .select_related("roll")
        .order_by("-roll__month", "category")
    )
    return [MemberHonor(f"{h.roll.month:%Y-%m}", h.category, h.rank, h.value) for h in rows]
