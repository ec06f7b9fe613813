"""Webhook endpoints (the secret is never shown after creation) and the outbox, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from points.admin import ReadOnlyAdmin
from webhooks.models import Delivery, DeliveryStatus, OutboxMessage, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["community", "url", "topics", "active", "created_at"]
    list_filter = ["community", "active"]
    exclude = ["secret_encrypted"]

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        from webhooks.services import endpoint_create

        created, secret = endpoint_create(
            community=obj.community, url=obj.url, topics=obj.topics or []
        )
        obj.pk, obj.secret_encrypted = created.pk, created.secret_encrypted
        messages.warning(request, f"Signing secret (shown once, copy it now): {secret}")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "community", "topic", "created_at"]
    list_filter = ["community", "topic"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["message", "endpoint", "status", "attempts", "next_attempt_at", "last_error"]
    list_filter = ["status"]
    actions = ["retry"]

    @admin.action(description="Deliver again (failed deliveries)")
    def retry(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = queryset.filter(status=DeliveryStatus.FAILED).update(
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        messages.info(request, f"{count} deliveries queued again.")
