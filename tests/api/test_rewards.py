"""The rewards API: catalog (and what a member may redeem), redemptions and the admin steps,
payouts confirmed by the paying bot; scopes and errors naming the field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from points.adjustments import AdjustmentInput, adjustment_create
from points.models import AuditLog, Community, Member

pytestmark = pytest.mark.django_db
BASE = "/api/v1/communities/acme"

HOODIE = {
    "code": "hoodie",
    "kind": "merch",
    "title": "Hoodie",
    "cost_points": 100,
    "variants": [{"code": "m", "label": "M", "stock": 2}],
}
PACKET = {
    "code": "packet-5",
    "kind": "red_packet",
    "title": "5 yuan",
    "cost_points": 50,
    "value_fen": 500,
}
SHIP = {"name": "Alice", "phone": "138", "address": "Shanghai"}


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


@pytest.fixture
def bot(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["rewards:write", "members:read"])


def _credit(community: Community, member: str, points: int) -> None:
    adjustment_create(
        community=community,
        item=AdjustmentInput(member, points, "test credit"),
        actor="user:test",
        create_member=True,
    )


def test_catalog_create_list_and_member_view(
    community: Community, admin: APIClient, bot: APIClient
) -> None:
    assert admin.post(f"{BASE}/rewards", HOODIE, format="json").status_code == 201
    assert admin.post(f"{BASE}/rewards", PACKET, format="json").status_code == 201
    assert bot.post(f"{BASE}/rewards", PACKET, format="json").status_code == 403
    dup = admin.post(f"{BASE}/rewards", PACKET, format="json")
    assert dup.status_code == 400
    assert dup.json()["errors"][0]["field"] == "code"
    codes = [r["code"] for r in bot.get(f"{BASE}/rewards").json()["results"]]
    assert codes == ["packet-5", "hoodie"]
    _credit(community, "alice", 60)
    mine = {r["code"]: r for r in bot.get(f"{BASE}/rewards?member=alice").json()["results"]}
    assert mine["packet-5"]["eligible"] is True
    assert mine["hoodie"]["eligible"] is False
    assert mine["hoodie"]["refusals"][0]["code"] == "insufficient_points"
    bad = admin.post(f"{BASE}/rewards", {**PACKET, "code": "p2", "value_fen": 0}, format="json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "value_fen"


def test_redeem_approve_fulfil_merch_through_the_api(
    community: Community, admin: APIClient, bot: APIClient
) -> None:
    admin.post(f"{BASE}/rewards", HOODIE, format="json")
    _credit(community, "alice", 150)
    body = {"id": "r1", "member": "alice", "reward": "hoodie", "variant": "m", "shipping": SHIP}
    first = bot.post(f"{BASE}/redemptions", body, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["status"] == "requested"
    replay = bot.post(f"{BASE}/redemptions", body, format="json")
    assert replay.status_code == 200
    assert replay.content == first.content
    conflict = bot.post(f"{BASE}/redemptions", {**body, "variant": "l"}, format="json")
    assert conflict.status_code == 409
    alice = Member.objects.get(external_id="alice")
    assert (alice.balance, alice.held) == (150, 100)
    assert bot.post(f"{BASE}/redemptions/r1/approve").status_code == 403
    approved = admin.post(f"{BASE}/redemptions/r1/approve")
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved"
    no_tracking = admin.post(f"{BASE}/redemptions/r1/fulfil", {}, format="json")
    assert no_tracking.status_code == 400
    assert no_tracking.json()["errors"][0]["field"] == "tracking_number"
    done = admin.post(f"{BASE}/redemptions/r1/fulfil", {"tracking_number": "SF1"}, format="json")
    assert done.json()["status"] == "fulfilled"
    again = admin.post(f"{BASE}/redemptions/r1/approve")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"
    alice.refresh_from_db()
    assert (alice.balance, alice.held) == (50, 0)
    queue = admin.get(f"{BASE}/redemptions?status=fulfilled").json()["results"]
    assert [r["id"] for r in queue] == ["r1"]


def test_red_packet_payout_confirmed_by_the_bot(
    community: Community, admin: APIClient, bot: APIClient
) -> None:
    admin.post(f"{BASE}/rewards", PACKET, format="json")
    _credit(community, "bob", 50)
    bot.post(
        f"{BASE}/redemptions", {"id": "r2", "member": "bob", "reward": "packet-5"}, format="json"
    )
    admin.post(f"{BASE}/redemptions/r2/approve")
    pending = bot.get(f"{BASE}/payouts?status=requested").json()["results"]
    assert [(p["member"], p["amount_fen"], p["redemption"]) for p in pending] == [
        ("bob", 500, "r2")
    ]
    url = f"{BASE}/payouts/{pending[0]['id']}/confirm"
    ok = bot.post(url, {"reference": "wx-1"}, format="json")
    assert ok.status_code == 200
    assert ok.json()["status"] == "confirmed"
    assert bot.post(url, {"reference": "wx-1"}, format="json").status_code == 200
    assert bot.post(url, {"reference": "wx-2"}, format="json").status_code == 409
    assert bot.get(f"{BASE}/redemptions/r2").json()["status"] == "fulfilled"
    # the redemption moved by its payout leaves the trail its own steps leave
    assert AuditLog.objects.filter(action="redemption.fulfil", target="r2").count() == 1
    assert (
        bot.post(f"{BASE}/payouts/abc/confirm", {"reference": "x"}, format="json").status_code
        == 400
    )
    assert (
        bot.post(f"{BASE}/payouts/999/confirm", {"reference": "x"}, format="json").status_code
        == 404
    )


def test_refusals_name_their_reason(community: Community, admin: APIClient, bot: APIClient) -> None:
    admin.post(f"{BASE}/rewards", HOODIE, format="json")
    _credit(community, "carl", 10)
    poor = bot.post(
        f"{BASE}/redemptions",
        {"id": "r3", "member": "carl", "reward": "hoodie", "variant": "m", "shipping": SHIP},
        format="json",
    )
    assert poor.status_code == 409
    assert poor.json()["code"] == "insufficient_points"
    no_ship = bot.post(
        f"{BASE}/redemptions",
        {"id": "r4", "member": "carl", "reward": "hoodie", "variant": "m"},
        format="json",
    )
    assert no_ship.status_code == 400
    assert {e["field"] for e in no_ship.json()["errors"]} == {
        "shipping.name",
        "shipping.phone",
        "shipping.address",
    }
    unknown = bot.post(
        f"{BASE}/redemptions", {"id": "r5", "member": "nobody", "reward": "hoodie"}, format="json"
    )
    assert unknown.status_code in (400, 404)
    missing = bot.post(
        f"{BASE}/redemptions", {"id": "r6", "member": "carl", "reward": "nope"}, format="json"
    )
    assert missing.status_code == 404


def test_the_queue_carries_member_context_and_decides_in_bulk(
    community: Community, admin: APIClient, bot: APIClient, make_client: Callable[..., APIClient]
) -> None:
    admin.post(f"{BASE}/rewards", PACKET, format="json")
    for name in ("dora", "eli"):
        _credit(community, name, 50)
        bot.post(
            f"{BASE}/redemptions",
            {"id": f"q-{name}", "member": name, "reward": "packet-5"},
            format="json",
        )
    queue = admin.get(f"{BASE}/redemptions?status=requested").json()["results"]
    assert [r["id"] for r in queue] == ["q-eli", "q-dora"]
    assert queue[0]["member_context"]["tier"] == "newcomer"
    assert queue[0]["member_context"]["redemptions"] == {"requested": 1}
    admin.post(f"{BASE}/redemptions/q-eli/reject", {"reason": "duplicate"}, format="json")
    decided = admin.post(
        f"{BASE}/redemption-decisions",
        {"action": "approve", "ids": ["q-dora", "q-eli", "nope"]},
        format="json",
    ).json()["results"]
    assert [(d["id"], d["ok"], d["status"]) for d in decided] == [
        ("q-dora", True, "approved"),
        ("q-eli", False, None),
        ("nope", False, None),
    ]
    assert decided[1]["error"]["code"] == "invalid_transition"
    assert decided[2]["error"]["code"] == "redemption_not_found"
    no_reason = admin.post(
        f"{BASE}/redemption-decisions", {"action": "reject", "ids": ["x"]}, format="json"
    )
    assert no_reason.status_code == 400
    assert no_reason.json()["errors"][0]["field"] == "reason"
    assert (
        bot.post(
            f"{BASE}/redemption-decisions", {"action": "approve", "ids": ["q-dora"]}, format="json"
        ).status_code
        == 403
    )


@pytest.mark.parametrize("payout_id", ["³", "٣", "１"])
def test_a_unicode_digit_payout_id_is_400_not_500(bot: APIClient, payout_id: str) -> None:
    """``str.isdigit`` says yes to these, ``int`` says no to some: the fuzz found a 500."""
    response = bot.post(f"{BASE}/payouts/{payout_id}/confirm", {"reference": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "id"
