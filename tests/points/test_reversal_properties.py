"""Property: for any sequence of events and reversals, every balance equals the sum of its
entries and never goes below zero (nor does ``owed``), and replaying the same sequence changes
nothing."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from points.corrections import event_reverse
from points.ledger import ledger_post, member_lock
from points.models import Community, EntryKind, Event, LedgerEntry, Member
from points.services import EventInput, community_create, events_ingest

SH = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 10, 26, 9, 0, tzinfo=SH)
MEMBERS = ["ann", "bob", "cat"]
_slugs = itertools.count()

event_op = st.tuples(
    st.just("event"),
    st.sampled_from(
        ["check_in", "message", "share", "ugc_post", "help", "reaction", "invite", "join"]
    ),
    st.integers(0, len(MEMBERS) - 1),
    st.integers(0, 12),  # day offset
    st.integers(0, 3),  # content hash / target choice
)
reverse_op = st.tuples(st.just("reverse"), st.integers(0, 200))
spend_op = st.tuples(st.just("spend"), st.integers(0, len(MEMBERS) - 1), st.integers(1, 30))
operations = st.lists(st.one_of(event_op, event_op, event_op, reverse_op, spend_op), max_size=40)


def _event(n: int, op: tuple[Any, ...]) -> EventInput:
    _tag, kind, who, day, extra = op
    member = MEMBERS[who]
    other = MEMBERS[(who + 1 + extra) % len(MEMBERS)]
    when = START + dt.timedelta(days=day, minutes=n)
    if kind == "reaction":
        return EventInput(
            f"e{n}", kind, member, when, target=f"post{extra}", content={"author": other}
        )
    if kind == "invite":
        return EventInput(f"e{n}", kind, member, when, target=f"new{extra}")
    if kind == "join":
        return EventInput(f"e{n}", kind, f"new{extra}", when)
    return EventInput(f"e{n}", kind, member, when, content={"hash": f"h{extra}", "length": 50})


def _ledger(community: Community) -> list[tuple[str, str, int, str, str]]:
    """The ledger in a comparable form: member, event, points, kind, rule, in order."""
    return list(
        LedgerEntry.objects.filter(community=community)
        .order_by("id")
        .values_list("member__external_id", "event__client_id", "points", "kind", "rule")
    )


def _apply(community: Community, ops: list[tuple[Any, ...]]) -> list[EventInput]:
    posted: list[EventInput] = []
    for n, op in enumerate(ops):
        if op[0] == "event":
            event = _event(n, op)
            [outcome] = events_ingest(community=community, events=[event])
            assert outcome.status == "accepted", outcome.errors
            posted.append(event)
        elif op[0] == "reverse" and posted:
            event_reverse(community=community, client_id=posted[op[1] % len(posted)].client_id)
        elif op[0] == "spend":
            member = Member.objects.filter(community=community, external_id=MEMBERS[op[1]]).first()
            if member is not None and member.balance - member.held >= op[2]:
                with transaction.atomic():
                    ledger_post(
                        member=member_lock(member_id=member.pk),
                        points=-op[2],
                        kind=EntryKind.SPEND,
                        when=START,
                        period_day=None,
                        reason="redemption",
                    )
        _check(community)
    return posted


def _check(community: Community) -> None:
    for member in Member.objects.filter(community=community):
        total = LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0
        assert member.balance == total
        assert member.balance >= 0
        assert member.owed >= 0
        assert 0 <= member.held <= member.balance
    assert not LedgerEntry.objects.filter(community=community, balance_after__lt=0).exists()


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_any_events_and_reversals_keep_the_ledger_whole(ops: list[tuple[Any, ...]]) -> None:
    community = community_create(slug=f"prop-{next(_slugs)}", name="property")
    posted = _apply(community, ops)

    entries = LedgerEntry.objects.filter(community=community).count()
    replayed = events_ingest(community=community, events=posted)
    assert {o.status for o in replayed} <= {"replayed"}
    assert LedgerEntry.objects.filter(community=community).count() == entries
    assert Event.objects.filter(community=community).count() == len(posted)
    _check(community)

    # The same sequence on a fresh community gives the same ledger (scoring is deterministic).
    twin = community_create(slug=f"prop-{next(_slugs)}", name="twin")
    _apply(twin, ops)
    assert _ledger(twin) == _ledger(community)
