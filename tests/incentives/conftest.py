"""Small hand-built communities for the incentive jobs: events go through the real ingestion."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from points.models import Community, Member
from points.services import EventInput, events_ingest

_ids = itertools.count(1)

Post = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def now() -> dt.datetime:
    return timezone.now()


@pytest.fixture
def post(community: Community) -> Post:
    """Post events (dicts of EventInput fields, ``id`` optional); every one must be accepted."""

    def post(
        *events: dict[str, Any], target_community: Community | None = None
    ) -> list[dict[str, Any]]:
        inputs = [
            EventInput(client_id=e.pop("id", f"ev-{next(_ids)}"), **e) for e in map(dict, events)
        ]
        outcomes = events_ingest(community=target_community or community, events=inputs)
        assert all(o.status == "accepted" for o in outcomes), [o.errors for o in outcomes]
        return [o.result or {} for o in outcomes]

    return post


def member(external_id: str) -> Member:
    return Member.objects.get(external_id=external_id)
