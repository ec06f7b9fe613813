"""A real Celery worker process on a real broker (Redis and RabbitMQ), against the test database.

Shared by the worker integration tests, whose modules load the fixtures with
``pytest_plugins = ["tests.celery_worker"]`` and ask for ``worker`` (one worker per broker and
module; a broker that does not answer skips its tests with the reason).

The worker is started as a subprocess on its own queue (so that parallel test runs and other
workers on the same broker never take its messages), with ``DATABASE_URL`` pointing at this
test run's database. Tasks are sent from the test process with ``apply_async`` over a plain
connection to the same broker. Tasks that the worker itself enqueues (``delay()`` with no
queue, such as the outbox's on-commit kick of ``webhooks.tasks.deliver_due``) go to that same
queue too: the worker runs ``worker_app`` below, the project's app with the worker's queue as
its default queue, so nothing leaks onto the broker's shared default queue.

PYTEST_DONT_REWRITE: test modules import names from here before pytest loads it as a plugin,
and there are no asserts here to rewrite.
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
from kombu import Connection, Exchange, Queue
from kombu.transport.virtual import Channel as VirtualChannel

from config.celery import app as celery_app
from config.database import BASE_DIR

BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
START_TIMEOUT = 60.0
TASK_TIMEOUT = 60.0
QUEUE_ENV = "TEST_CELERY_WORKER_QUEUE"


# The worker runs ``celery -A tests.celery_worker:worker_app``: the project's app, with the
# worker's own queue as its default queue. QUEUE_ENV is set only in the worker's environment, so
# importing this module in the test process changes nothing.
worker_app = celery_app
if QUEUE_ENV in os.environ:
    worker_app.conf.task_default_queue = os.environ[QUEUE_ENV]


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

    def send(self, task: Any, *args: Any) -> None:
        """Send ``task(*args)`` to this worker's queue over the real broker."""
        with Connection(self.broker_url, connect_timeout=5) as conn:
            task.apply_async(args=args, queue=self.queue, producer=conn.Producer())

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
            queue = Queue(name, Exchange(name), routing_key=name)(channel)
            if isinstance(channel, VirtualChannel):
                # A virtual transport (Redis) deletes only the bindings this channel declared:
                # without this, the queue's binding tables stay on the broker for good.
                queue.declare()
            queue.delete()
            queue.exchange.delete()
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
        QUEUE_ENV: queue,
    }
    command = [
        sys.executable, "-m", "celery", "-A", f"{__name__}:worker_app", "worker",
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
