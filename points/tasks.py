"""Thin Celery adapters around ``points.services``."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from points.models import Community
from points.services import ledger_reconcile


@shared_task(acks_late=True, reject_on_worker_lost=True)
def ledger_reconcile_community(community_id: int, period: str) -> dict[str, Any]:
    return ledger_reconcile(community=Community.objects.get(pk=community_id), period=period)


@shared_task
def ledger_reconcile_all() -> int:
    """Fan out one reconcile per community for today's UTC date."""
    from django.utils import timezone

    period = timezone.now().date().isoformat()
    ids = list(Community.objects.values_list("pk", flat=True))
    for community_id in ids:
        ledger_reconcile_community.delay(community_id, period)
    return len(ids)
