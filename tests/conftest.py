from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
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


@pytest.fixture
def keep_test_connection() -> Iterator[None]:
    """For tests that call the WSGI application itself: like Django's test client, keep the
    request signals from closing the test's database connection (and its transaction) at the
    start and end of each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
