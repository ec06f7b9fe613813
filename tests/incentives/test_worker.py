"""A real worker publishes a month's honor roll and delivers ``honor_roll.published``.

The worker (``tests/celery_worker.py``: a subprocess consuming its own copies of the delivery,
periodic and heavy queues of a real Redis and a real RabbitMQ, ids ``[redis]`` and
``[rabbitmq]``, on this run's test database) runs ``honor_roll_publish_community`` from the
heavy queue; the outbox's on-commit kick is routed by the worker's own app to the delivery
queue and the worker POSTs the signed message to an HTTP receiver in this process. Nothing in
this process publishes or delivers: the endpoint is created after the events, and the test
process never calls the delivery code.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from incentives.models import Honor, HonorRoll
from incentives.tasks import honor_roll_publish_community
from points.models import Community, JobRun
from points.services import EventInput, community_create, events_ingest
from tests.celery_worker import TASK_TIMEOUT, Worker
from webhooks.models import Delivery, DeliveryStatus, OutboxMessage
from webhooks.services import endpoint_create, verify_signature
from webhooks.tasks import deliver_due

pytest_plugins = ["tests.celery_worker"]  # the worker fixtures

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

SH = ZoneInfo("Asia/Shanghai")
TASK = "incentives.tasks.honor_roll_publish_community["


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A local HTTP endpoint on a free port that records every POST and answers 200."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests.append(Request(self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/incentives"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def wait(self, worker: Worker, count: int = 1, timeout: float = TASK_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            if not worker.alive():
                pytest.fail(f"the worker exited:\n{worker.output()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(self.received())} of {count} POSTs within {timeout:.0f} s:\n"
                    f"{worker.output()}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _last_local_month() -> dt.date:
    """The first day of the month that ended most recently in Asia/Shanghai (computed here,
    not by the code under test, and always inside the ingestion's backfill window)."""
    first_of_this_month = timezone.now().astimezone(SH).date().replace(day=1)
    return (first_of_this_month - dt.timedelta(days=1)).replace(day=1)


def _community_with_a_month_of_events(slug: str, month: dt.date) -> Community:
    community = community_create(slug=slug, name=slug.title(), timezone_name="Asia/Shanghai")

    def at(day: int, hour: int, minute: int = 0, start: dt.date = month) -> dt.datetime:
        return dt.datetime(start.year, start.month, day, hour, minute, tzinfo=SH)

    last_day = (month + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
    eve = month - dt.timedelta(days=1)  # the last day of the month before
    events = [
        # alice 15 points from three shares, bob 15 from two shares and a help: tied first
        ("share", "alice", at(1, 0, 30)),  # the local month's first hour (still UTC last month)
        ("share", "alice", at(10, 12)),
        ("share", "alice", at(17, 12)),
        ("share", "bob", at(5, 9)),
        ("share", "bob", at(6, 9)),
        ("help", "bob", at(last_day.day, 23, 30)),  # its last hour
        ("check_in", "carol", at(12, 8)),
        # the month before, local time (the same UTC month as the first hour above): not counted
        ("share", "dave", at(eve.day, 23, 50, start=eve)),
    ]
    outcomes = events_ingest(
        community=community,
        events=[
            EventInput(client_id=f"{slug}-{i}", type=kind, member=who, occurred_at=when)
            for i, (kind, who, when) in enumerate(events)
        ],
    )
    assert [o.status for o in outcomes] == ["accepted"] * len(events), [o.errors for o in outcomes]
    return community


def _wait_for_roll(community: Community, worker: Worker) -> HonorRoll:
    deadline = time.monotonic() + TASK_TIMEOUT
    while (roll := HonorRoll.objects.filter(community=community).first()) is None:
        if not worker.alive():
            pytest.fail(f"the worker exited:\n{worker.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no honor roll within {TASK_TIMEOUT:.0f} s:\n{worker.output()}")
        time.sleep(0.2)
    return roll


def test_worker_publishes_the_honor_roll_once_and_delivers_it_signed_to_the_webhook(
    worker: Worker, receiver: Receiver
) -> None:
    month = _last_local_month()
    label = f"{month:%Y-%m}"
    community = _community_with_a_month_of_events("honors", month)
    endpoint, secret = endpoint_create(community=community, url=receiver.url)
    assert not OutboxMessage.objects.filter(community=community).exists()

    worker.send(honor_roll_publish_community, community.pk, label)

    roll = _wait_for_roll(community, worker)
    assert roll.month == month
    top = [(e["member"], e["rank"], e["value"], e["tied"]) for e in roll.categories["top_points"]]
    assert top == [("alice", 1, 15, True), ("bob", 1, 15, True), ("carol", 3, 5, False)]
    assert [e["member"] for e in roll.categories["most_helpful"]] == ["bob"]
    assert Honor.objects.filter(roll=roll).count() == 4

    # The outbox's on-commit kick puts deliver_due on the worker's delivery queue; it delivers.
    receiver.wait(worker)
    worker.wait_for_log("webhooks.tasks.deliver_due[", count=2)  # received, then succeeded
    [request] = receiver.received()
    message = OutboxMessage.objects.get(community=community)
    assert request.path == "/hooks/incentives"
    assert request.headers["X-Incentives-Message"] == str(message.pk)
    body = json.loads(request.body)
    assert body["topic"] == message.topic == "honor_roll.published"
    assert body["id"] == message.pk
    assert body["community"] == community.pk
    assert body["data"] == {"month": label, "categories": roll.categories}
    assert body["data"] == message.payload

    timestamp = request.headers["X-Incentives-Timestamp"]
    header = request.headers["X-Incentives-Signature"]
    assert verify_signature(secret, timestamp, request.body, header)
    assert not verify_signature(secret + "x", timestamp, request.body, header)
    assert not verify_signature(
        secret, timestamp, request.body.replace(b"alice", b"mallory"), header
    )
    delivery = Delivery.objects.get(message=message, endpoint=endpoint)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)

    # Redelivered twice more: the recorded run answers, nothing is published again.
    worker.send(honor_roll_publish_community, community.pk, label)
    worker.send(honor_roll_publish_community, community.pk, label)
    worker.wait_for_log(TASK, count=6)  # three received, three succeeded
    worker.wait_for_log("'already_ran': True", count=2)
    worker.send(deliver_due)  # anything pending would go out now
    worker.wait_for_log("webhooks.tasks.deliver_due[", count=4)

    assert HonorRoll.objects.filter(community=community).count() == 1
    assert HonorRoll.objects.get(community=community).categories == roll.categories
    assert Honor.objects.filter(community=community).count() == 4
    assert (
        OutboxMessage.objects.filter(community=community, topic="honor_roll.published").count() == 1
    )
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1
    run = JobRun.objects.get(community=community, job="honor_roll")
    assert (run.period, run.result["published"], run.result["roll"]) == (label, True, roll.pk)
    assert len(receiver.received()) == 1
    assert "Traceback" not in worker.output(), worker.output()
    assert worker.alive()
