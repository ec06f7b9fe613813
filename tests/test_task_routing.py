"""Every task goes to the queue decided for it (``config/settings/tasks.py``, the one place).

The table below is the decision, written out again on purpose: a change of the routing has to
change it too. It is checked two ways: by the project app's own router
(``app.amqp.router.route``, what ``delay()`` and beat use), and on real brokers (Redis and
RabbitMQ) by publishing every task through the routing and reading back which queue each
message landed on.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from celery import Celery
from django.conf import settings
from kombu import Connection, Queue

from config.celery import app
from config.settings.tasks import TASK_QUEUE_NAMES
from tests.celery_worker import _delete_queue, prefix_routing

pytest_plugins = ["tests.celery_worker"]  # the broker_url fixture (one id per broker)

DELIVERY, PERIODIC, HEAVY = "delivery", "periodic", "heavy"

ROUTES = {
    # delivery: outgoing HTTP (webhooks; payouts reach the paying bot as webhook messages)
    "webhooks.tasks.deliver_due": DELIVERY,
    # periodic: beat's fan-outs, rank snapshots, the read-only reconciliation
    "points.tasks.rank_snapshots_refresh_all": PERIODIC,
    "points.tasks.rank_snapshots_refresh_community": PERIODIC,
    "points.tasks.rank_snapshot_build_period": PERIODIC,
    "points.tasks.ledger_reconcile_all": PERIODIC,
    "points.tasks.ledger_reconcile_community": PERIODIC,
    "points.tasks.points_expire_all": PERIODIC,
    "points.tasks.history_partitions_ensure": PERIODIC,  # a few DDL statements, daily
    "incentives.tasks.tiers_evaluate_all": PERIODIC,
    "incentives.tasks.koc_detect_all": PERIODIC,
    "incentives.tasks.honor_rolls_publish_all": PERIODIC,
    "incentives.tasks.refresh_run_all": PERIODIC,
    "rewards.tasks.auto_campaigns_scan_all": PERIODIC,
    # heavy: the per-community jobs
    "points.tasks.points_expire_community": HEAVY,
    "incentives.tasks.tiers_evaluate_community": HEAVY,
    "incentives.tasks.koc_detect_community": HEAVY,
    "incentives.tasks.honor_roll_publish_community": HEAVY,
    "incentives.tasks.refresh_run_community": HEAVY,
    "rewards.tasks.auto_campaigns_scan_community": HEAVY,
}
PROJECT_APPS = ("points.", "incentives.", "rewards.", "webhooks.")


def _project_tasks() -> set[str]:
    app.loader.import_default_modules()  # autodiscovery: every app's tasks module
    return {name for name in app.tasks if name.startswith(PROJECT_APPS)}


def test_the_three_queues_are_declared_and_the_default_is_periodic() -> None:
    assert TASK_QUEUE_NAMES == (DELIVERY, PERIODIC, HEAVY)
    # a worker started without -Q consumes the declared queues: all three (Docker Compose's)
    assert [q.name for q in app.conf.task_queues] == [DELIVERY, PERIODIC, HEAVY]
    assert app.conf.task_default_queue == PERIODIC


def test_every_project_task_has_a_decided_queue() -> None:
    tasks = _project_tasks()
    assert tasks == set(ROUTES), "a task was added or removed: decide its queue in both tables"
    assert set(settings.CELERY_TASK_ROUTES) == set(ROUTES)


def test_every_scheduled_task_is_routed_and_only_deliveries_and_fan_outs_are_scheduled() -> None:
    scheduled = {str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled <= set(ROUTES)
    assert {ROUTES[name] for name in scheduled} == {DELIVERY, PERIODIC}


@pytest.mark.parametrize(("task", "queue"), sorted(ROUTES.items()))
def test_the_router_sends_each_task_to_its_queue(task: str, queue: str) -> None:
    app.loader.import_default_modules()  # registered whichever test this process ran first
    routed = app.amqp.router.route({}, task, args=(1,), kwargs={})
    assert routed["queue"].name == queue
    assert routed["queue"].routing_key == queue
    assert routed["queue"].exchange.name == queue
    # what the task object itself would publish with (delay() / apply_async())
    assert app.tasks[task].name == task


def test_an_unknown_task_goes_to_the_default_queue() -> None:
    assert app.amqp.router.route({}, "not.a.task")["queue"].name == PERIODIC


def test_an_explicit_queue_still_wins() -> None:
    """Callers that name a queue (the fault tests' private queues) are not rerouted."""
    try:
        routed = app.amqp.router.route({"queue": "elsewhere"}, "webhooks.tasks.deliver_due")
        assert routed["queue"].name == "elsewhere"
    finally:
        app.amqp.queues.pop("elsewhere", None)  # the router added it to the shared app


def _drain(conn: Connection, queue: Queue, expected: int, timeout: float = 10.0) -> list[str]:
    """The task names of the messages on ``queue`` (consumed), waiting for ``expected``."""
    bound = queue(conn.default_channel)
    names: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        message = bound.get(no_ack=True)
        if message is not None:
            names.append(message.headers["task"])
        elif len(names) >= expected or time.monotonic() > deadline:
            return names
        else:
            time.sleep(0.05)


def test_each_task_lands_on_its_queue_on_a_real_broker(broker_url: str) -> None:
    """Publish every task through the project's routing (queue names prefixed, so this run's
    messages never meet anyone else's) and read back where each one landed."""
    sender = Celery("routing-test", set_as_current=False)
    sender.config_from_object("django.conf:settings", namespace="CELERY")
    names = prefix_routing(sender, f"test-routing-{uuid.uuid4().hex[:12]}")
    expected: dict[str, list[str]] = defaultdict(list)
    for task, queue in ROUTES.items():
        expected[queue].append(task)
    try:
        with Connection(broker_url, connect_timeout=5) as conn:
            producer = conn.Producer()
            for task in ROUTES:
                sender.send_task(task, args=(0,), producer=producer)
            declared = {q.name: q for q in sender.conf.task_queues}
            landed = {
                queue: sorted(_drain(conn, declared[names[queue]], len(expected[queue])))
                for queue in TASK_QUEUE_NAMES
            }
    finally:
        for name in names.values():
            _delete_queue(broker_url, name)
    assert landed == {queue: sorted(tasks) for queue, tasks in expected.items()}
