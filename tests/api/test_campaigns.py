"""The campaign endpoints: create (idempotent by id), read, approve (two admins above the
amount), cancel, the allocation page by page; scopes, errors naming the field, and another
community's key or campaign answered as unknown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from points.models import AuditLog, Community
from points.services import EventInput, community_create, events_ingest
from rewards.models import Campaign, Payout, RewardSettings

pytestmark = pytest.mark.django_db
BASE = "/api/v1/communities/acme"
BODY: dict[str, Any] = {
    "id": "spring-2027",
    "kind": "holiday",
    "title": "新春红包",
    "total_fen": 1000,
    "audience": {"active_days": 7},
    "split": "lucky",
}


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


@pytest.fixture
def bot(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["events:write", "members:read"])


@pytest.fixture
def members(community: Community) -> list[str]:
    names = ["ann", "bea", "cal", "dan", "eve"]
    outcomes = events_ingest(
        community=community,
        events=[EventInput(f"e-{n}", "message", n) for n in names],
    )
    assert all(o.status == "accepted" for o in outcomes)
    return names


def _fields(response: Any) -> set[str]:
    assert response["Content-Type"].startswith("application/problem+json")
    return {e["field"] for e in response.json().get("errors", [])}


def test_admin_creates_a_draft_and_a_retry_replays_it(
    admin: APIClient, bot: APIClient, members: list[str]
) -> None:
    created = admin.post(f"{BASE}/campaigns", BODY, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["id"] == "spring-2027"
    assert body["status"] == "draft"
    assert body["packets"] == 5
    assert body["created_by"].startswith("key:")
    assert len(body["seed"]) == 64
    assert len(body["allocation_digest"]) == 64
    assert (body["paid_packets"], body["approved_at"]) == (0, None)
    again = admin.post(f"{BASE}/campaigns", BODY, format="json")
    assert again.status_code == 200
    assert again.json() == body
    conflict = admin.post(f"{BASE}/campaigns", {**BODY, "total_fen": 999}, format="json")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "campaign_conflict"
    assert _fields(conflict) == {"id"}
    assert bot.post(f"{BASE}/campaigns", {**BODY, "id": "x"}, format="json").status_code == 403
    read = bot.get(f"{BASE}/campaigns/spring-2027")
    assert read.status_code == 200
    assert read.json() == body
    assert Campaign.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"total_fen": 3}, "total_fen", "invalid_campaign"),
        ({"total_fen": 200_000, "max_fen": 100}, "total_fen", "invalid_campaign"),
        ({"min_fen": 50, "max_fen": 10}, "max_fen", "invalid_campaign"),
        ({"packets": 4}, "packets", "invalid_campaign"),
        (
            {"audience": {"active_days": 7, "min_tier": "ambassador"}},
            "audience",
            "invalid_campaign",
        ),
        ({"audience": {}}, "audience", "invalid_campaign"),
        ({"audience": {"vip": True}}, "audience.vip", "validation_error"),
        (
            {"audience": {"newcomers_since": "2026-02-30"}},
            "audience.newcomers_since",
            "invalid_campaign",
        ),
        ({"audience": {"min_tier": "king"}}, "audience.min_tier", "invalid_campaign"),
        ({"audience": {"honor_roll": "2026-11"}}, "audience", "invalid_campaign"),
        ({"split": "fair"}, "split", "validation_error"),
        ({"kind": "welcome"}, "kind", "validation_error"),
        ({"id": "welcome:ann"}, "id", "invalid_campaign"),
        ({"id": "a/b"}, "id", "validation_error"),
        ({"title": 5}, "title", "validation_error"),
        ({"surprise": 1}, "surprise", "validation_error"),
    ],
)
def test_refusals_name_the_field_and_store_nothing(
    admin: APIClient, members: list[str], change: dict[str, Any], field: str, code: str
) -> None:
    response = admin.post(f"{BASE}/campaigns", {**BODY, **change}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert field in _fields(response)
    assert not Campaign.objects.exists()


def test_two_admins_approve_above_the_amount_and_payouts_follow_the_allocation(
    community: Community,
    admin: APIClient,
    make_client: Callable[..., APIClient],
    bot: APIClient,
    members: list[str],
) -> None:
    RewardSettings.objects.create(
        community=community,
        second_approval_above_fen=500,
        updated_at=timezone.now(),
        updated_by="test",
    )
    assert admin.post(f"{BASE}/campaigns", BODY, format="json").status_code == 201
    assert bot.post(f"{BASE}/campaigns/spring-2027/approve").status_code == 403
    first = admin.post(f"{BASE}/campaigns/spring-2027/approve")
    assert first.status_code == 200
    assert first.json()["completed"] is False
    assert first.json()["campaign"]["awaiting_second_approval"] is True
    same = admin.post(f"{BASE}/campaigns/spring-2027/approve")
    assert same.status_code == 409
    assert same.json()["code"] == "second_approver_required"
    second = make_client(community, ["admin"]).post(f"{BASE}/campaigns/spring-2027/approve")
    assert second.status_code == 200
    result = second.json()
    assert result["completed"] is True
    assert (result["paid"], result["paid_fen"], result["skipped"]) == (5, 1000, [])
    assert result["campaign"]["status"] == "approved"
    assert result["campaign"]["paid_packets"] == 5
    assert result["campaign"]["approved_at"].endswith("Z")
    again = admin.post(f"{BASE}/campaigns/spring-2027/approve")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"

    page = bot.get(f"{BASE}/campaigns/spring-2027/allocations?page_size=2")
    assert page.status_code == 200
    rows = page.json()["results"]
    while page.json()["next"]:
        page = bot.get(page.json()["next"])
        rows += page.json()["results"]
    assert [r["index"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["member"] for r in rows] == members  # one batch: ids in external id order
    assert sum(r["amount_fen"] for r in rows) == 1000
    payouts = {p.pk: p for p in Payout.objects.all()}
    for row in rows:
        payout = payouts[row["payout"]["id"]]
        assert (payout.member.external_id, payout.amount_fen) == (row["member"], row["amount_fen"])
        assert row["payout"]["status"] == "requested"


def test_allocation_pages_refuse_a_forged_cursor_or_a_bad_size(
    admin: APIClient, members: list[str]
) -> None:
    admin.post(f"{BASE}/campaigns", BODY, format="json")
    for query, field in [
        ("cursor=bm9wZQ", "cursor"),
        ("cursor=%%%", "cursor"),
        ("page_size=0", "page_size"),
        ("page_size=501", "page_size"),
        ("page_size=two", "page_size"),
        ("order=desc", "order"),
    ]:
        response = admin.get(f"{BASE}/campaigns/spring-2027/allocations?{query}")
        assert response.status_code == 400, query
        assert _fields(response) == {field}, query
    unpaid = admin.get(f"{BASE}/campaigns/spring-2027/allocations").json()
    assert unpaid["next"] is None
    assert [r["payout"] for r in unpaid["results"]] == [None] * 5


def test_budget_refusal_is_a_409_and_a_draft_can_be_cancelled(
    community: Community, admin: APIClient, members: list[str]
) -> None:
    RewardSettings.objects.create(
        community=community, monthly_budget_fen=999, updated_at=timezone.now(), updated_by="t"
    )
    admin.post(f"{BASE}/campaigns", BODY, format="json")
    refused = admin.post(f"{BASE}/campaigns/spring-2027/approve")
    assert refused.status_code == 409
    assert refused.json()["code"] == "budget_exceeded"
    assert not Payout.objects.exists()
    bad = admin.post(f"{BASE}/campaigns/spring-2027/cancel", {"reason": 7}, format="json")
    assert bad.status_code == 400
    assert _fields(bad) == {"reason"}
    cancelled = admin.post(
        f"{BASE}/campaigns/spring-2027/cancel", {"reason": "over budget"}, format="json"
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert AuditLog.objects.get(action="campaign.cancel").data == {"reason": "over budget"}
    twice = admin.post(f"{BASE}/campaigns/spring-2027/cancel", {}, format="json")
    assert twice.status_code == 409
    assert admin.post(f"{BASE}/campaigns/spring-2027/approve").status_code == 409


def test_unknown_campaigns_and_other_communities_are_404_and_no_key_is_401(
    community: Community, admin: APIClient, members: list[str]
) -> None:
    admin.post(f"{BASE}/campaigns", BODY, format="json")
    other = community_create(slug="other", name="Other")
    events_ingest(community=other, events=[EventInput("o1", "message", "zed")])
    from points.services import api_key_create

    _, key = api_key_create(community=other, scopes=["admin"], name="other-admin")
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    for method, suffix in [
        ("get", ""),
        ("post", "/approve"),
        ("post", "/cancel"),
        ("get", "/allocations"),
    ]:
        # acme's campaign through acme's URL with other's key: the community is unknown
        response = getattr(stranger, method)(f"{BASE}/campaigns/spring-2027{suffix}")
        assert response.status_code == 404, suffix
        # other's URL: acme's campaign does not exist there
        mine = getattr(stranger, method)(f"/api/v1/communities/other/campaigns/spring-2027{suffix}")
        assert mine.status_code == 404, suffix
        assert mine.json()["code"] == "campaign_not_found"
        missing = getattr(admin, method)(f"{BASE}/campaigns/nope{suffix}")
        assert missing.status_code == 404
        assert APIClient().get(f"{BASE}/campaigns/spring-2027").status_code == 401
    assert stranger.post(f"{BASE}/campaigns", BODY, format="json").status_code == 404
    assert Campaign.objects.get().status == "draft"
    assert Campaign.objects.get().community_id == community.pk
