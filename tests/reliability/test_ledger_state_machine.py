"""A hypothesis state machine over the ledger, on the real PostgreSQL test database.

Steps, in any order hypothesis picks: events of most types (check-ins on several days,
shares and UGC posts with content hashes, reactions paying ``content.author``, invites and
joins, messages and help), replays of earlier ids (same body: ``replayed``, the stored result,
nothing written), conflicting replays (another body: ``conflict``, nothing written), batches
mixing a new event with replays and a conflict, reversals (``event_reverse``, called twice),
spends (``ledger_post`` kind ``spend`` under ``member_lock``; ``InsufficientPoints`` beyond
the spendable balance), holds and releases.

After every step: each balance equals the sum of its entries and each entry's
``balance_after`` is that running sum (so never negative), no balance, ``held`` or ``owed``
is negative, ``held`` never exceeds the balance, and every stored event still carries the
result its first acceptance returned (replays and reversals change nothing there).

Redemptions and their rejections do not exist yet. A redemption will reserve points
(``Member.held``) and later spend or release them; until it exists, ``hold`` raises ``held``
under the member's row lock (within the spendable balance, as a redemption will), ``release``
lowers it (a rejection), and ``spend`` posts the ``spend`` entry a fulfilled redemption will
post, through the same ``ledger_post`` primitive.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import uuid
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from points.corrections import event_reverse
from points.exceptions import InsufficientPoints
from points.ledger import ledger_post, member_lock
from points.models import (
    AwardOnce,
    Community,
    DailyTally,
    EntryKind,
    Event,
    LedgerEntry,
    Member,
    PeriodTotal,
)
from points.selectors import event_answer
from points.services import EventInput, IngestOutcome, community_create, events_ingest

EXAMPLES = int(os.environ.get("STATE_MACHINE_EXAMPLES", "25"))
STEPS = int(os.environ.get("STATE_MACHINE_STEPS", "30"))

SH = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 9, 28, 9, 0, tzinfo=SH)  # a Monday; events fall on days 0-9
NOW = START + dt.timedelta(days=20)  # the clock of every call: deterministic runs
MEMBERS = ("ann", "bob", "cat", "dan")
NEWCOMERS = ("new-0", "new-1", "new-2")  # invited (or not) and joining
EVERYONE = MEMBERS + NEWCOMERS

# What the run exercised, over all examples (the figures in docs/reliability.md).
STATS: collections.Counter[str] = collections.Counter()

members = st.sampled_from(MEMBERS)
everyone = st.sampled_from(EVERYONE)
days = st.integers(0, 9)


class LedgerMachine(RuleBasedStateMachine):
    posted = Bundle("posted")

    def __init__(self) -> None:
        super().__init__()
        # A fresh community per run: no example sees another's members, events or keys.
        self.community: Community = community_create(
            slug=f"machine-{uuid.uuid4().hex[:12]}",
            name="State machine",
            timezone_name="Asia/Shanghai",
        )
        self.n = 0
        self.results: dict[str, Any] = {}  # client id -> the result its acceptance returned
        self.reversals: dict[str, dict[str, Any]] = {}  # client id -> first reversal result
        STATS["runs"] += 1

    # -- helpers --------------------------------------------------------------------------

    def _id(self) -> str:
        self.n += 1
        return f"e{self.n}"

    def _at(self, day: int) -> dt.datetime:
        return START + dt.timedelta(days=day, minutes=self.n)

    def _ingest(self, events: list[EventInput]) -> list[IngestOutcome]:
        return events_ingest(community=self.community, events=events, now=NOW)

    def _accept(self, event: EventInput) -> EventInput:
        [outcome] = self._ingest([event])
        assert outcome.status == "accepted", outcome.errors
        assert outcome.result is not None
        self.results[event.client_id] = outcome.result
        STATS[f"event:{event.type}"] += 1
        return event

    def _member(self, pick: int) -> Member | None:
        """One of the members so far, preferring those with points (None: nobody yet)."""
        found = list(Member.objects.filter(community=self.community).order_by("external_id"))
        rich = [m for m in found if m.balance > 0]
        choices = rich or found
        return choices[pick % len(choices)] if choices else None

    def _snapshot(self) -> tuple[list[Any], ...]:
        """Everything a step could write, in a comparable form."""
        c = self.community
        return (
            list(
                Member.objects.filter(community=c)
                .order_by("id")
                .values_list(
                    "external_id",
                    "balance",
                    "held",
                    "owed",
                    "lifetime_points",
                    "status",
                    "streak_days",
                    "streak_last_day",
                )
            ),  # fmt: skip
            list(
                LedgerEntry.objects.filter(community=c)
                .order_by("id")
                .values_list("id", "member_id", "event_id", "kind", "points", "balance_after")
            ),
            list(
                DailyTally.objects.filter(community=c)
                .order_by("member_id", "day", "event_type")
                .values_list("member_id", "day", "event_type", "count", "points")
            ),
            list(
                PeriodTotal.objects.filter(community=c)
                .order_by("member_id", "kind", "start")
                .values_list("member_id", "kind", "start", "points")
            ),
            list(AwardOnce.objects.filter(community=c).order_by("key").values_list("key", "event")),
            list(
                Event.objects.filter(community=c)
                .order_by("id")
                .values_list("client_id", "body_hash", "scoring", "reversed_at", "reversal")
            ),
        )

    # -- events ---------------------------------------------------------------------------

    @rule(target=posted, who=everyone, day=days)
    def check_in(self, who: str, day: int) -> EventInput:
        return self._accept(EventInput(self._id(), "check_in", who, self._at(day)))

    @rule(target=posted, who=members, day=days, content=st.integers(0, 2))
    def share(self, who: str, day: int, content: int) -> EventInput:
        event = EventInput(
            self._id(), "share", who, self._at(day), content={"hash": f"share-{content}"}
        )
        return self._accept(event)

    @rule(
        target=posted,
        who=members,
        day=days,
        content=st.integers(0, 2),
        length=st.sampled_from([5, 60]),
    )
    def ugc_post(self, who: str, day: int, content: int, length: int) -> EventInput:
        event = EventInput(
            self._id(),
            "ugc_post",
            who,
            self._at(day),
            content={"hash": f"post-{content}", "length": length},
        )
        return self._accept(event)

    @rule(target=posted, who=everyone, author=members, post=st.integers(0, 2), day=days)
    def reaction(self, who: str, author: str, post: int, day: int) -> EventInput:
        event = EventInput(
            self._id(),
            "reaction",
            who,
            self._at(day),
            target=f"{author}-post-{post}",
            content={"author": author},
        )
        return self._accept(event)

    @rule(target=posted, inviter=members, invitee=st.sampled_from(NEWCOMERS), day=days)
    def invite(self, inviter: str, invitee: str, day: int) -> EventInput:
        return self._accept(
            EventInput(self._id(), "invite", inviter, self._at(day), target=invitee)
        )

    @rule(target=posted, invitee=st.sampled_from(NEWCOMERS), day=days)
    def join(self, invitee: str, day: int) -> EventInput:
        return self._accept(EventInput(self._id(), "join", invitee, self._at(day)))

    @rule(target=posted, kind=st.sampled_from(["message", "help"]), who=everyone, day=days)
    def chatter(self, kind: str, who: str, day: int) -> EventInput:
        return self._accept(EventInput(self._id(), kind, who, self._at(day)))

    # -- replays and conflicts ------------------------------------------------------------

    @rule(event=posted)
    def replay(self, event: EventInput) -> None:
        before = self._snapshot()
        [outcome] = self._ingest([event])
        assert outcome.status == "replayed"
        assert outcome.result == self.results[event.client_id]
        assert self._snapshot() == before
        STATS["replay"] += 1

    @rule(event=posted, change=st.sampled_from(["type", "member", "occurred_at", "meta"]))
    def conflicting_replay(self, event: EventInput, change: str) -> None:
        other: EventInput
        if change == "type":
            other = dataclasses.replace(event, type="help" if event.type != "help" else "message")
        elif change == "member":
            other = dataclasses.replace(event, member="ann" if event.member != "ann" else "bob")
        elif change == "occurred_at":
            assert event.occurred_at is not None
            other = dataclasses.replace(event, occurred_at=event.occurred_at + dt.timedelta(days=1))
        else:
            other = dataclasses.replace(event, meta={"edited": True})
        before = self._snapshot()
        [outcome] = self._ingest([other])
        assert outcome.status == "conflict"
        assert outcome.result is None
        assert self._snapshot() == before
        STATS["conflict"] += 1

    @rule(target=posted, old=posted, who=members, day=days)
    def batch_with_replays(self, old: EventInput, who: str, day: int) -> EventInput:
        """One call: a new event, a replay of an earlier one, a second copy of the new one and
        a conflicting copy of the earlier one. Only the new event writes."""
        new = EventInput(self._id(), "help", who, self._at(day))
        clash = dataclasses.replace(old, meta={"batch": True})
        outcomes = self._ingest([new, old, new, clash])
        assert [o.status for o in outcomes] == ["accepted", "replayed", "replayed", "conflict"]
        assert outcomes[1].result == self.results[old.client_id]
        assert outcomes[2].result == outcomes[0].result
        self.results[new.client_id] = outcomes[0].result
        STATS["batch"] += 1
        return new

    # -- corrections ----------------------------------------------------------------------

    @rule(event=posted)
    def reverse(self, event: EventInput) -> None:
        already = self.reversals.get(event.client_id)
        before = self._snapshot()
        first = event_reverse(community=self.community, client_id=event.client_id, now=NOW)
        if already is not None:
            assert first == already
            assert self._snapshot() == before
            STATS["reverse:again"] += 1
        else:
            self.reversals[event.client_id] = first
            STATS["reverse"] += 1
        after = self._snapshot()
        second = event_reverse(community=self.community, client_id=event.client_id, now=NOW)
        assert second == first
        assert self._snapshot() == after

    # -- spends, holds, releases (stand-ins for redemptions) ------------------------------

    @rule(who=st.integers(0, 6), percent=st.integers(10, 160))
    def spend(self, who: int, percent: int) -> None:
        """Spend ``percent`` of what is spendable: above 100 % must be refused."""
        member = self._member(who)
        if member is None:
            return
        points = max(1, (member.balance - member.held) * percent // 100)
        before = self._snapshot()
        spendable = balance = -1
        try:
            with transaction.atomic():
                locked = member_lock(member_id=member.pk)
                balance, spendable = locked.balance, locked.balance - locked.held
                ledger_post(
                    member=locked,
                    points=-points,
                    kind=EntryKind.SPEND,
                    when=NOW,
                    period_day=None,
                    reason="redemption (state machine)",
                    actor="test:state-machine",
                )
        except InsufficientPoints:
            assert points > spendable
            assert self._snapshot() == before
            STATS["spend:refused"] += 1
        else:
            assert points <= spendable
            member.refresh_from_db()
            assert member.balance == balance - points
            STATS["spend"] += 1

    @rule(who=st.integers(0, 6), percent=st.integers(10, 100))
    def hold(self, who: int, percent: int) -> None:
        """Reserve ``percent`` of what is spendable, as a pending redemption will."""
        member = self._member(who)
        if member is None:
            return
        with transaction.atomic():
            locked = member_lock(member_id=member.pk)
            points = (locked.balance - locked.held) * percent // 100
            if points <= 0:
                return
            locked.held += points
            locked.save(update_fields=["held"])
        STATS["hold"] += 1

    @rule(who=st.integers(0, 6))
    def hold_beyond_the_balance_is_refused_by_the_database(self, who: int) -> None:
        member = self._member(who)
        if member is None:
            return
        before = self._snapshot()
        with pytest.raises(IntegrityError), transaction.atomic():
            Member.objects.filter(pk=member.pk).update(held=F("balance") + 1)
        assert self._snapshot() == before
        STATS["hold:refused"] += 1

    @rule(who=st.integers(0, 6), percent=st.integers(10, 100))
    def release(self, who: int, percent: int) -> None:
        """Give back ``percent`` of what is held, as a rejected redemption will."""
        member = self._member(who)
        if member is None:
            return
        with transaction.atomic():
            locked = member_lock(member_id=member.pk)
            if not locked.held:
                return
            locked.held -= max(1, locked.held * percent // 100)
            locked.save(update_fields=["held"])
        STATS["release"] += 1

    # -- the invariant --------------------------------------------------------------------

    @invariant()
    def ledger_is_whole(self) -> None:
        c = self.community
        running: dict[int, int] = collections.defaultdict(int)
        for member_id, points, balance_after in (
            LedgerEntry.objects.filter(community=c)
            .order_by("member_id", "id")
            .values_list("member_id", "points", "balance_after")
        ):
            running[member_id] += points
            assert balance_after == running[member_id] >= 0, (member_id, balance_after)
        for member_id, name, balance, held, owed in Member.objects.filter(community=c).values_list(
            "id", "external_id", "balance", "held", "owed"
        ):
            assert balance == running[member_id], (name, balance, running[member_id])
            assert min(balance, held, owed) >= 0, (name, balance, held, owed)
            assert held <= balance, (name, held, balance)
        stored = {
            e.client_id: event_answer(e)
            for e in Event.objects.filter(community=c).select_related("member")
        }
        assert stored == self.results  # every accepted id once, with its first result
        STATS["checks"] += 1


@pytest.mark.django_db(transaction=True)
def test_ledger_state_machine() -> None:
    STATS.clear()
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        ),
    )
    print(f"state machine: {dict(sorted(STATS.items()))}")  # noqa: T201 - figures for the docs
    # The run must have exercised every kind of step, or it proves less than it claims.
    # (Hypothesis switches rules off per example, so single kinds may be rare: check groups.)
    groups = {
        "events": [k for k in STATS if k.startswith("event:")],
        "replays": ["replay", "batch"],
        "conflicts": ["conflict", "batch"],
        "reversals": ["reverse"],
        "spends": ["spend", "spend:refused"],
        "holds": ["hold", "release", "hold:refused"],
    }
    for group, kinds in groups.items():
        assert sum(STATS[k] for k in kinds) > 0, (group, STATS)
