"""The scoring policy: every decision about what an event pays, as pure functions of plain facts.

Ingestion (``points.ingest``), re-scoring after a reversal and bonus re-derivation
(``points.corrections``) and ledger posting (``points.ledger``) all decide here, so they cannot
disagree; nothing here touches the database, so every rule is unit-tested without one
(``tests/points/test_scoring.py``). One event, in order (docs/rules.md, "Scoring"):

1. **Gates** (``gate_of``): the member left, own content, once-only key taken, recycled
   content, cooldown, minimum length, re-join. A gated event is *not counted*: it pays 0 and
   adds nothing to the tallies.
2. **Cuts** (``award_for``): first-per-day and diminishing returns give the *gross*.
3. **Caps** (``cap_points``): the gross is cut to the room left under the daily, weekly,
   monthly and daily-total caps. Only this step is re-run after a reversal (``day_rescore``).
4. **Bonuses** (``bonuses_on_first``, ``bonuses_expected``): streak and monthly quota, on the
   first counted event of their type in a local day, judged by that event's rule version.
5. **Credit** (``credit``, ``debit``): points go to the balance, then pay back what the member
   owes (a ``settlement``); a debit never takes the balance below what is held.

How an event was scored is kept on it as a ``ScoringRecord`` (versioned, internal); the public
response is rendered from it (``ScoringRecord.render``), never parsed back.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from points.rules import NEVER_PAYS_ACTOR, Rules

SCORING_RECORD_VERSION = 1


class Gate(StrEnum):
    """Why an event is not counted (its award says so in ``cap``)."""

    MEMBER_LEFT = "member_left"
    OWN_CONTENT = "own_content"
    REJOIN = "rejoin"
    MIN_LENGTH = "min_length"
    ONCE = "once"
    DUPLICATE_CONTENT = "duplicate_content"
    COOLDOWN = "cooldown"


# Ledger kinds that are *earned* points: they move lifetime points and the leaderboards by
# their full amount (an owed part included). Settlements, spending and expiry move only the
# balance.
EARNED_KINDS = frozenset({"award", "reversal", "adjustment"})
SETTLEMENT_REASON = "pays back points owed from an earlier reversal"


@dataclass(frozen=True)
class Tally:
    """What a member already has in one span (day, week, month), for one type or in total."""

    count: int = 0
    points: int = 0


@dataclass(frozen=True)
class Room:
    """What the paid member already earned for this event's type (day, week, month) and in
    total that day: the state the caps are checked against."""

    type_today: Tally = Tally()
    total_today: Tally = Tally()
    type_week: Tally = Tally()
    type_month: Tally = Tally()


@dataclass(frozen=True)
class Award:
    rule: str
    points: int
    base: int
    cap: str | None = None  # the gate, cut or cap that made ``points`` less than ``base``
    gross: int | None = None  # after gates and cuts, before caps (None: same as base)

    @property
    def gross_points(self) -> int:
        return self.base if self.gross is None else self.gross

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "points": self.points,
            "base": self.base,
            "gross": self.gross_points,
            "capped": self.cap is not None,
            "cap": self.cap,
        }


# --- 1. gates ---------------------------------------------------------------------------------


def rule_type_of(event_type: str, *, pays_inviter: bool) -> str:
    """The type whose rule pays: a join that pays its inviter is paid by the ``invite`` rule."""
    return "invite" if event_type == "join" and pays_inviter else event_type


def content_gate(
    rules: Rules, event_type: str, content: Mapping[str, Any] | None
) -> tuple[Gate | None, str]:
    """Gates that need only the event itself: (gate or None, the content hash to check)."""
    content = content or {}
    minimum = rules.min_length.get(event_type)
    length = content.get("length")
    if minimum and isinstance(length, int) and length < minimum:  # judged only when sent
        return Gate.MIN_LENGTH, ""
    content_hash = content.get("hash")
    if event_type in rules.duplicate_types and isinstance(content_hash, str) and content_hash:
        return None, content_hash
    return None, ""


def recycled(at: dt.datetime, counted_at: Iterable[dt.datetime], window_days: int) -> bool:
    """Whether the same member's *counted* event with the same content hash happened within
    ``window_days`` before ``at`` (recycled 打卡)."""
    window = dt.timedelta(days=window_days)
    return any(at - window <= earlier <= at for earlier in counted_at)


def cooling(at: dt.datetime, scored_at: Iterable[dt.datetime], seconds: int | None) -> bool:
    """Whether an event of the same type that paid points lies within the cooldown."""
    if not seconds:
        return False
    gap = dt.timedelta(seconds=seconds)
    return any(abs(at - other) < gap for other in scored_at)


def gate_of(
    *,
    payee_left: bool,
    actor_left: bool,
    fixed: Gate | None = None,
    once_taken: bool = False,
    is_recycled: bool = False,
    is_cooling: bool = False,
) -> Gate | None:
    """The gate that stops an event, first one wins. A member who has left earns nothing and
    makes nobody earn (decision 39: their reaction pays no author); ``fixed`` is a gate known
    from the event alone (own content, re-join, minimum length)."""
    if payee_left or actor_left:
        return Gate.MEMBER_LEFT
    if fixed is not None:
        return fixed
    if once_taken:
        return Gate.ONCE
    if is_recycled:
        return Gate.DUPLICATE_CONTENT
    if is_cooling:
        return Gate.COOLDOWN
    return None


# --- 2 and 3. cuts and caps -------------------------------------------------------------------


def cap_points(rules: Rules, event_type: str, gross: int, room: Room) -> tuple[int, str | None]:
    """Cut ``gross`` to the room left under every cap; return (points, the binding cap)."""
    points, cap = gross, None
    limits = (
        (rules.daily_caps.get(event_type), room.type_today.points, f"daily_caps.{event_type}"),
        (rules.weekly_caps.get(event_type), room.type_week.points, f"weekly_caps.{event_type}"),
        (rules.monthly_caps.get(event_type), room.type_month.points, f"monthly_caps.{event_type}"),
        (rules.daily_total_cap, room.total_today.points, "daily_total_cap"),
    )
    for limit, used, name in limits:
        if limit is not None and limit - used < points:
            points, cap = max(limit - used, 0), name
    return points, cap


def award_for(
    rules: Rules, rule_type: str, *, gate: Gate | None, room: Room, pays_actor: bool
) -> Award | None:
    """The main award one event earns its paid member, given what they already earned.

    None when the event pays nothing by rule (a type worth 0, a peer score, or a type that
    never pays its poster when ``pays_actor``). Otherwise an award that names what cut it:
    never negative, never above a cap; a first-per-day type pays only on the first counted
    event of its type that local day; diminishing returns halve, then stop.
    """
    if pays_actor and rule_type in NEVER_PAYS_ACTOR:
        return None
    base = rules.points.get(rule_type, 0)
    if base <= 0 or rule_type == "peer_score":
        return None
    rule = f"points.{rule_type}"
    if gate is not None:
        return Award(rule, 0, base, cap=gate.value, gross=0)
    if rule_type in rules.first_per_day and room.type_today.count >= 1:
        return Award(rule, 0, base, cap="first_per_day", gross=0)
    gross = base
    dim = rules.diminishing.get(rule_type)
    if dim is not None and room.type_today.count >= dim.full:
        gross = base // 2 if room.type_today.count < dim.full + dim.half else 0
    points, cap = cap_points(rules, rule_type, gross, room)
    if cap is None and gross < base:
        cap = f"diminishing.{rule_type}"
    return Award(rule, points, base, cap=cap, gross=gross)


@dataclass(frozen=True)
class DayEvent:
    """One event of the paid member's day, as re-scoring needs it (from its record)."""

    rule_type: str
    counted: bool
    gross: int | None  # the main award's gross; None: the event pays nothing by rule
    rules: Rules  # the rule version it was scored under


def day_rescore(
    events: Sequence[DayEvent], *, week_before: Mapping[str, int], month_before: Mapping[str, int]
) -> tuple[list[int | None], dict[str, Tally]]:
    """Run a member's day through the caps again, in occurred order, each event with its
    recorded gross and its own rule version (gates and cuts are not revisited).

    ``week_before`` / ``month_before``: points per type earned in the rest of the week and
    month (this day left out). Returns each event's points now (None: pays nothing by rule)
    and the day's tallies per type and ``*``."""
    counts: dict[str, int] = {}
    points_by_type: dict[str, int] = {}
    total = 0
    out: list[int | None] = []
    for event in events:
        if not event.counted:
            out.append(None)
            continue
        kind = event.rule_type
        done = points_by_type.get(kind, 0)
        counts[kind] = counts.get(kind, 0) + 1
        if event.gross is None:
            out.append(None)
            continue
        room = Room(
            type_today=Tally(counts[kind] - 1, done),
            total_today=Tally(0, total),
            type_week=Tally(0, week_before.get(kind, 0) + done),
            type_month=Tally(0, month_before.get(kind, 0) + done),
        )
        points, _cap = cap_points(event.rules, kind, event.gross, room)
        points_by_type[kind] = done + points
        total += points
        out.append(points)
    tallies = {k: Tally(counts[k], points_by_type.get(k, 0)) for k in counts}
    tallies["*"] = Tally(sum(counts.values()), total)
    return out, tallies


# --- 4. bonuses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreakState:
    days: int = 0
    last_day: dt.date | None = None


def streak_after(state: StreakState, day: dt.date) -> StreakState:
    """The streak after a first counted check-in on ``day`` (not before ``state.last_day``):
    +1 after yesterday, kept on the same day, restarted at 1 after a gap."""
    if state.last_day is None or day > state.last_day:
        if state.last_day is not None and (day - state.last_day).days == 1:
            return StreakState(state.days + 1, day)
        return StreakState(1, day)
    return state


def streak_runs(days: Sequence[dt.date]) -> dict[dt.date, int]:
    """For sorted distinct days, the streak length reached on each day."""
    out: dict[dt.date, int] = {}
    previous: dt.date | None = None
    run = 0
    for day in days:
        run = run + 1 if previous is not None and (day - previous).days == 1 else 1
        out[day] = run
        previous = day
    return out


def streak_key(member_id: int, day: dt.date) -> str:
    return f"streak:{member_id}:{day.isoformat()}"


def quota_key(member_id: int, day: dt.date) -> str:
    return f"quota:{member_id}:{day:%Y-%m}"


@dataclass(frozen=True)
class Bonus:
    key: str  # the once-only key that guards it
    kind: str  # "streak" or "quota"
    award: Award
    achievement: str = ""


@dataclass(frozen=True)
class BonusDecision:
    bonuses: tuple[Bonus, ...]
    streak: StreakState  # the member's streak afterwards
    late: bool  # a check-in before the streak's last day: re-derive from the days that stand
    month_days: int | None  # days of the quota type this month afterwards (None: no quota)


def bonuses_on_first(
    rules: Rules,
    *,
    member_id: int,
    event_type: str,
    day: dt.date,
    streak: StreakState,
    month_days_before: int,
    taken: Collection[str],
) -> BonusDecision:
    """Bonuses earned by the member's first counted event of ``event_type`` on ``day``, under
    the rule version the event was scored by. Not cut by caps (they reward a pattern, not
    volume); each guarded by its once-only key (``taken``: keys already held)."""
    bonuses: list[Bonus] = []
    late = False
    config = rules.streak
    if config is not None and config.type == event_type:
        if streak.last_day is not None and day < streak.last_day:
            late = True
        else:
            after = streak_after(streak, day)
            key = streak_key(member_id, day)
            if (
                after != streak
                and config.bonus
                and after.days % config.every == 0
                and key not in taken
            ):
                bonuses.append(
                    Bonus(key, "streak", Award("streak.bonus", config.bonus, config.bonus))
                )
            streak = after
    quota = rules.monthly_quota
    month_days = None
    if quota is not None and quota.type == event_type:
        month_days = month_days_before + 1
        key = quota_key(member_id, day)
        if month_days == quota.days and quota.bonus and key not in taken:
            award = Award("monthly_quota.bonus", quota.bonus, quota.bonus)
            bonuses.append(Bonus(key, "quota", award, quota.achievement))
    return BonusDecision(tuple(bonuses), streak, late, month_days)


@dataclass(frozen=True)
class ExpectedBonus:
    kind: str
    event_type: str  # the type whose first counted event of ``day`` earns it
    day: dt.date
    bonus: int
    achievement: str = ""


def bonuses_expected(
    member_id: int, first_days: Mapping[str, Sequence[tuple[dt.date, Rules]]]
) -> tuple[dict[str, ExpectedBonus], StreakState]:
    """The streak and quota bonuses a member should hold, from the days that still stand.

    ``first_days``: per event type, each local day with a counted event of that type, sorted,
    with the rule version of the day's first counted event, which judges that day's bonus as
    it did at ingestion (decision 40). Also returns the streak the member row should carry:
    that of the latest day's streak type."""
    expected: dict[str, ExpectedBonus] = {}
    latest: tuple[dt.date, str] | None = None
    for event_type, days in first_days.items():
        runs = streak_runs([day for day, _rules in days])
        per_month: dict[tuple[int, int], int] = {}
        for day, rules in days:
            month = (day.year, day.month)
            per_month[month] = per_month.get(month, 0) + 1
            streak, quota = rules.streak, rules.monthly_quota
            if streak is not None and streak.type == event_type:
                if latest is None or day > latest[0]:
                    latest = (day, event_type)
                if streak.bonus and runs[day] % streak.every == 0:
                    expected[streak_key(member_id, day)] = ExpectedBonus(
                        "streak", event_type, day, streak.bonus
                    )
            if quota is not None and quota.type == event_type and quota.bonus:
                if per_month[month] == quota.days:
                    expected[quota_key(member_id, day)] = ExpectedBonus(
                        "quota", event_type, day, quota.bonus, quota.achievement
                    )
    if latest is None:
        return expected, StreakState()
    day, event_type = latest
    runs = streak_runs([d for d, _r in first_days[event_type]])
    return expected, StreakState(runs[day], day)


# --- 5. credit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Movement:
    """One ledger entry to write: its kind, signed points and the balance right after it."""

    kind: str
    points: int
    balance_after: int


@dataclass(frozen=True)
class Posting:
    """What posting points does to a member: the entries, and the balance and debt after."""

    movements: tuple[Movement, ...]
    balance: int
    owed: int
    owed_added: int = 0
    refused: bool = False  # a debit beyond the spendable balance, owing not allowed


def credit(*, balance: int, owed: int, points: int, kind: str = "award") -> Posting:
    """Credit ``points`` (> 0); what the member owes is paid back from it first, as a
    ``settlement`` entry right after the credit, so owed points are never spendable."""
    balance += points
    movements = [Movement(kind, points, balance)]
    settle = min(owed, points)
    if settle:
        balance -= settle
        owed -= settle
        movements.append(Movement("settlement", -settle, balance))
    return Posting(tuple(movements), balance, owed)


def debit(
    *, balance: int, held: int, owed: int, points: int, kind: str, allow_owed: bool
) -> Posting:
    """Debit ``points`` (< 0) from what is spendable (``balance - held``). Beyond it the debit
    is refused, or, where ``allow_owed`` (reversals), the spendable part is taken and the rest
    recorded as owed: a balance never goes below zero nor below what is held."""
    spendable = balance - held
    taken = min(spendable, -points)
    shortfall = -points - taken
    if shortfall and not allow_owed:
        return Posting((), balance, owed, refused=True)
    balance -= taken
    movements = (Movement(kind, -taken, balance),) if taken else ()
    return Posting(movements, balance, owed + shortfall, owed_added=shortfall)


# --- the record kept on each event ------------------------------------------------------------


@dataclass(frozen=True)
class PaidAward:
    member: str  # external id of the member paid
    award: Award


@dataclass(frozen=True)
class ScoringRecord:
    """How an event was scored, kept on the event (``Event.scoring``, internal and versioned):
    corrections read it; the public answer is rendered from it."""

    rule_type: str
    counted: bool
    balance: int  # the poster's balance right after the event
    awards: tuple[PaidAward, ...] = ()

    def main_award(self, member: str) -> Award | None:
        for paid in self.awards:
            if paid.member == member and paid.award.rule.startswith("points."):
                return paid.award
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": SCORING_RECORD_VERSION,
            "rule_type": self.rule_type,
            "counted": self.counted,
            "balance": self.balance,
            "awards": [
                [
                    p.member,
                    p.award.rule,
                    p.award.base,
                    p.award.gross_points,
                    p.award.points,
                    p.award.cap,
                ]
                for p in self.awards
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> ScoringRecord:
        """From the stored JSON (raw SQL through Django hands ``jsonb`` over as text)."""
        if isinstance(data, str):
            loaded: dict[str, Any] = json.loads(data)
            data = loaded
        if data.get("v") != SCORING_RECORD_VERSION:
            raise ValueError(f"unknown scoring record version {data.get('v')!r}")
        awards = tuple(
            PaidAward(member, Award(rule, points, base, cap=cap, gross=gross))
            for member, rule, base, gross, points, cap in data["awards"]
        )
        return cls(data["rule_type"], bool(data["counted"]), int(data["balance"]), awards)

    def render(self, *, client_id: str, poster: str, rule_version: int) -> dict[str, Any]:
        """The public answer to the event (``points``: what the poster earned)."""
        return {
            "id": client_id,
            "status": "accepted",
            "points": sum(p.award.points for p in self.awards if p.member == poster),
            "balance": self.balance,
            "rule_version": rule_version,
            "awards": [{**p.award.as_dict(), "member": p.member} for p in self.awards],
        }
