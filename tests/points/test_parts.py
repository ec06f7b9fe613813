"""A large batch is written in parts that share nothing scoring reads (decision 53): how
parts are drawn, and that concurrent batches written in parts keep every guarantee."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, cast

import pytest
from django.db.models import Count, Sum

from points.ingest import parts
from points.ingest.parts import plan_parts
from points.ingest.records import EventInput, Plan
from points.models import Community, Event, EventKey, LedgerEntry, Member
from points.selectors import RuleVersion
from points.services import events_ingest
from tests.points.test_exactly_once import _race

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
DAY = dt.datetime(2026, 11, 20, 9, 0, tzinfo=SHANGHAI)


def _plan(i: int, member: str, **kw: Any) -> Plan:
    event = EventInput(client_id=f"e{i}", type=kw.pop("type", "message"), member=member, **kw)
    return Plan(
        index=i,
        event=event,
        hash="",
        occurred=DAY,
        day=DAY.date(),
        version=cast(RuleVersion, None),
        payee=member,
        rule_type=event.type,
    )


def _tokens(plan: Plan) -> set[str]:
    tokens = {plan.event.member, *([plan.payee] if plan.payee else [])}
    if plan.event.type == "invite":
        tokens.add(plan.event.target)
    if plan.once_key:
        tokens.add(plan.once_key)
    return tokens


def test_a_batch_under_two_parts_worth_stays_whole_and_nothing_makes_no_part() -> None:
    plans = [_plan(i, f"m{i % 37}") for i in range(2 * parts.PART_MIN - 1)]
    assert plan_parts(plans) == [plans]
    assert plan_parts([]) == []


def test_parts_share_nothing_keep_the_batch_order_and_cover_it() -> None:
    rng = random.Random(53)
    members = [f"m{i}" for i in range(300)]
    plans = []
    for i in range(4 * parts.PART_MIN):
        member = rng.choice(members)
        plan = _plan(i, member)
        roll = rng.random()
        if roll < 0.1:  # a reaction pays the content's author
            plan.payee = rng.choice(members)
        elif roll < 0.15:  # an invite: the invitee's later join pays this member
            plan = _plan(i, member, type="invite", target=rng.choice(members))
            plan.payee = None
        elif roll < 0.2:  # a featured post: its key is shared by whoever features it
            plan.once_key = f"featured:post-{rng.randrange(5)}"
        plans.append(plan)

    drawn = plan_parts(plans)

    assert len(drawn) == parts.PARTS_MAX
    assert sorted(p.index for part in drawn for p in part) == list(range(len(plans)))
    for part in drawn:
        assert [p.index for p in part] == sorted(p.index for p in part)
    seen: dict[str, int] = {}
    for n, part in enumerate(drawn):
        for plan in part:
            for token in _tokens(plan):
                assert seen.setdefault(token, n) == n, f"{token} in parts {seen[token]} and {n}"


def test_a_member_alone_in_its_component_lands_in_the_same_part_in_every_batch() -> None:
    batches = [
        [_plan(0, "alice")] + [_plan(i, f"x{seed}-{i}") for i in range(1, 4 * parts.PART_MIN)]
        for seed in range(3)
    ]
    homes = {
        next(
            n
            for n, part in enumerate(plan_parts(b))
            if any(p.event.member == "alice" for p in part)
        )
        for b in batches
    }
    assert len(homes) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_in_parts_store_each_event_once_and_balance(
    community: Community,
) -> None:
    """Four batches of 400 over 60 shared members at once, each written in four parts, and
    the same four batches posted again at once: every event stored once, answered accepted
    the first time and replayed the second, every balance equal to its entries."""
    members = [f"m{i:02d}" for i in range(60)]
    types = ["message", "check_in", "share", "help"]

    def batch(i: int) -> list[EventInput]:
        rng = random.Random(i)
        return [
            EventInput(
                client_id=f"p{i}-{n}",
                type=rng.choice(types),
                member=rng.choice(members),
                occurred_at=DAY + dt.timedelta(minutes=n),
            )
            for n in range(4 * parts.PART_MIN)
        ]

    first = _race(4, lambda i: events_ingest(community=community, events=batch(i)))
    again = _race(4, lambda i: events_ingest(community=community, events=batch(i)))

    assert {o.status for outcomes in first for o in outcomes} == {"accepted"}
    assert {o.status for outcomes in again for o in outcomes} == {"replayed"}
    for before, after in zip(first, again, strict=True):
        assert [o.result for o in before] == [o.result for o in after]
    assert Event.objects.filter(community=community).count() == 16 * parts.PART_MIN
    assert EventKey.objects.filter(community=community).count() == 16 * parts.PART_MIN
    for member in Member.objects.filter(community=community):
        total = LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0
        assert member.balance == total == member.lifetime_points


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_posted_twice_at_once_is_scored_once(community: Community) -> None:
    """Both requests write in parts; the slower one finds the other's parts committed under
    it (a concurrent duplicate), starts over with what is left, and answers those replayed."""
    rng = random.Random(7)
    events = [
        EventInput(
            client_id=f"same-{n}",
            type=rng.choice(["message", "share"]),
            member=f"u{rng.randrange(80)}",
            occurred_at=DAY + dt.timedelta(minutes=n),
        )
        for n in range(4 * parts.PART_MIN)
    ]

    results = _race(2, lambda _i: events_ingest(community=community, events=events))

    for n in range(len(events)):
        statuses = sorted(outcomes[n].status for outcomes in results)
        assert statuses == ["accepted", "replayed"], (n, statuses)
        assert results[0][n].result == results[1][n].result
    per_event = (
        LedgerEntry.objects.filter(community=community)
        .values("event_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not per_event.exists()
