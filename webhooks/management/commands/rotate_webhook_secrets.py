"""Re-encrypt every webhook secret with the first key of WEBHOOK_SECRET_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from webhooks.services import secrets_rotate


class Command(BaseCommand):
    help = "Re-encrypt webhook secrets with the newest key (put it first in WEBHOOK_SECRET_KEYS)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            count = secrets_rotate()
        self.stdout.write(f"re-encrypted {count} webhook secrets")
