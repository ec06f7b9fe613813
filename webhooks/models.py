"""The transactional outbox and the endpoints it delivers to.

A message is written in the same transaction as the change it reports (an event reversed, an
adjustment, a new rule set version, an event scored), with one delivery row per subscribed
endpoint; so exactly the committed changes are delivered, none of a rolled-back one.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from points.models import Community


class WebhookEndpoint(models.Model):
    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    url = models.URLField(max_length=500)
    # Fernet token of the signing secret (keys in settings.WEBHOOK_SECRET_KEYS, rotatable).
    secret_encrypted = models.TextField()
    topics = ArrayField(models.CharField(max_length=64), default=list, blank=True)  # [] = all
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.community_id} → {self.url}"

    def wants(self, topic: str) -> bool:
        return self.active and (not self.topics or topic in self.topics)


class OutboxMessage(models.Model):
    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    topic = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["community", "-id"])]

    def __str__(self) -> str:
        return f"{self.pk} {self.topic}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after MAX_ATTEMPTS; re-queued by hand (docs/operations.md)


class Delivery(models.Model):
    """One message to one endpoint: delivered once, retried with backoff until then.

    ``community`` is the message's (and the endpoint's), copied when the delivery is written:
    the unique key leads with it, so that the table can be distributed by community.
    """

    # No index of its own: the unique (community, message, endpoint) leads with it.
    community = models.ForeignKey(
        Community, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    message = models.ForeignKey(OutboxMessage, on_delete=models.PROTECT, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["community", "message", "endpoint"], name="delivery_unique"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="delivery_due",
                condition=Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.endpoint_id}: {self.status}"
