"""Outbox writes, signed deliveries with retries, and secrets encrypted at rest.

Delivery guarantees: a message is delivered to each subscribed endpoint until the endpoint
answers 2xx, then never again (the delivery row is locked while it is sent: ``FOR UPDATE SKIP
LOCKED``, so two workers never send the same one); failures are retried with exponential
backoff up to ``MAX_ATTEMPTS``. Every request carries ``X-Incentives-Message`` (the message id:
a receiver that lost our 2xx answer and gets the message again recognises it),
``X-Incentives-Timestamp`` and ``X-Incentives-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>.<body>">``; ``verify_signature`` refuses signatures older than five minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from points.models import Community
from webhooks.models import Delivery, DeliveryStatus, OutboxMessage, WebhookEndpoint

MAX_ATTEMPTS = 10
TIMEOUT_SECONDS = 5
SIGNATURE_TOLERANCE = 300  # seconds


# --- secrets ---------------------------------------------------------------------------------


def _fernet() -> Any:
    from cryptography.fernet import Fernet, MultiFernet

    keys = [k for k in getattr(settings, "WEBHOOK_SECRET_KEYS", []) if k]
    return MultiFernet([Fernet(k) for k in keys])


def secret_encrypt(secret: str) -> str:
    return str(_fernet().encrypt(secret.encode()).decode())


def secret_decrypt(token: str) -> str:
    return str(_fernet().decrypt(token.encode()).decode())


def secrets_rotate() -> int:
    """Re-encrypt every endpoint's secret with the first key of ``WEBHOOK_SECRET_KEYS``
    (after adding a new key in front); returns how many were rewritten."""
    fernet = _fernet()
    count = 0
    for endpoint in WebhookEndpoint.objects.select_for_update().order_by("pk"):
        endpoint.secret_encrypted = fernet.rotate(endpoint.secret_encrypted.encode()).decode()
        endpoint.save(update_fields=["secret_encrypted"])
        count += 1
    return count


def endpoint_create(
    *, community: Community, url: str, topics: Sequence[str] = ()
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once; stored encrypted)."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint.objects.create(
        community=community, url=url, secret_encrypted=secret_encrypt(secret), topics=list(topics)
    )
    _subscribed_cache.clear()
    return endpoint, secret


# --- signing ---------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={digest.hexdigest()}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, header: str, now: float | None = None
) -> bool:
    """For receivers (and our tests): the signature matches and is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((now or time.time()) - sent) > SIGNATURE_TOLERANCE:
        return False
    return hmac.compare_digest(signature(secret, sent, body), header)


# --- the outbox ------------------------------------------------------------------------------

_subscribed_cache: dict[int, tuple[float, list[WebhookEndpoint]]] = {}
SUBSCRIBED_CACHE_SECONDS = 10.0


def _endpoints(community: Community) -> list[WebhookEndpoint]:
    """The community's active endpoints, cached per process for 10 s (ingestion asks on every
    batch; a new endpoint gets messages from within 10 s of its creation)."""
    cached = _subscribed_cache.get(community.pk)
    if cached is not None and time.monotonic() - cached[0] < SUBSCRIBED_CACHE_SECONDS:
        return cached[1]
    found = list(WebhookEndpoint.objects.filter(community=community, active=True))
    _subscribed_cache[community.pk] = (time.monotonic(), found)
    return found


# Above this many messages, one set-based statement writes them and their deliveries (a job
# that warns 900,000 members spent most of its time building Django objects for them).
BULK_MESSAGES = 200
BULK_CHUNK = 20_000  # messages per statement (a jsonb array holds at most 256 MB)


def outbox_write(community: Community, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Write messages and their deliveries in the caller's transaction (the ``points.outbox``
    publisher). Nothing is written for a community without endpoints."""
    endpoints = _endpoints(community)
    if not endpoints:
        return
    now = timezone.now()
    if len(messages) > BULK_MESSAGES:
        _outbox_write_many(community, messages, now)
        transaction.on_commit(_kick)
        return
    rows = OutboxMessage.objects.bulk_create(
        [
            OutboxMessage(community=community, topic=topic, payload=payload, created_at=now)
            for topic, payload in messages
        ]
    )
    Delivery.objects.bulk_create(
        [
            Delivery(community=community, message=row, endpoint=endpoint, next_attempt_at=now)
            for row in rows
            for endpoint in endpoints
            if endpoint.wants(row.topic)
        ]
    )
    transaction.on_commit(_kick)


def _outbox_write_many(
    community: Community, messages: Sequence[tuple[str, dict[str, Any]]], now: dt.datetime
) -> None:
    """The messages as JSON parameters of ``BULK_CHUNK`` each, inserted with their deliveries
    (to every active endpoint of the community that wants the topic, as
    ``WebhookEndpoint.wants`` says), one statement per chunk."""
    from django.core.serializers.json import DjangoJSONEncoder

    for start in range(0, len(messages), BULK_CHUNK):
        document = json.dumps(
            [
                {"topic": topic, "payload": payload}
                for topic, payload in messages[start : start + BULK_CHUNK]
            ],
            cls=DjangoJSONEncoder,
            ensure_ascii=False,
        )
        _insert_document(community, document, now)


def _insert_document(community: Community, document: str, now: dt.datetime) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH message AS (
                INSERT INTO webhooks_outboxmessage (community_id, topic, payload, created_at)
                SELECT %s, x.item ->> 'topic', x.item -> 'payload', %s
                FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS x(item, position)
                ORDER BY x.position
                RETURNING id, topic
            )
            INSERT INTO webhooks_delivery (community_id, message_id, endpoint_id, status,
                                           attempts, next_attempt_at, last_error)
            SELECT e.community_id, m.id, e.id, %s, 0, %s, ''
            FROM message m
            JOIN webhooks_webhookendpoint e
              ON e.community_id = %s AND e.active
             AND (cardinality(e.topics) = 0 OR m.topic = ANY(e.topics))
            """,
            [community.pk, now, document, DeliveryStatus.PENDING, now, community.pk],
        )


def _kick() -> None:
    from webhooks.tasks import deliver_due

    try:
        deliver_due.delay()
    except Exception:  # noqa: BLE001, S110 - beat picks it up within seconds anyway
        pass


# --- delivery --------------------------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def deliveries_send(*, limit: int = 50, now: dt.datetime | None = None) -> dict[str, int]:
    """Send the deliveries that are due, each in its own short transaction holding its row
    lock (``SKIP LOCKED``: concurrent senders take different rows)."""
    sent = failed = 0
    for _ in range(limit):
        with transaction.atomic():
            delivery = (
                Delivery.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("message", "endpoint")
                .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now or timezone.now())
                .order_by("next_attempt_at", "pk")
                .first()
            )
            if delivery is None:
                break
            message, endpoint = delivery.message, delivery.endpoint
            body = json.dumps(
                {
                    "id": message.pk,
                    "topic": message.topic,
                    "community": message.community_id,
                    "created_at": message.created_at.isoformat(),
                    "data": message.payload,
                },
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "X-Incentives-Message": str(message.pk),
                "X-Incentives-Timestamp": str(timestamp),
                "X-Incentives-Signature": signature(
                    secret_decrypt(endpoint.secret_encrypted), timestamp, body
                ),
            }
            delivery.attempts += 1
            try:
                status = _post(endpoint.url, body, headers)
                error = "" if 200 <= status < 300 else f"HTTP {status}"
            except OSError as exc:
                error = f"{exc.__class__.__name__}: {exc}"[:500]
            if not error:
                delivery.status = DeliveryStatus.DELIVERED
                delivery.delivered_at = timezone.now()
                sent += 1
            else:
                delivery.last_error = error
                failed += 1
                if delivery.attempts >= MAX_ATTEMPTS:
                    delivery.status = DeliveryStatus.FAILED
                else:
                    backoff = min(2**delivery.attempts, 3600)
                    delivery.next_attempt_at = timezone.now() + dt.timedelta(seconds=backoff)
            delivery.save()
    return {"delivered": sent, "failed_attempts": failed}
