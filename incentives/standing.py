"""One read model of a member: everything shown about them, for the API, the member page and
the admin alike. It reads only: rank snapshots are built by jobs, never by this selector."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from incentives.honors import MemberHonor, member_honors
from incentives.roles import member_role
from incentives.tiers import TierStanding, member_tier_standing
from points.expiry import Expiring, points_expiring
from points.models import Member, PeriodKind
from points.selectors import (
    MemberRank,
    member_achievements,
    member_rank_lookup,
    member_streak,
    period_resolve,
)


@dataclass(frozen=True)
class MemberStanding:
    member: Member
    role: str
    ranks: dict[str, MemberRank]
    tier: TierStanding
    koc: bool
    honors: list[MemberHonor]
    streak: int
    achievements: list[dict[str, Any]]
    expiring: list[Expiring]


def member_standing(
    member: Member,
    *,
    periods: tuple[str, ...] = (PeriodKind.ALL_TIME, PeriodKind.MONTH),
    neighbours: int = 0,
    now: dt.datetime | None = None,
) -> MemberStanding:
    """The member's balance (on the row), ranks per period, tier and progress to the next,
    KOC status, this and last month's honors, streak, achievements and expiring points."""
    community = member.community
    ranks: dict[str, MemberRank] = {}
    for kind in periods:
        period = period_resolve(community, kind, now=now)
        found = member_rank_lookup(community, member.external_id, period, neighbours)
        if found is not None:
            ranks[str(kind)] = found
    tier = member_tier_standing(member, now)
    return MemberStanding(
        member=member,
        role=member_role(member),
        ranks=ranks,
        tier=tier,
        koc=tier.koc,
        honors=member_honors(member, now=now),
        streak=member_streak(member, now),
        achievements=member_achievements(member),
        expiring=points_expiring(member=member, now=now),
    )


def rank_snapshots_queue(standing: MemberStanding) -> None:
    """Queue a rebuild of each period snapshot the standing was read from that is missing or
    stale (``rank_snapshot_ensure``: a read never builds one itself)."""
    from points.services import rank_snapshot_ensure

    for rank in standing.ranks.values():
        rank_snapshot_ensure(
            community=standing.member.community,
            kind=rank.period.kind,
            start=rank.period.start,
            built_at=rank.built_at,
        )
