"""Rate limits per key and per member token: atomic under concurrency (exactly the limit gets
through), 429 problem+json with Retry-After; in PostgreSQL and in Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from api.throttles import counter_hit, parse_rate
from points.models import Community, Member
from points.services import EventInput, events_ingest, member_token_issue
from tests.redis_db import REDIS, redis_up


@pytest.fixture(params=["postgresql", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "redis":
        if not redis_up():
            pytest.skip("no Redis at 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(REDIS).flushdb()
        with override_settings(REDIS_URL=REDIS):
            yield request.param
    else:
        yield request.param


def test_parse_rate() -> None:
    assert parse_rate("600/min") == (600, 60)
    assert parse_rate("5/s") == (5, 1)
    assert parse_rate("100/hour") == (100, 3600)


@pytest.mark.django_db(transaction=True)
def test_exactly_the_limit_gets_through_twenty_concurrent_requests(
    backend: str, community: Community, make_client: Callable[..., APIClient]
) -> None:
    client_key = make_client(community, ["members:read"])
    key_header = client_key._credentials["HTTP_AUTHORIZATION"]  # type: ignore[attr-defined]
    statuses: list[int] = []
    retry_after: list[str] = []
    barrier = threading.Barrier(20)
    lock = threading.Lock()

    def call() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=key_header)
        barrier.wait()
        try:
            response = client.get("/api/v1/communities/acme/leaderboard")
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 429:
                    retry_after.append(response["Retry-After"])
                    assert response["Content-Type"] == "application/problem+json"
                    assert response.json()["code"] == "rate_limited"
        finally:
            connection.close()

    with override_settings(API_RATE_LIMITS={"key": "7/hour"}):
        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(statuses) == [200] * 7 + [429] * 13
    assert all(0 < int(value) <= 3600 for value in retry_after)


@pytest.mark.django_db
def test_member_tokens_have_their_own_limit(backend: str, community: Community) -> None:
    events_ingest(community=community, events=[EventInput("a", "share", "ann")])
    token, _ = member_token_issue(member=Member.objects.get(external_id="ann"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Member {token}")
    with override_settings(API_RATE_LIMITS={"member": "3/hour"}):
        codes = [client.get("/api/v1/communities/acme/members/ann").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]


@pytest.mark.django_db
def test_windows_are_separate(backend: str) -> None:
    assert counter_hit("test:w", 60, now=120.0)[0] == 1
    assert counter_hit("test:w", 60, now=150.0)[0] == 2
    assert counter_hit("test:w", 60, now=180.0) == (1, 60)
