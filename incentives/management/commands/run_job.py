"""Run a scheduled job by hand, in this process: ``run_job tiers --community SLUG``.

It lives in ``incentives`` (which may import ``points``) so that one command lists every job,
the ledger's and the incentive ones, with the schedule beat runs it on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from points.exceptions import DomainError
from points.models import Community


@dataclass(frozen=True)
class Job:
    run: Callable[[Community, str | None], Any]
    beat: str  # the CELERY_BEAT_SCHEDULE entry that runs it
    period: str  # what --period means for it


def _expiry(community: Community, period: str | None) -> Any:
    from points.expiry import points_expire

    return points_expire(community=community)


def _reconcile(community: Community, period: str | None) -> Any:
    from points.services import ledger_reconcile

    return ledger_reconcile(
        community=community, period=period or f"manual-{timezone.now():%Y%m%dT%H%M%S}"
    )


def _ranks(community: Community, period: str | None) -> Any:
    from points.services import rank_snapshots_refresh

    return {"rebuilt": rank_snapshots_refresh(community=community)}


def _tiers(community: Community, period: str | None) -> Any:
    from incentives.tiers import tiers_evaluate

    return tiers_evaluate(community=community, period=period)


def _koc(community: Community, period: str | None) -> Any:
    from incentives.koc import koc_detect

    return koc_detect(community=community, period=period)


def _honor_roll(community: Community, period: str | None) -> Any:
    from incentives.honors import honor_roll_publish

    return honor_roll_publish(community=community, month=period)


def _refresh(community: Community, period: str | None) -> Any:
    from incentives.refresh import refresh_run

    return refresh_run(community=community, period=period)


JOBS: dict[str, Job] = {
    "expiry": Job(_expiry, "points-expire-daily", "ignored: expires what is due now"),
    "reconcile": Job(_reconcile, "ledger-reconcile-nightly", "a label (default: manual-<now>)"),
    "ranks": Job(_ranks, "rank-snapshots-refresh", "ignored: the current periods"),
    "tiers": Job(_tiers, "incentives-tiers", "local day YYYY-MM-DD (default: today)"),
    "koc": Job(_koc, "incentives-koc", "local day YYYY-MM-DD ending the window (default: today)"),
    "honor_roll": Job(
        _honor_roll, "incentives-honor-rolls", "YYYY-MM (default: the month that just ended)"
    ),
    "refresh": Job(_refresh, "incentives-refresh", "YYYY-MM (default: the current month)"),
}


def _schedule(name: str) -> str:
    entry = settings.CELERY_BEAT_SCHEDULE.get(name, {})
    schedule = entry.get("schedule")
    if isinstance(schedule, int | float):
        return f"every {schedule:g} s"
    return str(schedule) if schedule is not None else "not scheduled"


class Command(BaseCommand):
    help = "Run one scheduled job for one community or all, now, and print its result."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job", nargs="?", choices=sorted(JOBS))
        parser.add_argument("--community", help="community slug (default: every community)")
        parser.add_argument("--period", help="the job's period (see --list)")
        parser.add_argument("--list", action="store_true", help="list every job and its schedule")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for name, job in JOBS.items():
                self.stdout.write(
                    f"{name:<11} beat '{job.beat}': {_schedule(job.beat)}; --period: {job.period}"
                )
            return
        if not options["job"]:
            raise CommandError("Name a job (or --list).")
        job = JOBS[options["job"]]
        communities = Community.objects.order_by("slug")
        if options["community"]:
            communities = communities.filter(slug=options["community"])
            if not communities.exists():
                raise CommandError(f"No community '{options['community']}'.")
        selected = list(communities)
        progress = tqdm(selected, unit="community", disable=len(selected) < 2, file=self.stderr)
        for community in progress:
            progress.set_postfix_str(community.slug)
            try:
                result = job.run(community, options["period"])
            except DomainError as exc:
                raise CommandError(f"{community.slug}: {exc.detail}") from exc
            self.stdout.write(f"{community.slug}: {json.dumps(result, default=str)}")
