"""Register a webhook endpoint for a community; prints its signing secret once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from points.models import Community
from webhooks.services import endpoint_create


class Command(BaseCommand):
    help = "Create a webhook endpoint; the signing secret is printed once, on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("url")
        parser.add_argument("--topics", default="", help="comma separated; empty: every topic")

    def handle(self, *args: Any, **options: Any) -> None:
        community = Community.objects.filter(slug=options["slug"]).first()
        if community is None:
            raise CommandError(f"No community '{options['slug']}'.")
        topics = [t for t in options["topics"].split(",") if t]
        endpoint, secret = endpoint_create(community=community, url=options["url"], topics=topics)
        self.stdout.write(f"endpoint {endpoint.pk} → {endpoint.url}")
        self.stdout.write(secret)
