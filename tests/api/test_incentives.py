"""The incentive endpoints: roles, tiers and their history, tier locks, KOC list and decisions,
honor rolls; scopes, member tokens, and errors naming the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from incentives.honors import honor_roll_publish
from incentives.koc import koc_detect
from incentives.models import MemberRole
from points.models import AuditLog, Community
from points.services import EventInput, events_ingest, member_token_issue
from tests.incentives.conftest import member

pytestmark = pytest.mark.django_db
BASE = "/api/v1/communities/acme"
SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


@pytest.fixture
def bot(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["events:write", "members:read"])


def _events(community: Community, *events: EventInput) -> None:
    assert all(
        o.status == "accepted" for o in events_ingest(community=community, events=list(events))
    )


def test_admin_sets_a_role_which_is_audited(
    community: Community, admin: APIClient, bot: APIClient
) -> None:
    _events(community, EventInput("e1", "check_in", "ann"))
    assert bot.put(f"{BASE}/members/ann/role", {"role": "kol"}, format="json").status_code == 403
    response = admin.put(f"{BASE}/members/ann/role", {"role": "kol"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"member": "ann", "role": "kol"}
    assert MemberRole.objects.get(member=member("ann")).role == "kol"
    assert AuditLog.objects.filter(action="role.set", target="ann").count() == 1
    bad = admin.put(f"{BASE}/members/ann/role", {"role": "king"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "role"
    assert (
        admin.put(f"{BASE}/members/nobody/role", {"role": "kol"}, format="json").status_code == 404
    )


def test_ladder_is_read_by_bots_and_replaced_by_admins_with_errors_naming_the_field(
    community: Community, admin: APIClient, bot: APIClient
) -> None:
    ladder = bot.get(f"{BASE}/tiers").json()
    assert [t["code"] for t in ladder["tiers"]] == ["newcomer", "active", "core", "ambassador"]
    ladder["tiers"][1]["min_points"] = 50
    assert bot.put(f"{BASE}/tiers", ladder, format="json").status_code == 403
    assert admin.put(f"{BASE}/tiers", ladder, format="json").status_code == 200
    assert bot.get(f"{BASE}/tiers").json()["tiers"][1]["min_points"] == 50
    ladder["tiers"][2]["min_points"] = 2**40
    ladder["tiers"][0]["min_points"] = 5
    bad = admin.put(f"{BASE}/tiers", ladder, format="json")
    assert bad.status_code == 400
    assert bad["Content-Type"].startswith("application/problem+json")
    assert {e["field"] for e in bad.json()["errors"]} == {"tiers[2].min_points", "tiers[0]"}


def test_member_tiers_shows_progress_and_history_and_a_lock(
    community: Community, admin: APIClient, bot: APIClient
) -> None:
    _events(community, EventInput("e1", "check_in", "bea"))
    locked = admin.put(
        f"{BASE}/members/bea/tier-lock",
        {"locked": True, "tier": "core", "reason": "moderator"},
        format="json",
    )
    assert locked.status_code == 200
    assert locked.json()["tier"] == "core"
    assert locked.json()["locked"] is True
    body = bot.get(f"{BASE}/members/bea/tiers").json()
    assert body["tier_name"] == {"zh": "核心成员", "en": "Core"}
    assert body["next_tier"] == "ambassador"
    assert body["history"][0]["kind"] == "lock"
    assert body["history"][0]["reason"] == "moderator"
    unknown = admin.put(
        f"{BASE}/members/bea/tier-lock", {"locked": True, "tier": "king"}, format="json"
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "tier"


def test_member_token_reads_its_own_tiers_only(community: Community, bot: APIClient) -> None:
    _events(community, EventInput("e1", "check_in", "cat"), EventInput("e2", "check_in", "dan"))
    token, _ = member_token_issue(member=member("cat"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Member {token}")
    assert client.get(f"{BASE}/members/cat/tiers").status_code == 200
    assert client.get(f"{BASE}/members/dan/tiers").status_code == 404
    assert client.get(f"{BASE}/koc").status_code == 403


def test_koc_list_confirm_and_dismiss(community: Community, admin: APIClient) -> None:
    now = dt.datetime.now(tz=SH)
    events = [
        EventInput(
            f"r{d}-{k}",
            "reaction",
            f"fan{(d * 3 + k) % 40}",
            now - dt.timedelta(days=d, hours=1),
            target=f"star-{d}",
            content={"author": "star"},
        )
        for d in range(14)
        for k in range(3)
    ]
    events += [
        EventInput(f"x{i}", "message", f"quiet{i}", now - dt.timedelta(hours=2)) for i in range(20)
    ]
    _events(community, *events)
    koc_detect(community=community)
    listed = admin.get(f"{BASE}/koc").json()["results"]
    assert [c["member"] for c in listed] == ["star"]
    assert listed[0]["distinct_reactors"] == 40
    assert listed[0]["status"] == "candidate"
    assert admin.get(f"{BASE}/koc?status=bogus").status_code == 400
    confirmed = admin.post(f"{BASE}/koc/star/confirm", {"note": "great"}, format="json")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "confirmed"
    assert admin.get(f"{BASE}/koc?status=confirmed").json()["results"][0]["member"] == "star"
    assert admin.post(f"{BASE}/koc/fan1/dismiss", {}, format="json").status_code == 409
    assert admin.post(f"{BASE}/koc/nobody/confirm", {}, format="json").status_code == 404


def test_honor_roll_endpoint(community: Community, bot: APIClient) -> None:
    _events(community, EventInput("e1", "share", "eve", dt.datetime(2026, 10, 3, 9, tzinfo=SH)))
    assert bot.get(f"{BASE}/honor-rolls/2026-10").status_code == 404
    honor_roll_publish(
        community=community, month="2026-10", now=dt.datetime(2026, 11, 2, tzinfo=SH)
    )
    body = bot.get(f"{BASE}/honor-rolls/2026-10").json()
    assert body["month"] == "2026-10"
    assert body["categories"]["top_points"][0]["member"] == "eve"
    bad = bot.get(f"{BASE}/honor-rolls/october")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "month"
