"""A slow, plainly written reference of what the ledger must hold under docs/rules.md.

No database and nothing from ``points.ingest`` / ``points.corrections``: only the rule document
(``points.rules.Rules``, parsed by ``parse_rules``) and ``points.timeutils`` for local days.
Every number is recomputed from the list of stored events each time it is needed (tallies,
once-only keys, check-in days), so there is no incremental state to get wrong.

Operations, applied in order (``ReferenceScorer.apply``):

* ``Ingest(events)``: a batch (a single event is a batch of one), scored in batch order
  ("Scoring order inside a batch is the batch order"). An id already stored, or seen earlier in
  the batch, is a replay: it changes nothing (the test only replays identical bodies).
* ``Reverse(id)``: docs/rules.md "Corrections", steps 1-4, idempotent.
* ``Spend(member, points)``: a redemption, taken from the balance only when the balance
  covers it (it is how a member comes to *owe* points after a reversal).

What it answers:

* ``earned[(event, member, rule)]``: the points the event earns the member net of
  corrections, per rule (``points.<type>``, ``streak.bonus``, ``monthly_quota.bonus``), at
  their full amount (decision 4).
* ``recorded[(event, member, entry rule)]``: what the award and reversal *entries* add up to.
  It differs from ``earned`` only when a debit finds too small a balance: the entry takes what
  there is and the rest is ``owed`` (docs/rules.md "Corrections" 1). A reversal of a whole event
  is one entry per member with the rule ``reversal``.
* ``members[m]``: balance, owed, spent, lifetime (= Σ earned = balance + spent − owed).

Semantics decided beyond the document's text (each marked ``DECISION n`` where used):

1. A reaction by a member who has left pays nobody (the reactor's ``member_left`` gate).
2. Recycled content looks only at the same member's earlier *counted* events with that hash.
3. A join pays the inviter whose invite arrived first before the join (earlier request or
   earlier in the same batch); a later invite in the same batch does not count.
4. lifetime = Σ earned at full amounts, never floored.
5. Re-scoring after a reversal re-runs the paid member's day through the caps in occurred
   order with each event's recorded gross and its own rule version; gates are not revisited.
6. Streak and quota bonuses are judged by the rule version of the event that earns them.

Where the document is silent the reference follows the service's visible behaviour, and says
so ("SILENT"): those are not claims about the rules.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from points.rules import Rules
from points.timeutils import local_day, month_start, week_start

# Types that pay their poster (docs/rules.md "Who is paid", first row; custom types too).
NOBODY_PAID = frozenset({"invite", "peer_score", "leave"})


@dataclass(frozen=True)
class EventIn:
    """One event as a bot sends it (only the fields the rules look at)."""

    id: str
    type: str
    member: str
    occurred_at: dt.datetime
    target: str = ""
    content: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Ingest:
    events: tuple[EventIn, ...]


@dataclass(frozen=True)
class Reverse:
    id: str


@dataclass(frozen=True)
class Spend:
    member: str
    points: int


Operation = Ingest | Reverse | Spend


@dataclass
class MemberState:
    balance: int = 0
    owed: int = 0
    spent: int = 0
    lifetime: int = 0  # Σ earned at full amounts (DECISION 4)
    left: bool = False


@dataclass
class Stored:
    """An event as it stands after ingestion."""

    seq: int  # arrival order (request order, then batch order)
    event: EventIn
    day: dt.date
    version: int  # index into the scorer's versions
    payee: str | None  # the member the event pays (the "beneficiary"), None: nobody
    rule_type: str  # the type whose rule pays: "invite" for a join
    counted: bool = False  # passed every gate: adds to the payee's tallies
    gross: int | None = None  # the main award after gates; None: no main award
    reversed: bool = False

    @property
    def main_rule(self) -> str:
        return f"points.{self.rule_type}"


class ReferenceScorer:
    def __init__(
        self,
        rules: Rules | Sequence[tuple[dt.datetime, Rules]],
        timezone_name: str,
    ) -> None:
        # Rule set versions, oldest first: (effective_from, rules). An event is scored by the
        # version in force when it occurred (docs/rules.md "Rule sets and versions").
        if isinstance(rules, Rules):
            self.versions: list[tuple[dt.datetime, Rules]] = [
                (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), rules)
            ]
        else:
            self.versions = sorted(rules, key=lambda v: v[0])
        self.tz = timezone_name
        self.events: dict[str, Stored] = {}
        self.members: dict[str, MemberState] = {}
        self.keys: dict[str, str] = {}  # once-only key -> id of the event holding it
        self.earned: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.recorded: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._seq = 0

    # --- public ----------------------------------------------------------------------------

    def run(self, operations: Iterable[Operation]) -> ReferenceScorer:
        for operation in operations:
            self.apply(operation)
        return self

    def apply(self, operation: Operation) -> bool:
        """Apply one operation; False for a spend the balance does not cover (not applied)."""
        if isinstance(operation, Ingest):
            self._ingest_batch(operation.events)
        elif isinstance(operation, Reverse):
            self._reverse(operation.id)
        else:
            state = self._member(operation.member)
            if state.balance < operation.points:
                return False
            state.balance -= operation.points
            state.spent += operation.points
        return True

    def earned_nonzero(self) -> dict[tuple[str, str, str], int]:
        return {k: v for k, v in self.earned.items() if v}

    def recorded_nonzero(self) -> dict[tuple[str, str, str], int]:
        return {k: v for k, v in self.recorded.items() if v}

    def rules_at(self, at: dt.datetime) -> int:
        """The version in force at ``at`` (the latest not after it, else the first)."""
        index = 0
        for i, (effective_from, _rules) in enumerate(self.versions):
            if effective_from <= at:
                index = i
        return index

    # --- the ledger ------------------------------------------------------------------------

    def _member(self, member: str) -> MemberState:
        return self.members.setdefault(member, MemberState())

    def _post(self, event_id: str, member: str, rule: str, points: int) -> None:
        """Change what ``event_id`` earned ``member`` by ``rule`` by ``points``."""
        if points == 0:
            return
        self.earned[(event_id, member, rule)] += points
        self._move(event_id, member, rule, points)

    def _move(self, event_id: str, member: str, entry_rule: str, points: int) -> None:
        """The balance side of a change (docs/rules.md "Corrections" 1): a credit first pays
        back what is owed (a settlement entry, not an award); a debit takes what the balance
        holds and records the rest as owed. Earned points count in full in ``lifetime``."""
        state = self._member(member)
        state.lifetime += points
        if points > 0:
            state.balance += points
            self.recorded[(event_id, member, entry_rule)] += points
            settle = min(state.owed, points)
            state.owed -= settle
            state.balance -= settle
        else:
            taken = min(state.balance, -points)
            state.balance -= taken
            state.owed += -points - taken
            self.recorded[(event_id, member, entry_rule)] -= taken

    # --- what stands -----------------------------------------------------------------------

    def _standing(self) -> list[Stored]:
        return [s for s in self.events.values() if not s.reversed]

    def _main_earned(self, s: Stored) -> int:
        assert s.payee is not None
        return self.earned[(s.event.id, s.payee, s.main_rule)]

    def _counted_of(
        self, payee: str, first: dt.date, last: dt.date, rule_type: str | None = None
    ) -> list[Stored]:
        """The payee's standing counted events from day ``first`` to ``last`` (of a type)."""
        return [
            s
            for s in self._standing()
            if s.counted
            and s.payee == payee
            and first <= s.day <= last
            and (rule_type is None or s.rule_type == rule_type)
        ]

    def _room(self, rules: Rules, payee: str, rule_type: str, day: dt.date) -> int | None:
        """The room left under every cap for the payee (docs/rules.md "Scoring, in two steps",
        2): type per day / week (Monday) / month, and all types per day. Tallies are the
        points the payee's standing counted events earn now. None: no cap applies."""
        week = week_start(day)
        month = month_start(day)
        month_end = (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        spans = (
            (rules.daily_caps.get(rule_type), self._counted_of(payee, day, day, rule_type)),
            (
                rules.weekly_caps.get(rule_type),
                self._counted_of(payee, week, week + dt.timedelta(days=6), rule_type),
            ),
            (
                rules.monthly_caps.get(rule_type),
                self._counted_of(payee, month, month_end, rule_type),
            ),
            (rules.daily_total_cap, self._counted_of(payee, day, day)),
        )
        rooms = [
            limit - sum(self._main_earned(s) for s in events)
            for limit, events in spans
            if limit is not None
        ]
        return max(min(rooms), 0) if rooms else None

    # --- ingestion -------------------------------------------------------------------------

    def _ingest_batch(self, batch: Sequence[EventIn]) -> None:
        late_streak: list[str] = []
        for event in batch:
            if event.id in self.events:  # a replay (earlier request or earlier in the batch)
                continue
            if self._ingest(event):
                late_streak.append(event.member)
        # docs/rules.md: "a late check-in (before streak_last_day) re-derives the streak and
        # its bonuses from the days that stand" -- once the batch is in.
        for member in dict.fromkeys(late_streak):
            self._rederive_bonuses(member)

    def _ingest(self, event: EventIn) -> bool:
        """Score one event; True when it is a late first check-in (bonuses to re-derive)."""
        self._seq += 1
        version = self.rules_at(event.occurred_at)
        rules = self.versions[version][1]
        actor = event.member
        self._member(actor)
        content = event.content or {}
        day = local_day(event.occurred_at, self.tz)

        # Who is paid (docs/rules.md "Who is paid").
        payee: str | None = actor
        rule_type = event.type
        gate: str | None = None
        once_key: str | None = None
        if event.type == "reaction":
            payee = str(content["author"])
            if payee == actor:
                gate = "own_content"
            else:
                once_key = f"reaction:{event.target}:{actor}"
        elif event.type == "content_featured":
            once_key = f"featured:{event.target or content.get('id')}"
        elif event.type in NOBODY_PAID:
            payee = None
        elif event.type == "join":
            # A join makes a member who left active again ("earns 0 until they join again").
            self._member(actor).left = False
            payee = self._inviter_of(actor)
            rule_type = "invite"
            if payee is not None:
                if self._joined_before(actor):
                    gate = "rejoin"
                else:
                    once_key = f"invite:{actor}"
        stored = Stored(self._seq, event, day, version, payee, rule_type)
        late = False

        if payee is not None:
            self._member(payee)
            base = rules.points.get(rule_type, 0)
            # Gates that make an event not counted (docs/rules.md "Scoring, in two steps", 1).
            if self.members[payee].left:
                gate = "member_left"
            if event.type == "reaction" and self.members[actor].left:
                gate = "member_left"  # DECISION 1: a reactor who left pays nobody
            gate = gate or self._content_gate(rules, stored, once_key)
            stored.counted = gate is None
            if base > 0:  # a type that pays nothing by rule has no award (it may still count)
                if gate is not None:
                    stored.gross = 0
                else:
                    stored.gross = self._gross(rules, stored, base)
            if stored.gross is not None:
                room = self._room(rules, payee, rule_type, day)
                points = stored.gross if room is None else min(stored.gross, room)
                self._post(event.id, payee, stored.main_rule, points)
            # A first counted check-in of the day (of the bonus's type): streak and quota
            # (docs/rules.md: "paid on the first counted event of their type in a day").
            first_today = not self._counted_of(payee, day, day, rule_type)
            self.events[event.id] = stored
            if stored.counted and once_key is not None:
                self.keys[once_key] = event.id
            if stored.counted and payee == actor and first_today:
                late = self._bonuses_on_first(rules, stored)
        else:
            self.events[event.id] = stored

        if event.type == "leave":
            self._member(actor).left = True
        return late

    def _content_gate(self, rules: Rules, s: Stored, once_key: str | None) -> str | None:
        event, content = s.event, s.event.content or {}
        minimum = rules.min_length.get(event.type)
        length = content.get("length")
        if minimum and isinstance(length, int) and length < minimum:  # judged only when sent
            return "min_length"
        if once_key is not None and once_key in self.keys:
            return "once"
        content_hash = content.get("hash")
        if event.type in rules.duplicate_types and isinstance(content_hash, str) and content_hash:
            # DECISION 2: only the same member's earlier *counted* events (standing), with that
            # hash, of the last window_days before this one.
            window = dt.timedelta(days=rules.duplicate_window_days)
            for other in self._standing():
                other_content = other.event.content or {}
                if (
                    other.counted
                    and other.event.member == event.member
                    and other_content.get("hash") == content_hash
                    and event.occurred_at - window <= other.event.occurred_at <= event.occurred_at
                ):
                    return "duplicate_content"
        cooldown = rules.cooldowns.get(s.rule_type)
        if cooldown:
            # "a scoring event of that type within this gap of another scoring one pays 0"
            # (not exercised by the differential test: its rule sets have no cooldowns).
            gap = dt.timedelta(seconds=cooldown)
            for other in self._standing():
                if (
                    other.counted
                    and other.event.member == event.member
                    and other.rule_type == s.rule_type
                    and other.payee is not None
                    and self._main_earned(other) > 0
                    and abs(other.event.occurred_at - event.occurred_at) < gap
                ):
                    return "cooldown"
        return None

    def _gross(self, rules: Rules, s: Stored, base: int) -> int:
        """First-per-day and diminishing returns: the event counts, its gross is cut."""
        assert s.payee is not None
        earlier = len(self._counted_of(s.payee, s.day, s.day, s.rule_type))
        if s.rule_type in rules.first_per_day and earlier >= 1:
            return 0
        dim = rules.diminishing.get(s.rule_type)
        if dim is not None and earlier >= dim.full:
            return base // 2 if earlier < dim.full + dim.half else 0
        return base

    def _inviter_of(self, joiner: str) -> str | None:
        """DECISION 3: the member whose invite of the joiner arrived first, before the join
        (earlier request or earlier in the batch). SILENT: a reversed invite does not stand."""
        invites = sorted(
            (
                s
                for s in self._standing()
                if s.event.type == "invite"
                and s.event.target == joiner
                and s.event.member != joiner
            ),
            key=lambda s: s.seq,
        )
        return invites[0].event.member if invites else None

    def _joined_before(self, joiner: str) -> bool:
        """SILENT: any earlier join of the member, reversed or not, makes this one a re-join."""
        return any(
            s.event.type == "join" and s.event.member == joiner for s in self.events.values()
        )

    # --- bonuses ---------------------------------------------------------------------------

    def _bonus_days(self, member: str, kind: str) -> dict[dt.date, Stored]:
        """The member's days with a standing counted event of the bonus's type (each event
        judged by its own version, DECISION 6), each with its first such event in occurred
        order (arrival order on a tie)."""
        firsts: dict[dt.date, Stored] = {}
        for s in sorted(self._standing(), key=lambda s: (s.event.occurred_at, s.seq)):
            config = self._config(s, kind)
            if (
                config is not None
                and s.counted
                and s.payee == member
                and s.event.member == member
                and s.event.type == config.type
            ):
                firsts.setdefault(s.day, s)
        return firsts

    def _config(self, s: Stored, kind: str) -> Any:
        rules = self.versions[s.version][1]
        return rules.streak if kind == "streak" else rules.monthly_quota

    def _bonuses_on_first(self, rules: Rules, s: Stored) -> bool:
        """Bonuses of a first counted event of its type today; True when it is a late
        check-in whose streak must be re-derived instead."""
        member, day, late = s.event.member, s.day, False
        streak = rules.streak
        if streak is not None and streak.type == s.event.type:
            days = sorted(self._bonus_days(member, "streak"))
            if days and day < days[-1]:
                late = True  # docs/rules.md: re-derived from the days that stand
            else:
                run = _run_ending(days, day)
                key = f"streak:{member}:{day.isoformat()}"
                if streak.bonus and run % streak.every == 0 and key not in self.keys:
                    self._post(s.event.id, member, "streak.bonus", streak.bonus)
                    self.keys[key] = s.event.id
        quota = rules.monthly_quota
        if quota is not None and quota.type == s.event.type:
            month = month_start(day)
            reached = [d for d in self._bonus_days(member, "quota") if month_start(d) == month]
            key = f"quota:{member}:{month:%Y-%m}"
            if len(reached) >= quota.days and quota.bonus and key not in self.keys:
                self._post(s.event.id, member, "monthly_quota.bonus", quota.bonus)
                self.keys[key] = s.event.id
        return late

    def _expected_bonuses(self, member: str) -> dict[str, tuple[Stored, int, str]]:
        """The streak and quota bonuses that hold on the days that stand: key -> (event that
        earns it: the day's first counted event, points, rule). DECISION 6: each judged by
        the version of the event that earns it."""
        expected: dict[str, tuple[Stored, int, str]] = {}
        streak_days = self._bonus_days(member, "streak")
        days = sorted(streak_days)
        for day in days:
            first = streak_days[day]
            streak = self._config(first, "streak")
            if streak and streak.bonus and _run_ending(days, day) % streak.every == 0:
                expected[f"streak:{member}:{day.isoformat()}"] = (first, streak.bonus, "streak")
        quota_days = self._bonus_days(member, "quota")
        by_month: defaultdict[dt.date, list[dt.date]] = defaultdict(list)
        for day in sorted(quota_days):
            by_month[month_start(day)].append(day)
        for month, month_days in by_month.items():
            for k, day in enumerate(month_days, start=1):
                quota = self._config(quota_days[day], "quota")
                if quota and k >= quota.days:  # "on reaching `days` distinct days"
                    if quota.bonus:
                        key = f"quota:{member}:{month:%Y-%m}"
                        expected[key] = (quota_days[day], quota.bonus, "quota")
                    break
        return expected

    def _rederive_bonuses(self, member: str) -> None:
        """docs/rules.md "Corrections" 4: a bonus that no longer holds is reversed, one that
        now holds is paid (to the first counted event of its day); one that still holds stays
        with the event that holds it. Streak first, then quota; reversals before payments."""
        expected = self._expected_bonuses(member)
        for kind, rule in (("streak", "streak.bonus"), ("quota", "monthly_quota.bonus")):
            prefix = f"{kind}:{member}:"
            for key, holder in sorted(self.keys.items()):
                if key.startswith(prefix) and key not in expected:
                    self._post(holder, member, rule, -self.earned[(holder, member, rule)])
                    del self.keys[key]
            for key, (event, points, key_kind) in sorted(expected.items()):
                if key_kind == kind and key not in self.keys:
                    self._post(event.event.id, member, rule, points)
                    self.keys[key] = event.event.id

    # --- corrections -----------------------------------------------------------------------

    def _reverse(self, event_id: str) -> None:
        s = self.events[event_id]
        if s.reversed:  # idempotent
            return
        # 1. Take back, per member, the net of everything the event earned them (one
        #    ``reversal`` entry per member; what the balance lacks is owed).
        for member in sorted({m for (e, m, _r) in self.earned if e == event_id}):
            rules_of = [r for (e, m, r) in self.earned if e == event_id and m == member]
            net = sum(self.earned[(event_id, member, r)] for r in rules_of)
            if net > 0:
                for r in rules_of:
                    self.earned[(event_id, member, r)] = 0
                self._move(event_id, member, "reversal", -net)
        # 2. Free its once-only keys.
        for key in [k for k, holder in self.keys.items() if holder == event_id]:
            del self.keys[key]
        s.reversed = True
        if s.payee is None:
            return
        # 3. Re-score the paid member's day.
        self._rescore_day(s.payee, s.day)
        # 4. Re-derive bonuses when the event's type carries a streak or quota.
        rules = self.versions[s.version][1]
        types = {c.type for c in (rules.streak, rules.monthly_quota) if c is not None}
        if s.event.type in types:
            self._rederive_bonuses(s.payee)

    def _rescore_day(self, member: str, day: dt.date) -> None:
        """DECISION 5: the day's standing counted events of the member, in occurred order,
        each with its recorded gross and its own version, through the caps again; the week's
        and month's other days stay as they are."""
        events = sorted(
            self._counted_of(member, day, day), key=lambda s: (s.event.occurred_at, s.seq)
        )
        week = week_start(day)
        month = month_start(day)
        month_end = (month + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)

        def other_days(first: dt.date, last: dt.date, rule_type: str) -> int:
            return sum(
                self._main_earned(s)
                for s in self._counted_of(member, first, last, rule_type)
                if s.day != day
            )

        week_before = {
            s.rule_type: other_days(week, week + dt.timedelta(days=6), s.rule_type) for s in events
        }
        month_before = {s.rule_type: other_days(month, month_end, s.rule_type) for s in events}
        by_type: defaultdict[str, int] = defaultdict(int)
        total = 0
        for s in events:
            if s.gross is None:  # pays nothing by rule: it only counts
                continue
            rules = self.versions[s.version][1]
            t = s.rule_type
            limits = (
                (rules.daily_caps.get(t), by_type[t]),
                (rules.weekly_caps.get(t), week_before[t] + by_type[t]),
                (rules.monthly_caps.get(t), month_before[t] + by_type[t]),
                (rules.daily_total_cap, total),
            )
            points = s.gross
            for limit, used in limits:
                if limit is not None:
                    points = min(points, max(limit - used, 0))
            by_type[t] += points
            total += points
            self._post(s.event.id, member, s.main_rule, points - self._main_earned(s))


def _run_ending(days: Sequence[dt.date], day: dt.date) -> int:
    """The number of consecutive days ending at ``day`` (``day`` itself counted)."""
    present = set(days) | {day}
    run = 0
    while day - dt.timedelta(days=run) in present:
        run += 1
    return run
