"""16 threads against the real server: gunicorn (as ``bench/server.py`` starts it) on this
test run's PostgreSQL database, over HTTP, nothing mocked.

Each thread mixes new events (shares, messages, check-ins, UGC posts and reactions that pay
another member, so requests lock two members at once), replays of ids other threads are
posting, the same ids with a conflicting body, reversals of those ids and operator debits
(negative adjustments, refused beyond the spendable balance). Every 20 requests all 16
threads meet at a barrier and post one fresh id at the same instant; every other such burst
half of them send a different body for it.

Afterwards: each id is stored once, by exactly one ``201``; every 2xx answer for an id is the
same result, from the same body, and every answer to the other body is ``409``; every
reversal answer for an id is the same and the event was reversed once; no dropped
connection; every balance equals the sum of its entries and none is negative; no ``5xx``
(the reversal deadlock the last test of this file pinned down is fixed: the event row is
locked ``FOR NO KEY UPDATE``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.db.models import Sum

from api.serializers import timestamp
from bench.server import gunicorn
from config.gunicorn_worker import THREADED_WORKER
from points.models import AuditLog, Community, EntryKind, Event, LedgerEntry, Member
from points.selectors import event_answer
from points.services import EventInput, api_key_create, community_create, events_ingest
from tests.served import server_env
from tests.test_celery_worker import _test_database_url
from webhooks.models import Delivery, OutboxMessage
from webhooks.services import endpoint_create

THREADS = 16
REQUESTS_PER_THREAD = int(os.environ.get("CONCURRENT_REQUESTS_PER_THREAD", "200"))
BURST_EVERY = 20
POOL = 240  # event ids shared by every thread
MEMBERS = 23
TYPES = ("share", "message", "check_in", "ugc_post", "reaction")


@dataclass(frozen=True)
class Served:
    port: int
    log: Path

    def deadlocks(self) -> int:
        """Requests that failed on a PostgreSQL deadlock (the gunicorn log's JSON lines)."""
        count = 0
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"level": "ERROR"' in line:
                record = json.loads(line)
                count += "DeadlockDetected" in record.get("exc", "")
        return count


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """gunicorn on a free port against this run's test database (the tests commit their
    data: ``transaction=True``)."""
    tmp = tmp_path_factory.mktemp("concurrent-server")
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    # Limits off (this test is about the ledger); the outbox's delivery kick goes to a
    # private folder queue.
    env = server_env(database_url, tmp / "data", DB_CONN_MAX_AGE="60", LOG_LEVEL="WARNING")
    with gunicorn(
        env=env, workers=4, worker_class=THREADED_WORKER, threads=4, log_path=tmp / "gunicorn.log"
    ) as started:
        yield Served(started.port, tmp / "gunicorn.log")


class Client:
    """One bot: a keep-alive HTTP connection; a request that fails twice is an error."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """A keep-alive connection the server closed while this bot waited (gunicorn drops
        idle ones after 2 s) is reopened and the request sent again once, as HTTP clients do
        (safe: every request here is idempotent by its id); a second failure is an error."""
        error: Exception | None = None
        for _attempt in (1, 2):
            try:
                self.conn.request("POST", path, json.dumps(body), self.headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (OSError, http.client.HTTPException) as exc:
                error = exc
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return 0, repr(error)

    def close(self) -> None:
        self.conn.close()


def event_body(event_id: str, variant: int = 0) -> dict[str, Any]:
    """The body of an id; ``variant`` 1 is a conflicting body (another type)."""
    n = sum(map(ord, event_id))
    kind = TYPES[(n + variant) % len(TYPES)]
    body: dict[str, Any] = {"id": event_id, "type": kind, "member": f"m{n % MEMBERS}"}
    if kind == "reaction":
        body["target"] = f"post-{n % 7}"
        body["content"] = {"author": f"m{(n * 7 + 3) % MEMBERS}"}
    return body


@dataclass
class Record:
    """Every answer, by kind and id: (status, variant, body)."""

    events: dict[str, list[tuple[int, int, Any]]] = field(default_factory=lambda: defaultdict(list))
    reversals: dict[str, list[tuple[int, Any]]] = field(default_factory=lambda: defaultdict(list))
    debits: list[tuple[int, Any]] = field(default_factory=list)
    failed: list[tuple[str, str, int, str, dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_against_the_real_server(server: Served) -> None:
    community: Community = community_create(slug="crowd", name="Crowd")
    _, key = api_key_create(community=community, scopes=["events:write", "admin"], name="crowd")
    # Subscribed, so every change also writes its outbox message (never sent: no worker).
    endpoint_create(community=community, url="http://127.0.0.1:9/hooks")
    base = "/api/v1/communities/crowd"
    pool = [f"ev-{i}" for i in range(POOL)]
    record = Record()
    barrier = threading.Barrier(THREADS)
    connection.close()  # the server's connections only, while the bots run

    def note(kind: str, event_id: str, variant: int, status: int, data: Any) -> None:
        with record.lock:
            if kind == "event":
                record.events[event_id].append((status, variant, data))
            elif kind == "reverse":
                record.reversals[event_id].append((status, data))
            else:
                record.debits.append((status, data))

    def bot(index: int) -> None:
        rng = random.Random(1000 + index)
        client = Client(server.port, key)
        for step in range(REQUESTS_PER_THREAD):
            variant = 0
            if step % BURST_EVERY == BURST_EVERY - 1:
                burst = step // BURST_EVERY
                event_id = f"burst-{burst}"
                variant = index % 2 if burst % 2 else 0  # odd bursts: two bodies race
                kind, path, body = "event", f"{base}/events", event_body(event_id, variant)
                barrier.wait(timeout=60)
            else:
                # Hot ids early in the pool: several threads post them at about the same time.
                event_id = pool[min(int(rng.expovariate(1 / 40)), POOL - 1)]
                roll = rng.random()
                if roll < 0.10:
                    kind, path, body = "reverse", f"{base}/events/{event_id}/reverse", {}
                elif roll < 0.20:
                    kind, path = "debit", f"{base}/adjustments"
                    body = {
                        "id": f"debit-{index}-{step}",
                        "member": f"m{rng.randrange(MEMBERS)}",
                        "points": -rng.randint(1, 12),
                        "reason": "concurrent debit",
                    }
                else:
                    variant = 1 if roll < 0.27 else 0
                    kind, path, body = "event", f"{base}/events", event_body(event_id, variant)
            status, data = client.post(path, body)
            if status == 500:  # retried below, once the storm is over
                with record.lock:
                    record.failed.append((kind, event_id, variant, path, body))
            elif status == 0 or status > 500:
                with record.lock:
                    record.errors.append(f"{status} {kind} {event_id}: {data}")
            else:
                note(kind, event_id, variant, status, data)
        client.close()

    deadlocks_before = server.deadlocks()
    started = time.monotonic()
    threads = [threading.Thread(target=bot, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    deadlocks = server.deadlocks() - deadlocks_before

    answers = sum(map(len, record.events.values())) + len(record.debits)
    answers += sum(map(len, record.reversals.values()))
    print(  # noqa: T201 - the figures in docs/reliability.md
        f"{THREADS} threads, {answers + len(record.failed)} requests in {elapsed:.1f} s; "
        f"events {Counter(s for a in record.events.values() for s, _, _ in a)}, "
        f"reversals {Counter(s for a in record.reversals.values() for s, _ in a)}, "
        f"debits {Counter(s for s, _ in record.debits)}, 500s {len(record.failed)} "
        f"(deadlocks logged {deadlocks}), other errors {len(record.errors)}"
    )
    assert not record.errors, record.errors[:5]
    assert answers + len(record.failed) == THREADS * REQUESTS_PER_THREAD
    assert not record.failed, (record.failed, deadlocks)
    retry = Client(server.port, key)
    for kind, event_id, variant, path, body in record.failed:
        status, data = retry.post(path, body)
        assert status < 500, (kind, event_id, status, data)
        note(kind, event_id, variant, status, data)
    retry.close()

    stored = {
        e.client_id: e for e in Event.objects.filter(community=community).select_related("member")
    }
    acknowledged = {i for i, got in record.events.items() if any(s < 300 for s, _, _ in got)}
    assert set(stored) == acknowledged  # nothing stored that no one was told about, and back
    for event_id, got in record.events.items():
        ok = [answer for answer in got if answer[0] < 300]
        assert {s for s, _, _ in got} <= {200, 201, 409}, (event_id, got)
        assert [s for s, _, _ in ok].count(201) == 1, (event_id, got)  # stored exactly once
        winner = ok[0][1]
        # one answer: the first, which a replay repeats saying "replayed" (decision 23)
        first = {k: v for k, v in ok[0][2].items() if k != "status"}
        assert all(
            v == winner and {k: x for k, x in d.items() if k != "status"} == first for _, v, d in ok
        ), event_id
        assert sorted(d["status"] for s, _, d in ok) == sorted(
            "accepted" if s == 201 else "replayed" for s, _, _ in ok
        ), event_id
        assert all(s == 409 for s, v, _ in got if v != winner), event_id  # the loser: 409
        assert stored[event_id].type == event_body(event_id, winner)["type"]
        answer = event_answer(stored[event_id])
        assert {k: v for k, v in answer.items() if k != "status"} == first
    bursts = [i for i in record.events if i.startswith("burst-")]
    assert len(bursts) == REQUESTS_PER_THREAD // BURST_EVERY
    for event_id in bursts:
        assert len(record.events[event_id]) == THREADS

    reversed_events = 0
    for event_id, tried in record.reversals.items():
        done: list[Any] = [d for s, d in tried if s < 300]
        assert {s for s, _ in tried} <= {200, 201, 404}, (event_id, tried)
        if not done:
            continue  # every call came before the event existed: 404
        reversed_events += 1
        assert all(d == done[0] for d in done), event_id  # every answer is the first reversal
        event = Event.objects.get(community=community, client_id=event_id)
        assert event.reversed_at is not None
        # the stored reversal is what was answered, its time in the API's one format
        stored_reversal: dict[str, Any] = dict(event.reversal or {})
        stored_reversal["reversed_at"] = timestamp(stored_reversal["reversed_at"])
        assert stored_reversal == done[0]
        # Reversed once: one reversal entry per member paid, and what the event still holds
        # is exactly what was left owed (a debit may have spent the points first).
        per_member = Counter(
            LedgerEntry.objects.filter(event=event, kind=EntryKind.REVERSAL).values_list(
                "member_id", flat=True
            )
        )
        assert all(n == 1 for n in per_member.values()), (event_id, per_member)
        left = LedgerEntry.objects.filter(
            event=event, kind__in=[EntryKind.AWARD, EntryKind.REVERSAL]
        ).aggregate(s=Sum("points"))["s"]
        assert (left or 0) == sum(r["owed"] for r in done[0]["reversed"]), (event_id, left, done[0])
    assert reversed_events > 10

    debited = [d for s, d in record.debits if s == 201]
    assert {s for s, _ in record.debits} <= {201, 404, 409}
    assert 0 < len(debited) < len(record.debits)  # some taken, some refused
    assert LedgerEntry.objects.filter(
        community=community, kind=EntryKind.ADJUSTMENT
    ).count() == len(debited)
    audits = Counter(AuditLog.objects.filter(community=community).values_list("action", flat=True))
    # a refused debit keeps its refusal under its id (docs/decisions.md 18): one row each
    # and each reversal leaves one row (event.reverse), once per event however often asked
    assert audits == {
        "adjustment.create": len(debited),
        "adjustment.refused": len(record.debits) - len(debited),
        "event.reverse": reversed_events,
    }

    # The outbox: one message per change that committed, none for a refusal or a replay,
    # carrying the answer the caller got; one delivery each.
    messages = Counter(
        OutboxMessage.objects.filter(community=community).values_list("topic", flat=True)
    )
    accepted = {
        m["id"]: m
        for m in OutboxMessage.objects.filter(
            community=community, topic="event.accepted"
        ).values_list("payload", flat=True)
    }
    reversals = {
        m["id"]: m
        for m in OutboxMessage.objects.filter(
            community=community, topic="event.reversed"
        ).values_list("payload", flat=True)
    }
    assert messages == {
        "event.accepted": len(stored),
        "event.reversed": reversed_events,
        "adjustment.created": len(debited),
    }
    assert accepted == {event_id: event_answer(event) for event_id, event in stored.items()}
    assert reversals == {
        e.client_id: e.reversal
        for e in Event.objects.filter(community=community, reversed_at__isnull=False)
    }
    assert sorted(m["id"] for m in OutboxMessage.objects.filter(
        community=community, topic="adjustment.created"
    ).values_list("payload", flat=True)) == sorted(d["id"] for d in debited)  # fmt: skip
    assert Delivery.objects.filter(message__community=community).count() == sum(messages.values())

    with psycopg.connect(_test_database_url()) as conn:
        broken = conn.execute(
            """
            SELECT m.external_id, m.balance, m.held, m.owed, COALESCE(e.s, 0)
            FROM points_member m
            LEFT JOIN (SELECT member_id, sum(points) AS s, min(balance_after) AS low
                       FROM points_ledgerentry GROUP BY member_id) e ON e.member_id = m.id
            WHERE m.community_id = %s
              AND (m.balance <> COALESCE(e.s, 0) OR m.balance < 0 OR m.held < 0
                   OR m.owed < 0 OR m.held > m.balance OR e.low < 0)
            """,
            [community.pk],
        ).fetchall()
    assert broken == []
    assert Member.objects.filter(community=community).count() <= MEMBERS


def _wait_blocked(watcher: psycopg.Connection[Any], count: int) -> None:
    """Until ``count`` backends of this database wait for a lock (the first waiter for a row
    waits for its holder, the next ones queue behind the first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [(waiting,)] = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()
        if waiting >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"{count} backends never waited for a lock together")


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_first_reversals_answer_201_once(server: Served) -> None:
    """The same reversal sent twice at once: one ``201``, one ``200`` with the same body (the
    API's promise: "a second call answers 200 with the first result"). The event's row is
    held locked from another connection until both requests wait for it, so the two really
    are simultaneous."""
    community = community_create(slug="twice", name="Twice")
    _, key = api_key_create(community=community, scopes=["events:write"], name="twice")
    [outcome] = events_ingest(community=community, events=[EventInput("post-1", "share", "ann")])
    assert outcome.status == "accepted"
    connection.close()
    answers: list[tuple[int, Any]] = []

    def reverse() -> None:
        client = Client(server.port, key)
        answers.append(client.post("/api/v1/communities/twice/events/post-1/reverse", {}))
        client.close()

    url = _test_database_url()
    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as watcher:
        blocker.execute("SELECT 1 FROM points_event WHERE client_id = 'post-1' FOR UPDATE")
        threads = [threading.Thread(target=reverse) for _ in range(2)]
        for thread in threads:
            thread.start()
        _wait_blocked(watcher, 2)
        blocker.rollback()
        for thread in threads:
            thread.join(timeout=30)

    assert len(answers) == 2
    assert answers[0][1] == answers[1][1]  # the same reversal, whatever the status says
    assert (
        LedgerEntry.objects.filter(kind=EntryKind.REVERSAL, event__client_id="post-1").count() == 1
    )
    assert sorted(status for status, _ in answers) == [200, 201]


@pytest.mark.django_db(transaction=True)
def test_simultaneous_reversals_of_one_members_day_both_succeed(server: Served) -> None:
    """Two events of one member's day reversed at the same time, while the day's re-score
    of the first must pay the second (it was cut by the daily cap): both reversals succeed.

    Deterministic: a third connection holds the member's row, the reversal of ``s1`` then
    of ``s5`` queue behind it (each holding its event row), and the member is released."""
    community = community_create(slug="sameday", name="Same day")
    _, key = api_key_create(community=community, scopes=["events:write"], name="sameday")
    # share: 5 points, daily cap 20: s1-s4 pay 5 each, s5 is cut to 0 by the cap.
    outcomes = events_ingest(
        community=community, events=[EventInput(f"s{i}", "share", "ann") for i in range(1, 6)]
    )
    assert [o.result["points"] for o in outcomes if o.result] == [5, 5, 5, 5, 0]
    connection.close()
    answers: dict[str, tuple[int, Any]] = {}

    def reverse(event_id: str) -> None:
        client = Client(server.port, key)
        answers[event_id] = client.post(
            f"/api/v1/communities/sameday/events/{event_id}/reverse", {}
        )
        client.close()

    url = _test_database_url()
    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as watcher:
        blocker.execute("SELECT 1 FROM points_member WHERE external_id = 'ann' FOR UPDATE")
        first = threading.Thread(target=reverse, args=("s1",))
        first.start()
        _wait_blocked(watcher, 1)  # s1's reversal holds s1 and waits for ann
        second = threading.Thread(target=reverse, args=("s5",))
        second.start()
        _wait_blocked(watcher, 2)  # s5's reversal holds s5 and waits for ann
        blocker.rollback()
        first.join(timeout=30)
        second.join(timeout=30)

    assert {event_id: status for event_id, (status, _) in answers.items()} == {
        "s1": 201,
        "s5": 201,
    }, answers
    ann = Member.objects.get(community=community, external_id="ann")
    total = LedgerEntry.objects.filter(member=ann).aggregate(s=Sum("points"))["s"]
    assert ann.balance == total == 15  # s2-s4 stand; s5 was paid by the re-score, then reversed


@pytest.mark.django_db(transaction=True)
def test_rank_lookups_through_the_real_server(server: Served) -> None:
    """Rank lookups from eight threads at once, through gunicorn's threads (the lean path,
    ``api/fastpath.py``, serves them): every answer ``200`` with the member's live points and
    Django's headers, an unknown member ``404`` problem+json, and no lean-path failure in the
    log (a failure would have been answered by Django, silently)."""
    from rest_framework.test import APIClient

    community = community_create(slug="ranked", name="Ranked")
    _, key = api_key_create(community=community, scopes=["members:read"], name="ranks")
    members = [f"m{k}" for k in range(8)] + ["小明"]
    events_ingest(
        community=community,
        events=[
            EventInput(f"{m}-{k}", "share", m) for n, m in enumerate(members) for k in range(n + 1)
        ],
    )
    expected = {}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    for member in members:
        expected[member] = client.get(f"/api/v1/communities/ranked/members/{member}/rank").json()
    connection.close()
    answers: list[tuple[str, int, dict[str, str], Any]] = []

    def ask(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for n in range(40):
            member = members[(index + n) % len(members)]
            path = f"/api/v1/communities/ranked/members/{urllib.parse.quote(member)}/rank"
            conn.request("GET", path, headers={"Authorization": f"Api-Key {key}"})
            response = conn.getresponse()
            answers.append(
                (member, response.status, dict(response.getheaders()), json.loads(response.read()))
            )
        conn.close()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 8 * 40
    for member, status, headers, body in answers:
        assert status == 200, body
        assert body["points"] == expected[member]["points"]
        assert (body["period"], body["total"]) == ("all_time", expected[member]["total"])
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Request-ID"]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(
        "GET",
        "/api/v1/communities/ranked/members/nobody/rank",
        headers={"Authorization": f"Api-Key {key}"},
    )
    missing = conn.getresponse()
    assert (missing.status, missing.getheader("Content-Type")) == (404, "application/problem+json")
    assert json.loads(missing.read())["code"] == "member_not_found"
    conn.close()
    assert "lean path failed" not in server.log.read_text(errors="replace")
