"""A hypothesis state machine over the ledger: events, replays, conflicting replays,
reversals, spends, holds and releases, in any order; after every step each balance equals the
sum of its entries, nothing is negative, held never exceeds the balance, and a replayed id
changes nothing. (Redemptions and their rejections do not exist yet: holds and spends stand in
for them, through the same ledger primitive they will use.)"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from typing import Any

import pytest
from django.db import transaction
from django.db.models import F, Sum
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
from points.models import Community, EntryKind, LedgerEntry, Member
from points.services import EventInput, community_create, events_ingest

SH = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 9, 28, 9, 0, tzinfo=SH)
MEMBERS = ("ann", "bob", "cat", "dan")
_slugs = itertools.count()


class LedgerMachine(RuleBasedStateMachine):
    posted = Bundle("posted")

    def __init__(self) -> None:
        super().__init__()
        self.community: Community = community_create(
            slug=f"machine-{next(_slugs)}", name="State machine"
        )
        self.n = 0

    def _member(self, name: str) -> Member | None:
        return Member.objects.filter(community=self.community, external_id=name).first()

    @rule(
        target=posted,
        kind=st.sampled_from(["check_in", "message", "share", "ugc_post", "help", "reaction",
                              "invite", "join", "peer_score"]),
        who=st.sampled_from(MEMBERS),
        other=st.sampled_from(MEMBERS),
        day=st.integers(0, 10),
        extra=st.integers(0, 3),
    )  # fmt: skip
    def post_event(self, kind: str, who: str, other: str, day: int, extra: int) -> EventInput:
        self.n += 1
        when = START + dt.timedelta(days=day, minutes=self.n)
        kwargs: dict[str, Any] = {}
        if kind == "reaction":
            kwargs = {"target": f"post-{extra}", "content": {"author": other}}
        elif kind in ("invite", "peer_score"):
            other = other if other != who else f"new-{extra}"
            kwargs = {"target": other}
            if kind == "peer_score":
                kwargs["score"] = 1 + extra
        elif kind == "join":
            who = f"new-{extra}"
        else:
            kwargs = {"content": {"hash": f"h{extra}", "length": 50}}
        event = EventInput(f"e{self.n}", kind, who, when, **kwargs)
        [outcome] = events_ingest(community=self.community, events=[event])
        assert outcome.status == "accepted", outcome.errors
        return event

    @rule(event=posted)
    def replay(self, event: EventInput) -> None:
        before = LedgerEntry.objects.filter(community=self.community).count()
        [outcome] = events_ingest(community=self.community, events=[event])
        assert outcome.status == "replayed"
        assert LedgerEntry.objects.filter(community=self.community).count() == before

    @rule(event=posted)
    def conflicting_replay(self, event: EventInput) -> None:
        other = EventInput(event.client_id, "help", event.member, event.occurred_at)
        [outcome] = events_ingest(community=self.community, events=[other])
        assert outcome.status in ("conflict", "replayed")  # "help" may be the same body

    @rule(event=posted)
    def reverse(self, event: EventInput) -> None:
        first = event_reverse(community=self.community, client_id=event.client_id)
        assert event_reverse(community=self.community, client_id=event.client_id) == first

    @rule(who=st.sampled_from(MEMBERS), points=st.integers(1, 40))
    def spend(self, who: str, points: int) -> None:
        member = self._member(who)
        if member is None:
            return
        try:
            with transaction.atomic():
                ledger_post(
                    member=member_lock(member_id=member.pk),
                    points=-points,
                    kind=EntryKind.SPEND,
                    when=START,
                    period_day=None,
                    reason="redemption",
                )
        except InsufficientPoints:
            member.refresh_from_db()
            assert member.balance - member.held < points

    @rule(who=st.sampled_from(MEMBERS), points=st.integers(1, 30))
    def hold(self, who: str, points: int) -> None:
        Member.objects.filter(
            community=self.community, external_id=who, balance__gte=F("held") + points
        ).update(held=F("held") + points)

    @rule(who=st.sampled_from(MEMBERS))
    def release(self, who: str) -> None:
        Member.objects.filter(community=self.community, external_id=who).update(held=0)

    @invariant()
    def ledger_is_whole(self) -> None:
        for member in Member.objects.filter(community=self.community):
            total = LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0
            assert member.balance == total
            assert member.balance >= 0
            assert member.owed >= 0
            assert 0 <= member.held <= member.balance
        assert not LedgerEntry.objects.filter(
            community=self.community, balance_after__lt=0
        ).exists()


@pytest.mark.django_db
def test_ledger_state_machine() -> None:
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "25")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
