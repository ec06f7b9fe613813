"""Keep the partitioned history: ``history list``, ``history ensure``,
``history archive <table> <YYYY-MM> --to <directory>`` (points.history)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from points.history import (
    TABLES,
    HistoryError,
    month_archive,
    online_floor,
    partitions,
    partitions_ensure,
)
from points.models import HistoryArchive


class Command(BaseCommand):
    help = "List, create ahead, or archive the monthly partitions of events and the ledger."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="attached months and archived ones")
        sub.add_parser("ensure", help="create the missing months (what the daily job does)")
        archive = sub.add_parser("archive", help="detach, copy to a file, drop one month")
        archive.add_argument("table", choices=sorted(TABLES))
        archive.add_argument("month", help="YYYY-MM, before the online floor")
        archive.add_argument("--to", required=True, help="directory for the .csv.gz file")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "ensure":
            created = partitions_ensure()
            self.stdout.write(f"created {len(created)}: {', '.join(created) or '-'}")
        elif action == "list":
            self.stdout.write(f"online floor: {online_floor():%Y-%m}")
            for table in TABLES:
                months = [p.month for p in partitions(table)]
                span = f"{months[0]:%Y-%m} .. {months[-1]:%Y-%m}" if months else "none"
                self.stdout.write(f"{table}: {len(months)} months attached, {span}")
            for record in HistoryArchive.objects.order_by("table", "month"):
                self.stdout.write(
                    f"  {record}: {record.rows} rows, {record.path} sha256 {record.sha256}"
                )
        else:
            try:
                year, number = (int(part) for part in options["month"].split("-"))
                month = dt.date(year, number, 1)
            except ValueError as exc:
                raise CommandError("month: use YYYY-MM") from exc
            try:
                record = month_archive(options["table"], month, Path(options["to"]))
            except HistoryError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"{record}: {record.rows} rows in {record.path} (sha256 {record.sha256})"
            )
