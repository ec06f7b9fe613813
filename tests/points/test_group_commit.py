"""Group commit (``points.ingest.group``): concurrent single events share one transaction,
and still each is stored exactly once, answered only after its commit, and fails alone."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.db.models import Sum

from points.ingest.group import GroupCommit
from points.models import Community, Event, LedgerEntry, Member
from points.services import EventInput, IngestOutcome
from tests.celery_worker import _test_database_url

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16
BURSTS = 6
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _at(minutes: int) -> dt.datetime:
    start = dt.datetime.now(SHANGHAI).replace(hour=8, minute=0, second=0, microsecond=0)
    return start - dt.timedelta(days=1) + dt.timedelta(minutes=minutes)


def _burst_event(burst: int, thread: int) -> EventInput:
    """Per burst: new events from 13 threads, two re-sending an id another thread sends in
    the same burst (one with another body), and one invalid event (a reaction without its
    author)."""
    member = f"m{thread % 5}"
    if thread == 13:  # the same id and body as thread 0
        return _burst_event(burst, 0)
    if thread == 14:  # thread 1's id with another body: one of the two conflicts
        return EventInput(f"b{burst}-t1", "share", "m4", occurred_at=_at(burst))
    if thread == 15:
        return EventInput(f"b{burst}-bad", "reaction", member, target="post-1")
    kind = ("message", "share", "ugc_post", "check_in")[thread % 4]
    return EventInput(f"b{burst}-t{thread}", kind, member, occurred_at=_at(burst))


def test_sixteen_threads_store_each_acknowledged_event_once_and_no_rejected_one(
    community: Community,
) -> None:
    committer = GroupCommit(window=0.005)
    url = _test_database_url()
    answers: list[tuple[EventInput, IngestOutcome | BaseException]] = []
    seen_after_answer: list[bool] = []
    lock = threading.Lock()

    def run(thread: int) -> None:
        with psycopg.connect(url, autocommit=True) as other:
            for burst in range(BURSTS):
                barrier.wait()
                event = _burst_event(burst, thread)
                try:
                    outcome: IngestOutcome | BaseException = committer.ingest(community, event)
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    outcome = exc
                stored = False
                if isinstance(outcome, IngestOutcome) and outcome.status in (
                    "accepted",
                    "replayed",
                ):
                    # answered only after the commit: another connection sees the event now
                    stored = (
                        other.execute(
                            "SELECT 1 FROM points_event WHERE community_id = %s AND client_id = %s",
                            [community.pk, event.client_id],
                        ).fetchone()
                        is not None
                    )
                with lock:
                    answers.append((event, outcome))
                    if isinstance(outcome, IngestOutcome) and outcome.status != "invalid":
                        seen_after_answer.append(stored or outcome.status == "conflict")
        connection.close()

    barrier = threading.Barrier(THREADS)
    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not [o for _e, o in answers if isinstance(o, BaseException)]
    outcomes: list[tuple[EventInput, IngestOutcome]] = [
        (e, o) for e, o in answers if isinstance(o, IngestOutcome)
    ]
    assert len(outcomes) == THREADS * BURSTS
    assert all(seen_after_answer)
    assert max(committer.sizes) > 1  # groups did form
    statuses = Counter(o.status for _e, o in outcomes)
    assert statuses["invalid"] == BURSTS
    assert statuses["conflict"] == BURSTS  # thread 14 or thread 1, whoever came second
    assert statuses["replayed"] == BURSTS  # thread 13 repeats thread 0
    stored = set(Event.objects.filter(community=community).values_list("client_id", flat=True))
    acknowledged = {e.client_id for e, o in outcomes if o.status in ("accepted", "replayed")}
    assert stored == acknowledged
    assert not any(cid.endswith("-bad") for cid in stored)  # rejected: stored nowhere
    accepted = Counter(e.client_id for e, o in outcomes if o.status == "accepted")
    assert set(accepted.values()) == {1}  # each stored id accepted exactly once
    for member in Member.objects.filter(community=community):
        total = LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0
        assert member.balance == total, member.external_id


def test_an_event_that_breaks_the_group_transaction_fails_alone(community: Community) -> None:
    """An error no item check foresaw (here a target longer than the column) aborts the
    group's transaction; every other event of the group is then stored on its own."""
    committer = GroupCommit(window=30.0)
    results: dict[str, Any] = {}

    def run(i: int) -> None:
        target = "x" * 300 if i == 3 else ""
        event = EventInput(f"g{i}", "share", f"m{i}", target=target, occurred_at=_at(i))
        try:
            results[event.client_id] = committer.ingest(community, event).status
        except Exception as exc:  # noqa: BLE001 - asserted below
            results[event.client_id] = type(exc).__name__
        finally:
            connection.close()

    # A group gathers while another is being written: pretend one is, until all four joined.
    with committer._lock:
        committer._writing = 1
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with committer._lock:
            if sum(len(g.events) for g in committer._open.values()) == 4:
                committer._writing = 0
                committer._idle.notify_all()
                break
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert committer.sizes == [4]
    assert results["g3"] == "DataError"
    assert {results[f"g{i}"] for i in range(3)} == {"accepted"}
    assert set(Event.objects.values_list("client_id", flat=True)) == {"g0", "g1", "g2"}


def test_alone_an_event_goes_at_once(community: Community) -> None:
    committer = GroupCommit(window=5.0)  # a window it must not wait for
    started = dt.datetime.now(dt.UTC)
    outcome = committer.ingest(community, EventInput("solo", "share", "ann", occurred_at=_at(0)))
    assert outcome.status == "accepted"
    assert (dt.datetime.now(dt.UTC) - started).total_seconds() < 2.0
    assert committer.sizes == [1]
