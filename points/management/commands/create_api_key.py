from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from points.models import Community, Scope
from points.services import api_key_create


class Command(BaseCommand):
    help = (
        "Create an API key for a community. The key is printed once, alone on the last line; "
        "only its hash is stored. Scopes: " + ", ".join(Scope.values)
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--scopes", required=True, help="comma-separated")
        parser.add_argument("--name", default="bot")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            community = Community.objects.get(slug=options["slug"])
        except Community.DoesNotExist as exc:
            raise CommandError(f"no community '{options['slug']}'") from exc
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            api_key, key = api_key_create(community=community, scopes=scopes, name=options["name"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"API key '{api_key.name}' for {community.slug} with scopes {','.join(api_key.scopes)}"
        )
        self.stdout.write(key)
