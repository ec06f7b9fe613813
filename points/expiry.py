"""Points expiry (off unless a community's rules set ``expiry_days``): oldest points first.

Credits (awards and positive adjustments) are lots; every debit (spending, reversals,
settlements, earlier expiries) consumes the oldest lots first (FIFO). So what must expire at
``now`` is whatever is left of the lots credited on or before ``now - expiry_days``:

    due = max(0, credits up to the cutoff - all debits so far)

which one set-based query computes for every member of a community. The formula is its own
fence: once an expiry entry is written it counts as a debit, so running the job twice (or
after a crash half-way) expires nothing more. Points held for a pending redemption are not
taken; they are retried on the next run if still due.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from points.ledger import ledger_post, member_lock
from points.models import Community, EntryKind, Member
from points.selectors import rules_in_force
from points.timeutils import local_day

CREDIT_KINDS = ("award", "adjustment")


def _due(community_id: int, cutoff: dt.datetime, member_id: int | None = None) -> dict[int, int]:
    """Member id → points due to expire (only members with something due)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT member_id, (sum(old_credits) - sum(debits))::bigint AS due
            FROM (
                SELECT member_id,
                       COALESCE(sum(points) FILTER (
                           WHERE points > 0 AND kind = ANY(%s) AND created_at <= %s), 0)
                           AS old_credits,
                       COALESCE(-sum(points) FILTER (WHERE points < 0), 0) AS debits
                FROM points_ledgerentry
                WHERE community_id = %s AND (%s::bigint IS NULL OR member_id = %s)
                GROUP BY member_id
                UNION ALL  -- archived months (points.history): older than any cutoff
                SELECT member_id, credits, debits FROM points_ledgercheckpoint
                WHERE community_id = %s AND (%s::bigint IS NULL OR member_id = %s)
            ) lots
            GROUP BY member_id
            HAVING sum(old_credits) > sum(debits)
            ORDER BY member_id
            """,
            [
                list(CREDIT_KINDS),
                cutoff,
                community_id,
                member_id,
                member_id,
                community_id,
                member_id,
                member_id,
            ],
        )
        return {row[0]: row[1] for row in cursor.fetchall()}


def points_expire(*, community: Community, now: dt.datetime | None = None) -> dict[str, Any]:
    """Write ``expiry`` entries for every member whose oldest points passed the community's
    ``expiry_days``. Idempotent (see the module docstring). Locks one member row at a time,
    each in its own short transaction, so ingestion is never blocked for long."""
    now = now or timezone.now()
    rules = rules_in_force(community, now).rules
    if rules.expiry_days is None:
        return {"enabled": False, "members": 0, "points": 0}
    cutoff = now - dt.timedelta(days=rules.expiry_days)
    members = points = 0
    for member_id in _due(community.pk, cutoff):
        with transaction.atomic():
            member = member_lock(member_id=member_id)
            # Re-read under the lock: an event or a spend may have landed since the scan.
            due = _due(community.pk, cutoff, member_id).get(member_id, 0)
            take = min(due, member.balance - member.held)
            if take <= 0:
                continue
            ledger_post(
                member=member,
                points=-take,
                kind=EntryKind.EXPIRY,
                when=now,
                period_day=None,
                reason=f"points credited before {local_day(cutoff, community.timezone)} expired",
                actor="job:expiry",
            )
            members += 1
            points += take
    return {"enabled": True, "members": members, "points": points, "cutoff": cutoff.isoformat()}


@dataclass(frozen=True)
class Expiring:
    on: dt.date  # the local day the points expire
    points: int


def points_expiring(
    *, member: Member, now: dt.datetime | None = None, limit: int = 5
) -> list[Expiring]:
    """What the member's points will expire when (the next ``limit`` local days), FIFO."""
    now = now or timezone.now()
    community = member.community
    rules = rules_in_force(community, now).rules
    if rules.expiry_days is None:
        return []
    life = dt.timedelta(days=rules.expiry_days)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT COALESCE(-sum(points) FILTER (WHERE points < 0), 0)
                   + COALESCE((SELECT debits FROM points_ledgercheckpoint
                               WHERE community_id = %s AND member_id = %s), 0)
            FROM points_ledgerentry WHERE community_id = %s AND member_id = %s
            """,
            [member.community_id, member.pk, member.community_id, member.pk],
        )
        debits = cursor.fetchone()[0]
        cursor.execute(
            """
            SELECT at, points FROM (
                SELECT through::timestamp AT TIME ZONE 'UTC' AS at, credits AS points, 0 AS id
                FROM points_ledgercheckpoint
                WHERE community_id = %s AND member_id = %s AND credits > 0
                UNION ALL
                SELECT created_at, points, id FROM points_ledgerentry
                WHERE community_id = %s AND member_id = %s AND points > 0 AND kind = ANY(%s)
            ) lots
            ORDER BY at, id
            """,
            [
                member.community_id,
                member.pk,
                member.community_id,
                member.pk,
                list(CREDIT_KINDS),
            ],
        )
        lots = cursor.fetchall()  # the archived months' lot (points.history) comes first
    out: dict[dt.date, int] = {}
    for created_at, lot in lots:
        consumed = min(debits, lot)
        debits -= consumed
        left = lot - consumed
        if left <= 0:
            continue
        day = local_day(max(created_at + life, now), community.timezone)
        out[day] = out.get(day, 0) + left
        if len(out) > limit:
            break
    return [Expiring(day, pts) for day, pts in sorted(out.items())[:limit]]
