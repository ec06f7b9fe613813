"""Run a scheduled job by hand, in this process: ``run_job expiry --community SLUG``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from points.models import Community

JOBS = ("expiry", "reconcile", "ranks")


class Command(BaseCommand):
    help = "Run one job (expiry, reconcile, ranks) for one community or all, and print its result."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("job", choices=JOBS)
        parser.add_argument("--community", help="community slug (default: every community)")

    def handle(self, *args: Any, **options: Any) -> None:
        communities = Community.objects.order_by("slug")
        if options["community"]:
            communities = communities.filter(slug=options["community"])
            if not communities.exists():
                raise CommandError(f"No community '{options['community']}'.")
        for community in communities:
            result = _run(options["job"], community)
            self.stdout.write(f"{community.slug}: {json.dumps(result, default=str)}")


def _run(job: str, community: Community) -> Any:
    if job == "expiry":
        from points.expiry import points_expire

        return points_expire(community=community)
    if job == "reconcile":
        from points.services import ledger_reconcile

        return ledger_reconcile(
            community=community, period=f"manual-{timezone.now():%Y%m%dT%H%M%S}"
        )
    from points.services import rank_snapshots_refresh

    return {"rebuilt": rank_snapshots_refresh(community=community)}
