"""Step 3 of ingestion: score the planned events one after another, in memory, with the policy
of ``points.scoring``, against what the lock-and-read step found; collect the rows to write."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from points.ingest.records import EventRow, LedgerRow, MemberState, OnceKey, Plan, TallyKey
from points.models import EventType, MemberStatus, PeriodKind, PeriodTotal
from points.scoring import (
    SETTLEMENT_REASON,
    Award,
    PaidAward,
    Room,
    ScoringRecord,
    Tally,
    award_for,
    bonuses_on_first,
    cooling,
    credit,
    gate_of,
    recycled,
)
from points.timeutils import month_start, week_start

# Tally spans kept in memory; only ``day`` rows are stored. ``month_days``: days of a month
# with a counted event of the type (what a monthly quota counts).
DAY, WEEK, MONTH, MONTH_DAYS = "day", "week", "month", "month_days"
TOTAL = "*"
NO_TALLY = Tally()

# An event's tallies for its paid member: its type and the total that day, its type that week
# and that month (``Scorer._spans``; the first two are the day rows that are stored).
Spans = tuple[TallyKey, TallyKey, TallyKey, TallyKey]


def periods_of(day: dt.date) -> tuple[tuple[str, dt.date], ...]:
    """The leaderboard periods a local day counts in."""
    return (
        (PeriodKind.ALL_TIME.value, PeriodTotal.ALL_TIME_START),
        *totalled_periods_of(day),
    )


def totalled_periods_of(day: dt.date) -> tuple[tuple[str, dt.date], ...]:
    """The periods whose totals are stored rows (``PeriodTotal``): the month and the week.
    The all-time total is the member's lifetime points, on the member row (decision 48)."""
    return ((PeriodKind.MONTH.value, month_start(day)), (PeriodKind.WEEK.value, week_start(day)))


@dataclass
class Reads:
    """What the lock-and-read step found, kept up to date as events are scored."""

    tallies: defaultdict[TallyKey, Tally] = field(default_factory=lambda: defaultdict(Tally))
    once_keys: set[str] = field(default_factory=set)
    hashes: defaultdict[tuple[int, str], list[dt.datetime]] = field(
        default_factory=lambda: defaultdict(list)
    )  # counted events per (member, content hash)
    scored_at: defaultdict[tuple[int, str], list[dt.datetime]] = field(
        default_factory=lambda: defaultdict(list)
    )  # events that paid points per (member, type)


@dataclass
class Writes:
    """The rows the batch writes."""

    events: list[EventRow] = field(default_factory=list)
    entries: list[LedgerRow] = field(default_factory=list)
    keys: list[OnceKey] = field(default_factory=list)
    day_tallies: set[TallyKey] = field(default_factory=set)
    periods: defaultdict[tuple[int, str, dt.date], int] = field(
        default_factory=lambda: defaultdict(int)
    )


class Scorer:
    def __init__(self, members: dict[str, MemberState], reads: Reads) -> None:
        self.members = members
        self.reads = reads
        self.writes = Writes()

    def score(self, plan: Plan) -> dict[str, Any]:
        """Score one event, change the members and tallies in memory, return its answer."""
        event, rules = plan.event, plan.version.rules
        actor = self.members[event.member]
        if event.type == EventType.JOIN and actor.left:
            actor.status, actor.left_at = MemberStatus.ACTIVE, None
        payee = self.members[plan.payee] if plan.payee else None
        paid: list[tuple[MemberState, Award]] = []
        counted = False
        if payee is not None:
            gate = gate_of(
                payee_left=payee.left,
                actor_left=actor.left,
                fixed=plan.fixed_gate,
                once_taken=plan.once_key in self.reads.once_keys,
                is_recycled=bool(plan.content_hash)
                and recycled(
                    plan.occurred,
                    self.reads.hashes[(actor.id, plan.content_hash)],
                    rules.duplicate_window_days,
                ),
                is_cooling=cooling(
                    plan.occurred,
                    self.reads.scored_at[(actor.id, plan.rule_type)],
                    rules.cooldowns.get(plan.rule_type),
                ),
            )
            pays_actor = (
                payee is actor and plan.rule_type == event.type and event.type != EventType.REACTION
            )
            spans = self._spans(payee.id, plan)
            award = award_for(
                rules,
                plan.rule_type,
                gate=gate,
                room=self._room(spans),
                pays_actor=pays_actor,
            )
            if award is not None:
                paid.append((payee, award))
            counted = gate is None
            if counted:
                self._count(plan, actor, payee, award.points if award else 0, spans)
                if payee is actor:
                    paid.extend((actor, bonus) for bonus in self._bonuses(plan, actor))
        for member, award in paid:
            self._credit(plan, member, award)
        if event.type == EventType.LEAVE and not actor.left:
            actor.status, actor.left_at = MemberStatus.LEFT, plan.occurred
        record = ScoringRecord(
            rule_type=plan.rule_type,
            counted=counted,
            balance=actor.balance,
            awards=tuple(PaidAward(m.external_id, a) for m, a in paid),
        )
        self.writes.events.append(
            EventRow(
                plan=plan,
                member_id=actor.id,
                payee_id=payee.id if payee is not None else None,
                points=sum(a.points for _m, a in paid),
                record=record,
                content_hash=plan.content_hash if counted else "",
            )
        )
        return record.render(
            client_id=event.client_id, poster=event.member, rule_version=plan.version.version
        )

    @staticmethod
    def _spans(member_id: int, plan: Plan) -> Spans:
        """The tallies an event counts in for the paid member: its type and the total that
        day, its type that week and that month (the room reads them, counting moves them)."""
        day, kind = plan.day, plan.rule_type
        return (
            TallyKey(member_id, DAY, day, kind),
            TallyKey(member_id, DAY, day, TOTAL),
            TallyKey(member_id, WEEK, week_start(day), kind),
            TallyKey(member_id, MONTH, month_start(day), kind),
        )

    def _room(self, spans: Spans) -> Room:
        get = self.reads.tallies.get
        type_today, total_today, type_week, type_month = spans
        return Room(
            type_today=get(type_today, NO_TALLY),
            total_today=get(total_today, NO_TALLY),
            type_week=get(type_week, NO_TALLY),
            type_month=get(type_month, NO_TALLY),
        )

    def _count(
        self,
        plan: Plan,
        actor: MemberState,
        payee: MemberState,
        points: int,
        spans: Spans,
    ) -> None:
        """One more counted event for the paid member; its once-only key, content hash and
        cooldown now stand against later events."""
        tallies = self.reads.tallies
        for key in spans:
            before = tallies.get(key, NO_TALLY)
            tallies[key] = Tally(before.count + 1, before.points + points)
        self.writes.day_tallies.update(spans[:2])
        if plan.once_key:
            self.reads.once_keys.add(plan.once_key)
            self.writes.keys.append(
                OnceKey(plan.once_key, payee.id, plan.event.client_id, plan.rule_type, "")
            )
        if plan.content_hash:
            self.reads.hashes[(actor.id, plan.content_hash)].append(plan.occurred)
        if points > 0 and plan.rule_type in plan.version.rules.cooldowns:
            self.reads.scored_at[(actor.id, plan.rule_type)].append(plan.occurred)

    def _bonuses(self, plan: Plan, member: MemberState) -> list[Award]:
        """Streak and quota bonuses, on the member's first counted event of the type that day."""
        kind = plan.rule_type
        if self.reads.tallies[TallyKey(member.id, DAY, plan.day, kind)].count != 1:
            return []
        days_key = TallyKey(member.id, MONTH_DAYS, month_start(plan.day), kind)
        decision = bonuses_on_first(
            plan.version.rules,
            member_id=member.id,
            event_type=kind,
            day=plan.day,
            streak=member.streak,
            month_days_before=self.reads.tallies[days_key].count,
            taken=self.reads.once_keys,
        )
        member.streak = decision.streak
        member.late_check_in = member.late_check_in or decision.late
        if decision.month_days is not None:
            self.reads.tallies[days_key] = Tally(decision.month_days, 0)
        for bonus in decision.bonuses:
            self.reads.once_keys.add(bonus.key)
            self.writes.keys.append(
                OnceKey(bonus.key, member.id, plan.event.client_id, bonus.kind, bonus.achievement)
            )
        return [bonus.award for bonus in decision.bonuses]

    def _credit(self, plan: Plan, member: MemberState, award: Award) -> None:
        """Credit an award (paying back what the member owes first), in memory."""
        if not award.points:
            return
        posting = credit(balance=member.balance, owed=member.owed, points=award.points)
        member.balance, member.owed = posting.balance, posting.owed
        member.lifetime += award.points
        for kind, start in totalled_periods_of(plan.day):
            self.writes.periods[(member.id, kind, start)] += award.points
        for move in posting.movements:
            settles = move.kind == "settlement"
            self.writes.entries.append(
                LedgerRow(
                    client_id=plan.event.client_id,
                    member_id=member.id,
                    kind=move.kind,
                    points=move.points,
                    balance_after=move.balance_after,
                    rule="owed" if settles else award.rule,
                    rule_version=None if settles else plan.version.version,
                    reason=SETTLEMENT_REASON if settles else "",
                )
            )
