"""Faults: a Celery worker killed (SIGKILL) in the middle of a job, and a database connection
dropped in the middle of an ingestion. Nothing is lost, nothing is doubled."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection
from django.db.models import Sum
from kombu import Connection

from config.database import BASE_DIR
from points.models import DailyTally, EntryKind, Event, LedgerEntry, Member, PeriodTotal
from points.rules import DEFAULT_RULES
from points.services import EventInput, community_create, events_ingest, rule_set_publish
from points.tasks import points_expire_community
from tests.test_celery_worker import _broker_error, _delete_queue, _test_database_url

AMQP = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _start_worker(queue: str, log: Path, database_url: str, data: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url,
        "DB_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": AMQP,
        "INCENTIVES_DATA_DIR": str(data),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
        "--concurrency=1", "-Q", queue, "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ]  # fmt: skip
    with log.open("ab") as sink:
        return subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            command,
            cwd=BASE_DIR,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_is_finished_by_the_next_with_no_double_expiry(
    tmp_path: Path,
) -> None:
    error = _broker_error(AMQP)
    if error:
        pytest.skip(f"RabbitMQ at {AMQP} is not reachable: {error}")
    community = community_create(slug="expiring", name="Expiring")
    rule_set_publish(
        community=community,
        rules={**DEFAULT_RULES, "expiry_days": 30, "streak": None, "monthly_quota": None},
        effective_from=dt.datetime(2000, 1, 2, tzinfo=dt.UTC),
    )
    long_ago = dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=90)
    members = 1200
    events = [
        EventInput(f"old-{i}", "share", f"m{i:05d}", occurred_at=long_ago) for i in range(members)
    ]
    for start in range(0, members, 400):
        events_ingest(community=community, events=events[start : start + 400], now=long_ago)
    assert LedgerEntry.objects.filter(community=community).count() == members

    queue = f"test-faults-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    database_url = _test_database_url()
    first = _start_worker(queue, log, database_url, tmp_path / "data")
    try:
        _wait(lambda: " ready." in log.read_text(errors="replace"), 60, "the first worker")
        with Connection(AMQP, connect_timeout=5) as conn:
            points_expire_community.apply_async(
                args=(community.pk,), queue=queue, producer=conn.Producer()
            )
        expired = LedgerEntry.objects.filter(community=community, kind=EntryKind.EXPIRY)
        _wait(lambda: expired.count() >= 50, 60, "the job to be under way")
        os.killpg(first.pid, signal.SIGKILL)  # mid-job: no ack, no clean shutdown
        first.wait(timeout=10)
        done_by_first = expired.count()
        assert 0 < done_by_first < members, done_by_first

        second = _start_worker(queue, log, database_url, tmp_path / "data")
        try:
            _wait(lambda: expired.count() >= members, 120, "the redelivered job to finish")
            time.sleep(1.0)  # anything extra would show now
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        _delete_queue(AMQP, queue)

    assert expired.count() == members  # each member's points expired exactly once
    assert expired.aggregate(s=Sum("points"))["s"] == -5 * members
    for member in Member.objects.filter(community=community):
        assert member.balance == 0
    total = LedgerEntry.objects.filter(community=community).aggregate(s=Sum("points"))["s"]
    assert total == 0
    assert "Task points.tasks.points_expire_community" in log.read_text(errors="replace")


@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_mid_ingestion_leaves_no_partial_event() -> None:
    community = community_create(slug="dropped", name="Dropped")
    events_ingest(community=community, events=[EventInput("warm", "share", "ann")])
    db = connection.settings_dict
    url = f"postgresql://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    outcome: dict[str, Any] = {}

    def ingest() -> None:
        try:
            outcome["result"] = events_ingest(
                community=community, events=[EventInput("victim", "ugc_post", "ann")]
            )
        except DatabaseError as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    # pg_stat_activity is a snapshot per transaction: watch from an autocommit connection.
    with psycopg.connect(url) as blocker, psycopg.connect(url, autocommit=True) as watcher:
        blocker.execute("SELECT 1 FROM points_member WHERE external_id = 'ann' FOR UPDATE")
        thread = threading.Thread(target=ingest)
        thread.start()

        def waiting_pid() -> int | None:
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()
            return row[0] if row else None

        _wait(lambda: waiting_pid() is not None, 30, "the ingestion to wait for the lock")
        watcher.execute("SELECT pg_terminate_backend(%s)", [waiting_pid()])
        thread.join(timeout=30)
        blocker.rollback()

    assert "error" in outcome, outcome
    assert not Event.objects.filter(client_id="victim").exists()
    ann = Member.objects.get(external_id="ann")
    assert ann.balance == 5
    assert LedgerEntry.objects.filter(member=ann).count() == 1
    assert DailyTally.objects.filter(member=ann, event_type="ugc_post").count() == 0
    assert PeriodTotal.objects.filter(member=ann, kind="all_time").get().points == 5

    [retry] = events_ingest(community=community, events=[EventInput("victim", "ugc_post", "ann")])
    assert retry.status == "accepted"
    ann.refresh_from_db()
    assert ann.balance == 15
    assert Event.objects.filter(client_id="victim").count() == 1
