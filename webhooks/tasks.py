"""Thin Celery adapters around ``webhooks.services``."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver_due() -> dict[str, int]:
    from webhooks.services import deliveries_send

    return deliveries_send()
