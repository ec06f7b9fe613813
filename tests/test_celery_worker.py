"""A real Celery worker process, a real broker (Redis and RabbitMQ), the real test database.

The worker is started as a subprocess on its own queue (so that parallel test runs and other
workers on the same broker never take its messages), with ``DATABASE_URL`` pointing at this
test run's database. Tasks are sent from the test process with ``apply_async`` over a plain
connection to the same broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import F
from kombu import Connection, Exchange, Queue

from config.database import BASE_DIR
from points.models import JobRun, Member
from points.services import EventInput, community_create, events_ingest
from points.tasks import ledger_reconcile_community

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
START_TIMEOUT = 60.0
TASK_TIMEOUT = 60.0


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    queue: str
    broker_url: str
    log: Path

    offset: int = 0

    def output(self) -> str:
        """What the worker logged since the current test started."""
        return self.log.read_text(errors="replace")[self.offset :]

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, *args: Any) -> None:
        with Connection(self.broker_url, connect_timeout=5) as conn:
            ledger_reconcile_community.apply_async(
                args=args, queue=self.queue, producer=conn.Producer()
            )

    def wait_for_log(self, text: str, count: int = 1, timeout: float = TASK_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            if not self.alive():
                pytest.fail(f"the worker exited ({self.process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} x{count} within {timeout:.0f} s:\n{self.output()}")
            time.sleep(0.2)


def _broker_error(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{exc.__class__.__name__}: {exc}"
    return None


def _test_database_url() -> str:
    db = connection.settings_dict
    user = quote(db["USER"] or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or "5432"
    return f"postgresql://{user}{password}@{host}:{port}/{quote(db['NAME'], safe='')}"


def _delete_queue(url: str, name: str) -> None:
    try:
        with Connection(url, connect_timeout=3) as conn:
            channel = conn.default_channel
            Queue(name, Exchange(name), routing_key=name)(channel).delete()
            Exchange(name, type="direct")(channel).delete()
    except Exception:  # noqa: BLE001, S110 - best-effort cleanup of a throw-away queue
        pass


@pytest.fixture(scope="module", params=sorted(BROKERS))
def broker_url(request: pytest.FixtureRequest) -> str:
    url = BROKERS[request.param]
    error = _broker_error(url)
    if error:
        pytest.skip(f"{request.param} broker at {url} is not reachable: {error}")
    return url


@pytest.fixture(scope="module")
def module_worker(
    django_db_setup: None,
    django_db_blocker: Any,
    broker_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """One worker per broker for the module; the test database exists (django_db_setup) and
    the worker keeps no connection open between tasks, so each test's flush is not blocked."""
    queue = f"test-worker-{uuid.uuid4().hex[:12]}"
    tmp_path = tmp_path_factory.mktemp("celery-worker")
    log = tmp_path / "worker.log"
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url,
        "DB_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": broker_url,
        "INCENTIVES_DATA_DIR": str(tmp_path / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "--pool=solo", "--concurrency=1", "-Q", queue, "-n", f"{queue}@%h",
        # No gossip/mingle: never talk to other workers on the same broker. (Heartbeats stay
        # on: without them a warm shutdown on RabbitMQ takes ~10 s.)
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            command, cwd=BASE_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    started = Worker(process, queue, broker_url, log)
    try:
        started.wait_for_log(" ready.", timeout=START_TIMEOUT)
        yield started
    finally:
        process.terminate()  # warm shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        _delete_queue(broker_url, queue)


@pytest.fixture
def worker(transactional_db: None, module_worker: Worker) -> Worker:
    if not module_worker.alive():
        pytest.fail(f"the worker died:\n{module_worker.output()}")
    module_worker.offset = len(module_worker.log.read_text(errors="replace"))
    return module_worker


def _finished_run(community_id: int, period: str, timeout: float = TASK_TIMEOUT) -> JobRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = JobRun.objects.filter(
            community_id=community_id,
            job="ledger_reconcile",
            period=period,
            finished_at__isnull=False,
        ).first()
        if run is not None:
            return run
        time.sleep(0.2)
    pytest.fail(f"no finished ledger_reconcile run for community {community_id} in {timeout} s")


def _community_with_points(slug: str, members: list[str]) -> int:
    community = community_create(slug=slug, name=slug.title())
    events = [
        EventInput(client_id=f"{slug}-{m}-{i}", type="share", member=m)
        for m in members
        for i in range(3)
    ]
    outcomes = events_ingest(community=community, events=events)
    assert {o.status for o in outcomes} == {"accepted"}
    assert Member.objects.filter(community=community, balance__gt=0).count() == len(members)
    return community.pk


def test_worker_reconciles_the_ledger_and_reports_a_corrupted_balance(worker):
    period = "2026-01-05"
    clean = _community_with_points("clean", ["alice", "bob", "carol"])
    broken = _community_with_points("broken", ["dave", "erin"])
    Member.objects.filter(community_id=broken, external_id="erin").update(balance=F("balance") + 7)

    worker.send(clean, period)
    worker.send(broken, period)

    clean_run = _finished_run(clean, period)
    broken_run = _finished_run(broken, period)
    assert clean_run.result == {
        "members": 3,
        "mismatched": 0,
        "sum_mismatched": 0,
        "balance_after_mismatched": 0,
        "examples": [],
    }
    assert broken_run.result == {
        "members": 2,
        "mismatched": 1,
        "sum_mismatched": 1,
        "balance_after_mismatched": 1,
        "examples": ["erin"],
    }
    worker.wait_for_log("succeeded in", count=2)
    assert worker.output().count("ledger_reconcile_community[") == 4, worker.output()
    assert worker.alive()


def test_worker_rerun_of_a_finished_period_returns_the_recorded_result(worker):
    period = "2026-01-06"
    community = _community_with_points("rerun", ["alice"])
    worker.send(community, period)
    first = _finished_run(community, period)
    assert first.result["mismatched"] == 0
    Member.objects.filter(community_id=community).update(balance=F("balance") + 1)

    worker.send(community, period)
    worker.wait_for_log("succeeded in", count=2)

    runs = JobRun.objects.filter(community_id=community, job="ledger_reconcile")
    assert runs.count() == 1
    again = runs.get()
    assert again.result == first.result
    assert again.finished_at == first.finished_at
