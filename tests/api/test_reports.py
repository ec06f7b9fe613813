"""GET …/reports/{name}: scope admin, every report by name, unknown names and bad parameters
refused by name."""

from __future__ import annotations

import pytest

from points.models import Community
from points.services import EventInput, community_create, events_ingest

BASE = "/api/v1/communities/acme/reports"
NAMES = [
    "activity",
    "active_users",
    "retention",
    "content_mix",
    "stage",
    "usual_hours",
    "liability",
    "reward_spend",
]


@pytest.fixture
def admin(community: Community, make_client):
    events_ingest(
        community=community,
        events=[
            EventInput("e1", "check_in", "ann"),
            EventInput("e2", "message", "bob"),
            EventInput("e3", "ugc_post", "bob", target="p1", content={"text": "a useful post"}),
        ],
    )
    return make_client(community, ["admin"])


@pytest.mark.parametrize("name", NAMES)
def test_every_report_answers_json_for_an_admin_key(admin, name):
    response = admin.get(f"{BASE}/{name}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["report"] == ("content_mix" if name == "stage" else name)


def test_activity_counts_the_events_in_local_hours(admin):
    body = admin.get(f"{BASE}/activity", {"weeks": 1}).json()
    assert body["total"] == 3
    assert body["weeks"] == 1
    assert len(body["cells"]) == 7
    assert all(len(row) == 24 for row in body["cells"])
    assert body["timezone"] == "Asia/Shanghai"


def test_active_users_today_counts_the_check_in_and_the_message(admin):
    body = admin.get(f"{BASE}/active_users").json()
    assert body["daily"][-1]["dau"] == 2
    assert body["monthly"][-1]["mau"] == 2


def test_liability_gives_the_time_in_utc(admin):
    body = admin.get(f"{BASE}/liability").json()
    assert body["at"].endswith("Z")
    assert body["outstanding"] == 5 + 1 + 10


def test_unknown_report_is_a_404_problem_naming_it(admin):
    response = admin.get(f"{BASE}/vibes", {"weeks": "nonsense"})
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "report_not_found"
    assert "vibes" in body["detail"]
    assert body["errors"][0]["field"] == "name"


@pytest.mark.parametrize(
    ("name", "query", "field"),
    [
        ("activity", {"weeks": "0"}, "weeks"),
        ("activity", {"weeks": "105"}, "weeks"),
        ("activity", {"weeks": "abc"}, "weeks"),
        ("activity", {"weeks": "-1"}, "weeks"),
        ("activity", {"months": "3"}, "months"),  # not a parameter of this report
        ("retention", {"months": "37"}, "months"),
        ("retention", {"weeks": "4"}, "weeks"),
        ("usual_hours", {"days": "91"}, "days"),
        ("liability", {"weeks": "2"}, "weeks"),
        ("reward_spend", {"colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(admin, name, query, field):
    response = admin.get(f"{BASE}/{name}", query)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_bounds_are_inclusive(admin):
    assert admin.get(f"{BASE}/activity", {"weeks": "104"}).status_code == 200
    assert admin.get(f"{BASE}/retention", {"months": "1"}).status_code == 200
    assert admin.get(f"{BASE}/usual_hours", {"days": "90"}).status_code == 200


def test_reports_need_the_admin_scope(community, make_client, admin):
    reader = make_client(community, ["members:read", "events:write", "rewards:write"])
    response = reader.get(f"{BASE}/activity")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_reports_need_a_key(client, community):
    response = client.get(f"{BASE}/activity")
    assert response.status_code == 401


def test_another_communitys_admin_key_gets_404(make_client, admin):
    other = community_create(slug="other", name="Other")
    response = make_client(other, ["admin"]).get(f"{BASE}/activity")
    assert response.status_code == 404
    assert response.json()["code"] != "report_not_found"
