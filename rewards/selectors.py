"""Reads of rewards that are more than a ``get``: what an admin weighs before approving."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count
from django.utils import timezone

from incentives.config import community_ladder
from incentives.honors import previous_month
from incentives.models import Honor, KocCandidate, KocStatus, MemberTier
from points.models import Member, PeriodKind, PeriodTotal
from points.timeutils import month_start, today
from rewards.models import Redemption, RedemptionStatus

GRANTED = (RedemptionStatus.APPROVED, RedemptionStatus.FULFILLED)


@dataclass(frozen=True)
class MemberContext:
    """What an admin weighs before approving: the member's tier and KOC status, their activity
    (last event, points this local month), their redemptions by status and their honors on
    this and last month's rolls (as ``member_standing`` defines them)."""

    tier: str
    koc: bool
    last_event_at: dt.datetime | None
    month: str
    points_this_month: int
    redemptions: dict[str, int] = field(default_factory=dict)
    honors: list[tuple[str, str, int]] = field(default_factory=list)  # (month, category, rank)

    @property
    def granted(self) -> int:
        return sum(self.redemptions.get(status, 0) for status in GRANTED)


def member_contexts(
    members: Iterable[Member], now: dt.datetime | None = None
) -> dict[int, MemberContext]:
    """``MemberContext`` per member id, in a fixed number of queries whatever the number of
    members: one each for tiers, KOC, month totals, honors and redemptions, and one ladder per
    community. Members need their community loaded. The tier is read as ``member_standing``
    reads it: the member's level on the current ladder (no row: the first tier)."""
    now = now or timezone.now()
    by_id = {m.pk: m for m in members}
    if not by_id:
        return {}
    ids = list(by_id)
    communities = {m.community_id: m.community for m in by_id.values()}
    months = {cid: month_start(today(c.timezone, now)) for cid, c in communities.items()}
    earliest_honor = {}
    for cid, community in communities.items():
        latest = previous_month(community, now)
        earliest_honor[cid] = month_start(latest - dt.timedelta(days=1))
    levels = dict(
        MemberTier.objects.filter(
            community_id__in=list(communities), member_id__in=ids
        ).values_list("member_id", "level")
    )
    ladders = {cid: community_ladder(cid) for cid in communities}
    kocs = set(
        KocCandidate.objects.filter(
            community_id__in=list(communities), member_id__in=ids, status=KocStatus.CONFIRMED
        ).values_list("member_id", flat=True)
    )
    totals = {
        (member_id, start): points
        for member_id, start, points in PeriodTotal.objects.filter(
            community_id__in=list(communities),
            member_id__in=ids,
            kind=PeriodKind.MONTH,
            start__in=set(months.values()),
        ).values_list("member_id", "start", "points")
    }
    honors: dict[int, list[tuple[str, str, int]]] = {}
    for member_id, month, category, rank in (
        Honor.objects.filter(member_id__in=ids, roll__month__gte=min(earliest_honor.values()))
        .order_by("-roll__month", "category", "rank")
        .values_list("member_id", "roll__month", "category", "rank")
    ):
        if month >= earliest_honor[by_id[member_id].community_id]:
            honors.setdefault(member_id, []).append((f"{month:%Y-%m}", category, rank))
    redemptions: dict[int, dict[str, int]] = {}
    for row in (
        Redemption.objects.filter(member_id__in=ids)
        .values("member_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        redemptions.setdefault(row["member_id"], {})[row["status"]] = row["n"]
    return {
        pk: MemberContext(
            tier=ladders[member.community_id].by_level(levels.get(pk, 0)).code,
            koc=pk in kocs,
            last_event_at=member.last_event_at,
            month=f"{months[member.community_id]:%Y-%m}",
            points_this_month=int(totals.get((pk, months[member.community_id]), 0)),
            redemptions=redemptions.get(pk, {}),
            honors=honors.get(pk, []),
        )
        for pk, member in by_id.items()
    }
