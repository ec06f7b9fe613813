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


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rank_snapshots_refresh_community(community_id: int) -> int:
    from points.services import rank_snapshots_refresh

    return rank_snapshots_refresh(community=Community.objects.get(pk=community_id))


@shared_task(acks_late=True, reject_on_worker_lost=True)
def rank_snapshot_build_period(community_id: int, kind: str, start: str) -> bool:
    import datetime as dt

    from points.services import rank_snapshot_build

    return rank_snapshot_build(
        community=Community.objects.get(pk=community_id),
        kind=kind,
        start=dt.date.fromisoformat(start),
    )


@shared_task
def rank_snapshots_refresh_all() -> int:
    """Every 30 s: one refresh task per community (each skips periods that did not change)."""
    ids = list(Community.objects.values_list("pk", flat=True))
    for community_id in ids:
        rank_snapshots_refresh_community.delay(community_id)
    return len(ids)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def points_expire_community(community_id: int) -> dict[str, Any]:
    from points.expiry import points_expire

    return points_expire(community=Community.objects.get(pk=community_id))


@shared_task
def points_expire_all() -> int:
    """Daily: one expiry task per community (a no-op where expiry is off)."""
    ids = list(Community.objects.values_list("pk", flat=True))
    for community_id in ids:
        points_expire_community.delay(community_id)
    return len(ids)


@shared_task
def history_partitions_ensure() -> list[str]:
    """Create the coming months' partitions of the events and the ledger (points.history)."""
    from points.history import partitions_ensure

    return partitions_ensure()
