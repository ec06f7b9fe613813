"""A real Celery worker process on a real broker (Redis and RabbitMQ), against the test database.

Shared by the worker integration tests, whose modules load the fixtures with
``pytest_plugins = ["tests.celery_worker"]`` and ask for ``worker`` (one worker per broker and
module: every test using it runs once on Redis and once on RabbitMQ, ids ``[redis]`` and
``[rabbitmq]``; a broker that does not answer skips its tests with the reason).

The worker consumes the project's three queues (``config/settings/tasks.py``: delivery,
periodic, heavy), each renamed ``<prefix>.<queue>`` with a prefix of its own, so that parallel
test runs and other workers on the same broker never take its messages. It runs ``worker_app``
below: the project's app with the project's routing table, only the queue names prefixed
(``prefix_routing``). So a task the worker itself enqueues (the outbox's on-commit kick of
``webhooks.tasks.deliver_due``, a fan-out's per-community tasks) is routed by the real table
to the worker's copy of its queue, and nothing leaks onto the broker's shared queues. Tasks are
sent from the test process with ``Worker.send``: ``apply_async`` over a plain connection to the
same broker, on the worker's copy of the queue the project's router picks for the task.

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
from celery import Celery
from django.conf import settings
from django.db import connection
from kombu import Connection, Exchange, Queue
from kombu.transport.virtual import Channel as VirtualChannel

from config.celery import app as celery_app
from config.database import BASE_DIR
from config.settings.tasks import TASK_QUEUE_NAMES

BROKERS = {
    "redis": os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
START_TIMEOUT = 60.0
TASK_TIMEOUT = 60.0
QUEUE_ENV = "TEST_CELERY_WORKER_QUEUE"


def queue_names(prefix: str) -> dict[str, str]:
    """The project's queue names (delivery, periodic, heavy) -> ``<prefix>.<name>``."""
    return {name: f"{prefix}.{name}" for name in TASK_QUEUE_NAMES}


def prefix_routing(app: Celery, prefix: str) -> dict[str, str]:
    """Give ``app`` the project's routing (``CELERY_TASK_ROUTES``, ``CELERY_TASK_QUEUES``, the
    default queue) with every queue renamed ``<prefix>.<name>``; returns the renaming. Call it
    before the app routes anything (its router and queues are built on first use)."""
    names = queue_names(prefix)
    app.conf.task_queues = tuple(
        Queue(
            names[q.name], Exchange(names[q.name], type=q.exchange.type), routing_key=names[q.name]
        )
        for q in settings.CELERY_TASK_QUEUES
    )
    app.conf.task_routes = {
        task: {**route, "queue": names[route["queue"]]}
        for task, route in settings.CELERY_TASK_ROUTES.items()
    }
    # (the default exchange and routing key follow the default queue's name)
    app.conf.task_default_queue = names[settings.CELERY_TASK_DEFAULT_QUEUE]
    return names


def routed_queue(task_name: str) -> str:
    """The queue the project's router (``config/settings/tasks.py``) picks for a task."""
    return str(celery_app.amqp.router.route({}, task_name)["queue"].name)


# The worker runs ``celery -A tests.celery_worker:worker_app``: the project's app, its routing
# table on the worker's own copies of the queues. QUEUE_ENV (the prefix) is set only in the
# worker's environment, so importing this module in the test process changes nothing.
worker_app = celery_app
if QUEUE_ENV in os.environ:
    prefix_routing(worker_app, os.environ[QUEUE_ENV])


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    queues: dict[str, str]  # the project's queue name -> the worker's copy of it
    broker_url: str
    log: Path

    offset: int = 0

    def output(self) -> str:
        """What the worker logged since the current test started."""
        return self.log.read_text(errors="replace")[self.offset :]

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, task: Any, *args: Any) -> None:
        """Send ``task(*args)`` over the real broker to this worker's copy of the queue the
        project routes it to."""
        queue = self.queues[routed_queue(task.name)]
        with Connection(self.broker_url, connect_timeout=5) as conn:
            task.apply_async(args=args, queue=queue, producer=conn.Producer())

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
    prefix = f"test-worker-{uuid.uuid4().hex[:12]}"
    queues = queue_names(prefix)
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
        QUEUE_ENV: prefix,
    }
    command = [
        sys.executable, "-m", "celery", "-A", f"{__name__}:worker_app", "worker",
        "--pool=solo", "--concurrency=1", "-Q", ",".join(queues.values()),
        "-n", f"{prefix}@%h",
        # No gossip/mingle: never talk to other workers on the same broker. (Heartbeats stay
        # on: without them a warm shutdown on RabbitMQ takes ~10 s.)
        "--without-gossip", "--without-mingle", "--loglevel=INFO",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            command, cwd=BASE_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    started = Worker(process, queues, broker_url, log)
    try:
        started.wait_for_log(" ready.", timeout=START_TIMEOUT)
        banner = started.output()
        missing = [name for name in queues.values() if f".> {name} " not in banner]
        if missing:
            pytest.fail(f"the worker does not consume {missing}:\n{banner}")
        yield started
    finally:
        process.terminate()  # warm shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for name in queues.values():
            _delete_queue(broker_url, name)


@pytest.fixture
def worker(transactional_db: None, module_worker: Worker) -> Worker:
    if not module_worker.alive():
        pytest.fail(f"the worker died:\n{module_worker.output()}")
    module_worker.offset = len(module_worker.log.read_text(errors="replace"))
    return module_worker
