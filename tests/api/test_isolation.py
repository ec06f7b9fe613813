"""A key of community A never reads or writes community B: every operation of the OpenAPI
schema that takes a community answers 404 (as for an unknown community) and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from points.models import AuditLog, Community, Event, LedgerEntry
from points.services import EventInput, api_key_create, community_create, events_ingest


def _operations(client: APIClient) -> list[tuple[str, str]]:
    schema = client.get("/api/schema/?format=json").json()
    return sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        if "{community}" in path
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


def _fill(path: str) -> str:
    return (
        path.replace("{community}", "victim")
        .replace("{member}", "ann")
        .replace("{event_id}", "v1")
        .replace("{id}", "v1")
    )


@pytest.fixture
def victim(db: None) -> Community:
    community = community_create(slug="victim", name="Victim")
    events_ingest(community=community, events=[EventInput("v1", "share", "ann")])
    return community


def test_every_community_operation_refuses_another_communitys_key(victim: Community) -> None:
    attacker = community_create(slug="attacker", name="Attacker")
    _, key = api_key_create(
        community=attacker,
        scopes=["events:write", "members:read", "rewards:write", "admin"],
        name="all",
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    bodies: dict[str, Any] = {
        "events": {"id": "x1", "type": "share", "member": "ann"},
        "events/batch": {"events": [{"id": "x2", "type": "share", "member": "ann"}]},
        "adjustments": {"member": "ann", "points": 5, "reason": "steal"},
        "rules": {"rules": {"points": {"share": 100}}},
    }
    operations = _operations(client)
    assert len(operations) >= 10
    for method, path in operations:
        body: Any = next((b for suffix, b in bodies.items() if path.endswith(suffix)), {})
        response = getattr(client, method.lower())(_fill(path), body, format="json")
        assert response.status_code == 404, (method, path, response.status_code)
        assert response["Content-Type"] == "application/problem+json"
    assert Event.objects.filter(community=victim).count() == 1
    assert LedgerEntry.objects.filter(community=victim).count() == 1
    assert not AuditLog.objects.exists()
    assert victim.rule_sets.count() == 1
