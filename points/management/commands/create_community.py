from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from points.services import community_create


class Command(BaseCommand):
    help = "Create a community with the default rule set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--timezone", default="Asia/Shanghai")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            community = community_create(
                slug=options["slug"], name=options["name"], timezone_name=options["timezone"]
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        self.stdout.write(f"created community {community.slug} ({community.timezone})")
