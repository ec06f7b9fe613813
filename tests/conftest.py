from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from points.models import Community
from points.services import api_key_create, community_create


@pytest.fixture
def community(db: None) -> Community:
    return community_create(slug="acme", name="Acme 社群", timezone_name="Asia/Shanghai")


@pytest.fixture
def make_client() -> Callable[..., APIClient]:
    def make(community: Community, scopes: list[str] | None = None) -> APIClient:
        _, key = api_key_create(
            community=community,
            scopes=scopes if scopes is not None else ["events:write", "members:read"],
            name="test-bot",
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def client_for(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community)
