"""Exactly-once ingestion and caps under real concurrency (threads, each with its own
PostgreSQL connection), and the ledger's sums after thousands of random events."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum

from points.models import Community, DailyTally, EntryKind, Event, LedgerEntry, Member
from points.services import EventInput, IngestOutcome, events_ingest

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
DAY = dt.datetime(2026, 11, 1, 9, 0, tzinfo=SHANGHAI)  # 20 days of random events end before today


def _race(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def _sum_entries(member: Member) -> int:
    return LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0


@pytest.mark.django_db(transaction=True)
def test_eight_threads_posting_the_same_event_id_award_it_once(community: Community) -> None:
    event = EventInput(client_id="same-id", type="ugc_post", member="ann", occurred_at=DAY)

    outcomes: list[IngestOutcome] = _race(
        8, lambda _i: events_ingest(community=community, events=[event])[0]
    )

    assert sorted(o.status for o in outcomes) == ["accepted"] + ["replayed"] * 7
    first = next(o.result for o in outcomes if o.status == "accepted")
    assert all(o.result == first for o in outcomes)  # every thread got the first result
    ann = Member.objects.get(external_id="ann")
    assert Event.objects.filter(client_id="same-id").count() == 1
    assert LedgerEntry.objects.filter(member=ann).count() == 1
    assert ann.balance == _sum_entries(ann) == 10


@pytest.mark.django_db(transaction=True)
def test_twenty_racing_check_ins_of_one_member_score_once(community: Community) -> None:
    outcomes: list[IngestOutcome] = _race(
        20,
        lambda i: events_ingest(
            community=community,
            events=[
                EventInput(
                    client_id=f"ci-{i}",
                    type="check_in",
                    member="bob",
                    occurred_at=DAY + dt.timedelta(seconds=i),
                )
            ],
        )[0],
    )

    assert all(o.status == "accepted" for o in outcomes)
    assert sorted(o.result["points"] for o in outcomes if o.result) == [0] * 19 + [5]
    bob = Member.objects.get(external_id="bob")
    assert bob.balance == _sum_entries(bob) == 5
    tally = DailyTally.objects.get(member=bob, day=DAY.date(), event_type="check_in")
    assert (tally.count, tally.points) == (20, 5)


@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_in_any_order_neither_deadlock_nor_lose_points(
    community: Community,
) -> None:
    members = [f"m{i}" for i in range(12)]

    def batch(i: int) -> list[IngestOutcome]:
        order = members[:] if i % 2 else members[::-1]
        random.Random(i).shuffle(order)
        events = [
            EventInput(client_id=f"b{i}-{m}", type="message", member=m, occurred_at=DAY)
            for m in order
        ]
        return events_ingest(community=community, events=events)

    results = _race(8, batch)

    assert all(o.status == "accepted" for outcomes in results for o in outcomes)
    for member in Member.objects.filter(community=community):
        assert member.balance == _sum_entries(member) == 8  # 8 messages, 1 point each


@pytest.mark.django_db
def test_a_few_thousand_random_events_keep_every_balance_equal_to_its_entries(
    community: Community,
) -> None:
    rng = random.Random(20261124)
    types = ["check_in", "message", "share", "ugc_post", "help", "peer_score", "invite", "join"]
    members = [f"u{i}" for i in range(40)]
    sent: list[EventInput] = []
    for n in range(3000):
        kind = rng.choice(types)
        member = rng.choice(members)
        target = (
            rng.choice([m for m in members if m != member])
            if kind in ("invite", "peer_score")
            else ""
        )
        if sent and rng.random() < 0.05:
            sent.append(rng.choice(sent))  # a bot retry: the same id and body
            continue
        sent.append(
            EventInput(
                client_id=f"r{n}",
                type=kind,
                member=member,
                target=target,
                score=rng.randint(1, 5) if kind == "peer_score" else None,
                occurred_at=DAY + dt.timedelta(hours=rng.randrange(0, 24 * 20)),
            )
        )
    for start in range(0, len(sent), 250):
        outcomes = events_ingest(community=community, events=sent[start : start + 250])
        assert {o.status for o in outcomes} <= {"accepted", "replayed"}

    assert Event.objects.filter(community=community).count() == len({e.client_id for e in sent})
    for row in Member.objects.filter(community=community):
        assert row.balance == _sum_entries(row) >= 0
        assert row.lifetime_points == row.balance
    over_cap = DailyTally.objects.filter(event_type=DailyTally.TOTAL, points__gt=200)
    assert not over_cap.exists()
    assert not LedgerEntry.objects.exclude(kind=EntryKind.AWARD).exists()
