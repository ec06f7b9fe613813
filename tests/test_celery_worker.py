"""A real Celery worker process, a real broker (Redis and RabbitMQ), the real test database.

The worker and its fixtures live in ``tests/celery_worker.py``: a subprocess consuming its own
copies of the three queues (delivery, periodic, heavy), with ``DATABASE_URL`` pointing at this
test run's database; tasks are sent from the test process with ``apply_async`` over a plain
connection to the same broker, on the queue the project's routing picks. Every test runs once
per broker (ids ``[redis]``, ``[rabbitmq]``).
"""

from __future__ import annotations

import time

import pytest
from django.db.models import F

from points.models import JobRun, Member
from points.services import EventInput, community_create, events_ingest
from points.tasks import ledger_reconcile_community, points_expire_all
from tests.celery_worker import TASK_TIMEOUT, Worker, routed_queue

# Re-exported: tests/reliability import these from here.
from tests.celery_worker import _broker_error as _broker_error
from tests.celery_worker import _delete_queue as _delete_queue
from tests.celery_worker import _test_database_url as _test_database_url
from webhooks.tasks import deliver_due

pytest_plugins = ["tests.celery_worker"]  # the worker fixtures

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


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

    worker.send(ledger_reconcile_community, clean, period)
    worker.send(ledger_reconcile_community, broken, period)

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
    worker.send(ledger_reconcile_community, community, period)
    first = _finished_run(community, period)
    assert first.result["mismatched"] == 0
    Member.objects.filter(community_id=community).update(balance=F("balance") + 1)

    worker.send(ledger_reconcile_community, community, period)
    worker.wait_for_log("succeeded in", count=2)

    runs = JobRun.objects.filter(community_id=community, job="ledger_reconcile")
    assert runs.count() == 1
    again = runs.get()
    assert again.result == first.result
    assert again.finished_at == first.finished_at


def test_worker_consumes_the_three_queues_and_routes_what_it_enqueues(worker: Worker) -> None:
    """A periodic fan-out sent to the periodic queue enqueues one heavy task per community,
    routed by the worker's own app to the heavy queue, which the worker also consumes; a
    delivery goes to the delivery queue."""
    assert [routed_queue(t.name) for t in (points_expire_all, deliver_due)] == [
        "periodic",
        "delivery",
    ]
    community_create(slug="first", name="First")
    community_create(slug="second", name="Second")

    worker.send(points_expire_all)
    worker.send(deliver_due)

    worker.wait_for_log("points.tasks.points_expire_community[", count=4)  # 2 received, 2 done
    worker.wait_for_log("webhooks.tasks.deliver_due[", count=2)
    worker.wait_for_log("points.tasks.points_expire_all[", count=2)
    assert worker.output().count("'enabled': False") == 2, worker.output()
    assert "Traceback" not in worker.output(), worker.output()
