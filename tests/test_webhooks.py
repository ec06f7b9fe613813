"""The outbox and webhook deliveries: written with the change or not at all, delivered once to
a receiver that fails the first attempts, signed with a timestamp, secrets encrypted at rest
and rotatable."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from points.adjustments import AdjustmentInput, adjustment_create
from points.corrections import event_reverse
from points.models import Community
from points.services import EventInput, events_ingest
from webhooks.models import Delivery, DeliveryStatus, OutboxMessage, WebhookEndpoint
from webhooks.services import (
    _subscribed_cache,
    deliveries_send,
    endpoint_create,
    secret_decrypt,
    verify_signature,
)


class Receiver:
    """A local HTTP endpoint that fails the first ``fail`` requests with 503."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.requests: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 503 if len(receiver.requests) < receiver.fail else 200
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=2)
    yield r
    r.close()


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    _subscribed_cache.clear()


def _due_now() -> None:
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(next_attempt_at=timezone.now())


def test_every_committed_change_is_delivered_once_to_a_failing_receiver(
    community: Community, receiver: Receiver
) -> None:
    endpoint, secret = endpoint_create(community=community, url=receiver.url)
    events_ingest(community=community, events=[EventInput("e1", "ugc_post", "ann")])
    event_reverse(community=community, client_id="e1", reason="deleted")
    adjustment_create(
        community=community, item=AdjustmentInput("ann", 5, "prize"), actor="key:test"
    )
    topics = list(OutboxMessage.objects.order_by("id").values_list("topic", flat=True))
    assert topics == ["event.accepted", "event.reversed", "adjustment.created"]

    for _ in range(6):  # attempts until everything is delivered
        deliveries_send()
        _due_now()

    delivered = [r for r in receiver.requests if r[2] == 200]
    ids = [r[0]["X-Incentives-Message"] for r in delivered]
    assert sorted(ids) == sorted(str(m) for m in OutboxMessage.objects.values_list("id", flat=True))
    assert len(ids) == len(set(ids)) == 3  # each exactly once
    assert len(receiver.requests) == 5  # the 2 failures, then 3 deliveries
    assert Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 3
    deliveries_send()
    assert len(receiver.requests) == 5  # nothing is sent again
    for headers, body, _status in delivered:
        assert verify_signature(
            secret, headers["X-Incentives-Timestamp"], body, headers["X-Incentives-Signature"]
        )
        assert json.loads(body)["community"] == community.pk


def test_a_rolled_back_change_writes_no_message(community: Community) -> None:
    endpoint_create(community=community, url="http://127.0.0.1:9/never")

    def change_then_fail() -> None:
        with transaction.atomic():
            adjustment_create(
                community=community,
                item=AdjustmentInput("ann", 5, "prize"),
                actor="key:t",
                create_member=True,
            )
            raise RuntimeError("the surrounding transaction fails")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert not OutboxMessage.objects.exists()
    assert not Delivery.objects.exists()


def test_no_endpoint_no_message(community: Community) -> None:
    events_ingest(community=community, events=[EventInput("e1", "share", "ann")])
    assert not OutboxMessage.objects.exists()


def test_failures_back_off_and_give_up_after_the_last_attempt(community: Community) -> None:
    endpoint_create(community=community, url="http://127.0.0.1:9/refused")
    adjustment_create(
        community=community, item=AdjustmentInput("ann", 5, "x"), actor="k", create_member=True
    )
    deliveries_send()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.last_error
    for _ in range(12):
        _due_now()
        deliveries_send()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 10)


def test_signatures_expire_and_bind_the_body() -> None:
    body = b'{"id":1}'
    from webhooks.services import signature

    now = int(time.time())
    good = signature("s3", now, body)
    assert verify_signature("s3", str(now), body, good)
    assert not verify_signature("s3", str(now), body + b" ", good)
    assert not verify_signature("other", str(now), body, good)
    old = now - 3600
    assert not verify_signature("s3", str(old), body, signature("s3", old, body))


def test_secrets_are_encrypted_at_rest_and_rotatable(community: Community) -> None:
    endpoint, secret = endpoint_create(community=community, url="http://127.0.0.1:9/x")
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
    assert secret not in stored
    assert secret_decrypt(stored) == secret

    from django.conf import settings

    new_key = Fernet.generate_key().decode()
    with override_settings(WEBHOOK_SECRET_KEYS=[new_key, *settings.WEBHOOK_SECRET_KEYS]):
        call_command("rotate_webhook_secrets", stdout=open("/dev/null", "w"))  # noqa: SIM115
        rotated = WebhookEndpoint.objects.get(pk=endpoint.pk).secret_encrypted
        assert rotated != stored
        with override_settings(WEBHOOK_SECRET_KEYS=[new_key]):
            assert secret_decrypt(rotated) == secret  # the old key is no longer needed


def test_delivery_time_is_recorded(community: Community, receiver: Receiver) -> None:
    receiver.fail = 0
    endpoint_create(community=community, url=receiver.url, topics=["adjustment.created"])
    events_ingest(community=community, events=[EventInput("e1", "share", "ann")])  # not wanted
    adjustment_create(community=community, item=AdjustmentInput("ann", 5, "x"), actor="k")
    assert deliveries_send() == {"delivered": 1, "failed_attempts": 0}
    delivery = Delivery.objects.get()
    assert delivery.delivered_at is not None
    assert delivery.delivered_at <= timezone.now() + dt.timedelta(seconds=1)


def test_create_webhook_prints_the_secret_once_and_stores_it_encrypted(
    community: Community,
) -> None:
    from io import StringIO

    out = StringIO()
    call_command(
        "create_webhook",
        "acme",
        "https://receiver.example/hook",
        "--topics",
        "event.reversed",
        stdout=out,
    )
    secret = out.getvalue().strip().splitlines()[-1]
    endpoint = WebhookEndpoint.objects.get()
    assert secret.startswith("whsec_")
    assert (endpoint.url, endpoint.topics) == ("https://receiver.example/hook", ["event.reversed"])
    assert secret not in endpoint.secret_encrypted
    assert secret_decrypt(endpoint.secret_encrypted) == secret


@pytest.mark.django_db
def test_many_messages_are_written_set_based_with_the_same_deliveries(
    community: Community, monkeypatch: pytest.MonkeyPatch
):
    from webhooks import services
    from webhooks.services import BULK_MESSAGES, endpoint_create, outbox_write

    monkeypatch.setattr(services, "BULK_CHUNK", 100)  # several statements

    everything, _ = endpoint_create(community=community, url="http://127.0.0.1:9/all")
    tiers_only, _ = endpoint_create(
        community=community, url="http://127.0.0.1:9/tiers", topics=["tier.changed"]
    )
    messages = [
        ("tier.changed" if i % 2 else "refresh.at_risk", {"member": f"m{i}", "n": i, "名": "字"})
        for i in range(BULK_MESSAGES + 50)
    ]
    with transaction.atomic():
        outbox_write(community, messages)
    stored = list(OutboxMessage.objects.filter(community=community).order_by("id"))
    assert [(m.topic, m.payload) for m in stored] == messages  # in order, payloads intact
    assert Delivery.objects.filter(endpoint=everything).count() == len(messages)
    assert Delivery.objects.filter(endpoint=tiers_only).count() == len(messages) // 2
    assert not Delivery.objects.filter(
        endpoint=tiers_only, message__topic="refresh.at_risk"
    ).exists()
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
