"""The assessment endpoints: open (idempotent by id), read, owner scores, results with every
part, close; the admin scope on every operation, errors naming the field, and another
community's round answered as unknown."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from incentives.models import Assessment, AssessmentMember
from points.models import AuditLog, Community
from points.services import EventInput, community_create, events_ingest

pytestmark = pytest.mark.django_db
BASE = "/api/v1/communities/acme"
NOW = timezone.now()
BODY: dict[str, Any] = {
    "id": "core-2026-12",
    "title": "核心群门槛",
    "members": ["ann", "bea"],
    "window_start": (NOW - dt.timedelta(days=2)).isoformat(),
    "window_end": (NOW + dt.timedelta(days=1)).isoformat(),
}


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


@pytest.fixture
def bot(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["events:write", "members:read", "rewards:write"])


@pytest.fixture
def members(community: Community) -> list[str]:
    names = ["ann", "bea", "cal", "r1", "r2"]
    outcomes = events_ingest(
        community=community,
        events=[
            EventInput(f"e-{n}", "message", n, occurred_at=NOW - dt.timedelta(days=10))
            for n in names
        ],
    )
    assert all(o.status == "accepted" for o in outcomes)
    return names


def _fields(response: Any) -> set[str]:
    assert response["Content-Type"].startswith("application/problem+json")
    return {e["field"] for e in response.json().get("errors", [])}


def test_admin_opens_a_round_and_a_retry_replays_it_another_body_is_409_naming_fields(
    admin: APIClient, members: list[str]
) -> None:
    created = admin.post(f"{BASE}/assessments", BODY, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["id"] == "core-2026-12"
    assert body["status"] == "open"
    assert (body["w_peer"], body["w_owner"], body["w_activity"], body["pass_mark"]) == (
        0.6,
        0.4,
        0.0,
        60.0,
    )
    assert body["activity"] == {"check_in": 1, "share": 2, "invite": 3, "help": 2, "cap": 20}
    assert [m["member"] for m in body["members"]] == ["ann", "bea"]
    assert body["members"][0]["owner_score"] is None
    assert body["created_at"].endswith("Z")
    assert body["window_start"].endswith("Z")
    assert body["created_by"].startswith("key:")

    again = admin.post(f"{BASE}/assessments", BODY, format="json")
    assert again.status_code == 200
    assert again.json() == body
    conflict = admin.post(f"{BASE}/assessments", {**BODY, "pass_mark": 70}, format="json")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "assessment_conflict"
    assert _fields(conflict) == {"id", "pass_mark"}
    assert Assessment.objects.count() == 1
    assert AuditLog.objects.filter(action="assessment.open").count() == 1
    assert admin.get(f"{BASE}/assessments/core-2026-12").json() == body


def test_every_assessment_operation_needs_the_admin_scope(
    admin: APIClient, bot: APIClient, members: list[str]
) -> None:
    assert admin.post(f"{BASE}/assessments", BODY, format="json").status_code == 201
    one = f"{BASE}/assessments/core-2026-12"
    calls = [
        bot.post(f"{BASE}/assessments", {**BODY, "id": "other"}, format="json"),
        bot.get(one),
        bot.post(f"{one}/owner-scores", {"scores": {"ann": 4}}, format="json"),
        bot.get(f"{one}/results"),
        bot.post(f"{one}/close"),
    ]
    assert [r.status_code for r in calls] == [403] * 5
    assert all(r.json()["code"] == "forbidden" for r in calls)
    assert APIClient().get(one).status_code == 401
    assert Assessment.objects.count() == 1
    assert not AssessmentMember.objects.exclude(owner_score=None).exists()


def test_opening_errors_name_each_field(admin: APIClient, members: list[str]) -> None:
    missing = admin.post(f"{BASE}/assessments", {}, format="json")
    assert missing.status_code == 400
    assert _fields(missing) == {"id", "title", "members", "window_start", "window_end"}

    bad = admin.post(
        f"{BASE}/assessments",
        {
            **BODY,
            "window_start": "2026-12-01T00:00:00",  # naive
            "w_peer": "0.5",  # text, not a number
            "w_owner": 2,
            "pass_mark": True,
            "members": ["ann", "a/b"],
            "activity": {"share": 1.5, "likes": 1},
            "extra": 1,
        },
        format="json",
    )
    assert bad.status_code == 400
    assert _fields(bad) == {"extra"}  # unknown fields first, alone
    bad = admin.post(
        f"{BASE}/assessments",
        {**BODY, "activity": {"share": 1, "likes": 1}},
        format="json",
    )
    assert _fields(bad) == {"activity.likes"}
    bad = admin.post(
        f"{BASE}/assessments",
        {
            **BODY,
            "window_start": "2026-12-01T00:00:00",
            "w_peer": "0.5",
            "w_owner": 2,
            "pass_mark": True,
            "members": ["ann", "a/b"],
            "activity": {"share": 1.5},
        },
        format="json",
    )
    assert bad.status_code == 400
    assert _fields(bad) == {
        "window_start",
        "w_peer",
        "w_owner",
        "pass_mark",
        "members[1]",
        "activity.share",
    }

    backwards = admin.post(
        f"{BASE}/assessments",
        {**BODY, "window_start": BODY["window_end"], "window_end": BODY["window_start"]},
        format="json",
    )
    assert backwards.status_code == 400
    assert backwards.json()["code"] == "invalid_assessment"
    assert _fields(backwards) == {"window_end"}

    zero = admin.post(
        f"{BASE}/assessments", {**BODY, "w_peer": 0, "w_owner": 0, "w_activity": 0}, format="json"
    )
    assert zero.status_code == 400
    assert _fields(zero) == {"w_peer"}

    twice = admin.post(f"{BASE}/assessments", {**BODY, "members": ["ann", "ann"]}, format="json")
    assert _fields(twice) == {"members[1]"}

    unknown = admin.post(
        f"{BASE}/assessments", {**BODY, "members": ["ann", "ghost"]}, format="json"
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "member_not_found"
    assert _fields(unknown) == {"members[1]"}
    assert not Assessment.objects.exists()


def test_owner_scores_are_1_to_5_for_members_of_the_round_and_errors_name_the_member(
    admin: APIClient, members: list[str]
) -> None:
    assert admin.post(f"{BASE}/assessments", BODY, format="json").status_code == 201
    url = f"{BASE}/assessments/core-2026-12/owner-scores"

    for bad in (0, 6, "4", 4.0, True, None):
        response = admin.post(url, {"scores": {"ann": 3, "bea": bad}}, format="json")
        assert response.status_code == 400, bad
        assert _fields(response) == {"scores.bea"}, bad
    outsider = admin.post(url, {"scores": {"ann": 3, "cal": 4}}, format="json")
    assert outsider.status_code == 400
    assert outsider.json()["errors"] == [
        {"field": "scores.cal", "code": "not_in_round", "message": "is not a member of this round"}
    ]
    assert _fields(admin.post(url, {"scores": {}}, format="json")) == {"scores"}
    assert _fields(admin.post(url, {"scores": {"ann": 3}, "note": "x"}, format="json")) == {"note"}
    assert not AssessmentMember.objects.exclude(owner_score=None).exists()

    given = admin.post(url, {"scores": {"ann": 4}}, format="json")
    assert given.status_code == 200
    ann = given.json()["members"][0]
    assert (ann["member"], ann["owner_score"]) == ("ann", 4)
    assert ann["owner_scored_by"].startswith("key:")
    assert ann["owner_scored_at"].endswith("Z")

    missing = admin.post(
        f"{BASE}/assessments/nope/owner-scores", {"scores": {"ann": 4}}, format="json"
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "assessment_not_found"


def test_results_show_every_part_and_the_close_freezes_them(
    admin: APIClient, community: Community, members: list[str]
) -> None:
    assert admin.post(f"{BASE}/assessments", BODY, format="json").status_code == 201
    events_ingest(
        community=community,
        events=[
            EventInput("p1", "peer_score", "r1", target="ann", score=5),
            EventInput("p2", "peer_score", "r2", target="bea", score=2),
            EventInput("p3", "peer_score", "cal", target="bea", score=3),
        ],
    )
    admin.post(
        f"{BASE}/assessments/core-2026-12/owner-scores", {"scores": {"ann": 4}}, format="json"
    )

    response = admin.get(f"{BASE}/assessments/core-2026-12/results")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["frozen"], body["pass_mark"]) == ("open", False, 60.0)
    assert body["computed_at"].endswith("Z")
    assert body["weights"] == {"peer": 0.6, "owner": 0.4, "activity": 0.0}
    ann, bea = body["results"]
    # as in tests/incentives/test_assessments.py: C = 10/3; ann (65/18 → 65.28) and owner 4
    assert ann["member"] == "ann"
    assert ann["peer"] == {
        "ratings": 1,
        "self_ratings_ignored": 0,
        "raters": 1,
        "scores": [5],
        "method": "bayesian",
        "mean": 100.0,
        "score": 65.28,
    }
    assert ann["owner"]["score"] == 75.0
    assert ann["owner"]["scored_at"].endswith("Z")
    assert (ann["total"], ann["passed"], ann["complete"]) == (69.17, True, True)
    assert (bea["total"], bea["passed"], bea["missing"]) == (52.38, False, ["owner"])
    assert bea["activity"]["counts"] == {"check_in": 0, "share": 0, "invite": 0, "help": 0}

    closed = admin.post(f"{BASE}/assessments/core-2026-12/close")
    assert closed.status_code == 200
    frozen = closed.json()
    assert (frozen["status"], frozen["frozen"]) == ("closed", True)
    events_ingest(
        community=community,
        events=[EventInput("p4", "peer_score", "r2", target="ann", score=1)],
    )
    assert admin.get(f"{BASE}/assessments/core-2026-12/results").json() == frozen
    again = admin.post(f"{BASE}/assessments/core-2026-12/close")
    assert (again.status_code, again.json()["code"]) == (409, "assessment_closed")
    late = admin.post(
        f"{BASE}/assessments/core-2026-12/owner-scores", {"scores": {"bea": 4}}, format="json"
    )
    assert (late.status_code, late.json()["code"]) == (409, "assessment_closed")
    assert admin.get(f"{BASE}/assessments/core-2026-12").json()["status"] == "closed"


def test_reads_refuse_unknown_parameters(admin: APIClient, members: list[str]) -> None:
    assert admin.post(f"{BASE}/assessments", BODY, format="json").status_code == 201
    for suffix in ("", "/results"):
        response = admin.get(f"{BASE}/assessments/core-2026-12{suffix}?month=2026-12")
        assert response.status_code == 400
        assert _fields(response) == {"month"}


def test_another_communitys_round_is_unknown_here(
    admin: APIClient, make_client: Callable[..., APIClient], members: list[str]
) -> None:
    other = community_create(slug="other", name="Other")
    events_ingest(community=other, events=[EventInput("o1", "message", "ann")])
    theirs = make_client(other, ["admin"])
    created = theirs.post(
        "/api/v1/communities/other/assessments", {**BODY, "members": ["ann"]}, format="json"
    )
    assert created.status_code == 201
    assert admin.get(f"{BASE}/assessments/core-2026-12").status_code == 404
    assert admin.get(f"{BASE}/assessments/core-2026-12/results").status_code == 404
    # the same id is free in this community
    assert admin.post(f"{BASE}/assessments", BODY, format="json").status_code == 201
