"""API keys: `Authorization: Api-Key <key>`, one community per key, scopes per endpoint."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from points.models import Community, CommunityApiKey, Event, LedgerEntry, Member
from points.services import api_key_create, community_create

pytestmark = pytest.mark.django_db

EVENT = {"id": "e-1", "type": "share", "member": "alice"}


def _counts() -> tuple[int, int, int]:
    return Event.objects.count(), LedgerEntry.objects.count(), Member.objects.count()


def _client(authorization: str | None = None) -> APIClient:
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


def _key(community: Community, scopes: list[str]) -> tuple[CommunityApiKey, str]:
    return api_key_create(community=community, scopes=scopes, name="auth-test")


def _assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def test_request_without_authorization_header_is_401_missing_api_key(community):
    before = _counts()

    response = _client().post("/api/v1/communities/acme/events", EVENT, format="json")

    _assert_problem(response, 401, "missing_api_key")
    assert response["WWW-Authenticate"] == "Api-Key"
    assert _counts() == before


def test_read_without_authorization_header_is_401_missing_api_key(community):
    response = _client().get("/api/v1/communities/acme/members/alice")

    _assert_problem(response, 401, "missing_api_key")
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(
    "authorization",
    [
        "Api-Key nonsense",
        "Api-Key abcdefgh.0123456789abcdef0123456789abcdef",
        "Api-Key ",
        "Api-Key",
        "Bearer abc.def",
        "Basic YWxpY2U6c2VjcmV0",
        "garbage",
        "Api-Key \u00e9\u00e9\u00e9.\u00e9",
    ],
    ids=["no-dot", "unknown-prefix", "empty-key", "keyword-only", "bearer", "basic", "garbage",
         "latin1"],
)  # fmt: skip
def test_bad_or_garbage_key_is_401_invalid_api_key_and_writes_nothing(community, authorization):
    before = _counts()

    response = _client(authorization).post("/api/v1/communities/acme/events", EVENT, format="json")

    _assert_problem(response, 401, "invalid_api_key")
    assert response["WWW-Authenticate"] == "Api-Key"
    assert _counts() == before


def test_right_prefix_with_wrong_secret_is_401_invalid_api_key(community):
    api_key, key = _key(community, ["events:write"])
    prefix, _, secret = key.partition(".")
    forged = f"{prefix}.{secret[::-1]}"
    assert forged != key

    response = _client(f"Api-Key {forged}").post(
        "/api/v1/communities/acme/events", EVENT, format="json"
    )

    _assert_problem(response, 401, "invalid_api_key")
    assert Event.objects.count() == 0


def test_keyword_is_case_insensitive(community):
    _, key = _key(community, ["events:write"])

    response = _client(f"api-key {key}").post(
        "/api/v1/communities/acme/events", EVENT, format="json"
    )

    assert response.status_code == 201, response.content


def test_revoked_key_is_401_invalid_api_key(community):
    api_key, key = _key(community, ["events:write", "members:read"])
    client = _client(f"Api-Key {key}")
    assert client.post("/api/v1/communities/acme/events", EVENT, format="json").status_code == 201
    CommunityApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
    before = _counts()

    write = client.post("/api/v1/communities/acme/events", {**EVENT, "id": "e-2"}, format="json")
    read = client.get("/api/v1/communities/acme/members/alice")

    _assert_problem(write, 401, "invalid_api_key")
    _assert_problem(read, 401, "invalid_api_key")
    assert _counts() == before


def test_expired_key_is_401_invalid_api_key(community):
    api_key, key = _key(community, ["events:write"])
    api_key.expiry_date = timezone.now() - dt.timedelta(seconds=1)
    api_key.save(update_fields=["expiry_date"])

    response = _client(f"Api-Key {key}").post(
        "/api/v1/communities/acme/events", EVENT, format="json"
    )

    _assert_problem(response, 401, "invalid_api_key")
    assert Event.objects.count() == 0


def test_key_with_future_expiry_works(community):
    api_key, key = _key(community, ["events:write"])
    api_key.expiry_date = timezone.now() + dt.timedelta(days=1)
    api_key.save(update_fields=["expiry_date"])

    response = _client(f"Api-Key {key}").post(
        "/api/v1/communities/acme/events", EVENT, format="json"
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "events", EVENT),
        ("post", "events/batch", {"events": [EVENT]}),
        ("get", "members/alice", None),
        ("get", "members/alice/ledger", None),
    ],
)
def test_key_of_community_a_on_community_b_url_is_404_and_writes_nothing(
    community, method, path, body
):
    other = community_create(slug="beta", name="Beta")
    _, key_b = _key(other, ["admin"])
    assert _client(f"Api-Key {key_b}").post(
        "/api/v1/communities/beta/events", EVENT, format="json"
    ).status_code == 201  # fmt: skip
    _, key_a = _key(community, ["admin"])
    before = _counts()

    response = getattr(_client(f"Api-Key {key_a}"), method)(
        f"/api/v1/communities/beta/{path}", body, format="json"
    )

    _assert_problem(response, 404, "not_found")
    assert "beta" in response.json()["detail"]
    assert _counts() == before


def test_unknown_community_is_404_like_someone_elses(community):
    _, key = _key(community, ["admin"])
    client = _client(f"Api-Key {key}")

    unknown = client.post("/api/v1/communities/nowhere/events", EVENT, format="json")
    other = community_create(slug="beta", name="Beta")
    foreign = client.post(f"/api/v1/communities/{other.slug}/events", EVENT, format="json")

    _assert_problem(unknown, 404, "not_found")
    _assert_problem(foreign, 404, "not_found")
    assert unknown.json()["title"] == foreign.json()["title"]
    assert Event.objects.count() == 0


def test_key_without_events_write_is_403_forbidden_and_writes_nothing(community):
    _, key = _key(community, ["members:read"])
    client = _client(f"Api-Key {key}")
    before = _counts()

    single = client.post("/api/v1/communities/acme/events", EVENT, format="json")
    batch = client.post("/api/v1/communities/acme/events/batch", {"events": [EVENT]}, format="json")

    body = _assert_problem(single, 403, "forbidden")
    assert "events:write" in body["detail"]
    _assert_problem(batch, 403, "forbidden")
    assert _counts() == before


def test_key_with_only_events_write_cannot_read_members(community):
    _, key = _key(community, ["events:write"])
    client = _client(f"Api-Key {key}")
    assert client.post("/api/v1/communities/acme/events", EVENT, format="json").status_code == 201

    detail = client.get("/api/v1/communities/acme/members/alice")
    ledger = client.get("/api/v1/communities/acme/members/alice/ledger")

    assert "members:read" in _assert_problem(detail, 403, "forbidden")["detail"]
    _assert_problem(ledger, 403, "forbidden")


def test_key_with_no_scopes_can_do_nothing(community):
    _, key = _key(community, [])
    client = _client(f"Api-Key {key}")

    _assert_problem(
        client.post("/api/v1/communities/acme/events", EVENT, format="json"), 403, "forbidden"
    )
    _assert_problem(client.get("/api/v1/communities/acme/members/alice"), 403, "forbidden")


def test_rewards_write_scope_does_not_grant_events_or_members(community):
    _, key = _key(community, ["rewards:write"])
    client = _client(f"Api-Key {key}")

    _assert_problem(
        client.post("/api/v1/communities/acme/events", EVENT, format="json"), 403, "forbidden"
    )
    _assert_problem(client.get("/api/v1/communities/acme/members/alice"), 403, "forbidden")


def test_admin_scope_can_do_everything(community):
    _, key = _key(community, ["admin"])
    client = _client(f"Api-Key {key}")

    single = client.post("/api/v1/communities/acme/events", EVENT, format="json")
    batch = client.post(
        "/api/v1/communities/acme/events/batch",
        {"events": [{**EVENT, "id": "e-2"}]},
        format="json",
    )
    detail = client.get("/api/v1/communities/acme/members/alice")
    ledger = client.get("/api/v1/communities/acme/members/alice/ledger")
    board = client.get("/api/v1/communities/acme/leaderboard")
    rank = client.get("/api/v1/communities/acme/members/alice/rank")
    token = client.post("/api/v1/communities/acme/members/alice/token", {}, format="json")

    assert single.status_code == 201
    assert batch.status_code == 200
    assert detail.status_code == 200
    assert ledger.status_code == 200
    assert board.status_code == 200
    assert rank.status_code == 200
    assert token.status_code == 201


def test_member_token_cannot_post_events(client_for):
    client_for.post("/api/v1/communities/acme/events", EVENT, format="json")
    token = client_for.post("/api/v1/communities/acme/members/alice/token").json()["token"]
    before = _counts()

    response = _client(f"Member {token}").post(
        "/api/v1/communities/acme/events", {**EVENT, "id": "e-9"}, format="json"
    )

    _assert_problem(response, 403, "forbidden")
    assert _counts() == before


def test_garbage_member_token_is_401_invalid_member_token(community):
    response = _client("Member not-a-token").get("/api/v1/communities/acme/members/alice")

    _assert_problem(response, 401, "invalid_member_token")
    assert Member.objects.count() == 0
