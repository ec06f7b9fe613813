"""The per-process API key cache: revocation within the cache time, last_used_at, and no
stale rule versions even though the cached key carries an old community row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from api.auth import api_key_cache_clear
from points.models import Community, CommunityApiKey
from points.rules import DEFAULT_RULES
from points.services import rule_set_publish

URL = "/api/v1/communities/acme/events"


@pytest.fixture(autouse=True)
def cache_on() -> Iterator[None]:
    api_key_cache_clear()
    with override_settings(API_KEY_CACHE_SECONDS=60.0):
        yield
    api_key_cache_clear()


def test_a_revoked_key_works_until_the_cache_forgets_it(
    community: Community, make_client: Callable[..., APIClient]
) -> None:
    client = make_client(community)
    assert (
        client.post(URL, {"id": "a", "type": "message", "member": "m"}, format="json").status_code
        == 201
    )
    key = CommunityApiKey.objects.get()
    assert key.last_used_at is not None
    CommunityApiKey.objects.update(revoked=True)

    cached = client.post(URL, {"id": "b", "type": "message", "member": "m"}, format="json")
    api_key_cache_clear()
    refused = client.post(URL, {"id": "c", "type": "message", "member": "m"}, format="json")

    assert cached.status_code == 201
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_api_key"


def test_a_new_rule_version_is_used_although_the_key_cache_holds_the_old_community_row(
    community: Community, make_client: Callable[..., APIClient]
) -> None:
    client = make_client(community)
    first = client.post(URL, {"id": "a", "type": "share", "member": "m"}, format="json")
    assert first.json()["rule_version"] == 1
    rule_set_publish(
        community=Community.objects.get(pk=community.pk),
        rules={**DEFAULT_RULES, "points": {**DEFAULT_RULES["points"], "share": 7}},
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )

    second = client.post(URL, {"id": "b", "type": "share", "member": "m"}, format="json")

    assert second.status_code == 201
    assert (second.json()["rule_version"], second.json()["points"]) == (2, 7)
