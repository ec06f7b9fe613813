"""Thin Celery adapters for rewards: the automatic campaigns' scan, every minute from beat.

The beat task fans out one task per community that gives welcome packets or content rewards;
each runs ``rewards.campaigns.auto_campaigns_scan``, which is idempotent (once-only campaign
ids, a cursor that only moves forward), so a redelivered or retried task pays nothing twice.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from points.models import Community


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)
def auto_campaigns_scan_community(community_id: int) -> dict[str, Any]:
    from rewards.campaigns import auto_campaigns_scan

    return auto_campaigns_scan(community=Community.objects.get(pk=community_id))


@shared_task
def auto_campaigns_scan_all() -> int:
    from rewards.campaigns import auto_campaign_communities

    ids = auto_campaign_communities()
    for community_id in ids:
        auto_campaigns_scan_community.delay(community_id)
    return len(ids)
