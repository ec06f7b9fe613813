"""Thin Celery adapters: one task per community per job, fanned out by beat every hour.

Each job is fenced per community and period (``incentives.jobs.run_once``), so the hourly
fan-out runs a community's job once per local day (tiers, KOC) or month (honor roll, member
refresh), at the first run after local midnight, whatever the community's time zone.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from points.models import Community

# Late acks (a worker lost mid-run redelivers), retried with back-off on database errors; the
# run_once fence makes a redelivery or retry of a finished run a no-op.
job_task = shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
)


@job_task
def tiers_evaluate_community(community_id: int, period: str | None = None) -> dict[str, Any]:
    from incentives.tiers import tiers_evaluate

    return tiers_evaluate(community=Community.objects.get(pk=community_id), period=period)


@job_task
def koc_detect_community(community_id: int, period: str | None = None) -> dict[str, Any]:
    from incentives.koc import koc_detect

    return koc_detect(community=Community.objects.get(pk=community_id), period=period)


@job_task
def honor_roll_publish_community(community_id: int, month: str | None = None) -> dict[str, Any]:
    from incentives.honors import honor_roll_publish

    return honor_roll_publish(community=Community.objects.get(pk=community_id), month=month)


@job_task
def refresh_run_community(community_id: int, period: str | None = None) -> dict[str, Any]:
    from incentives.refresh import refresh_run

    return refresh_run(community=Community.objects.get(pk=community_id), period=period)


def _fan_out(task: Any) -> int:
    ids = list(Community.objects.order_by("pk").values_list("pk", flat=True))
    for community_id in ids:
        task.delay(community_id)
    return len(ids)


@shared_task
def tiers_evaluate_all() -> int:
    return _fan_out(tiers_evaluate_community)


@shared_task
def koc_detect_all() -> int:
    return _fan_out(koc_detect_community)


@shared_task
def honor_rolls_publish_all() -> int:
    return _fan_out(honor_roll_publish_community)


@shared_task
def refresh_run_all() -> int:
    return _fan_out(refresh_run_community)
