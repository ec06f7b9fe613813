"""The refresh (换血) endpoints: a month's candidates with their figures, confirm and spare;
scope admin, errors naming the field, 404 and 409 problems."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from incentives.models import RefreshCandidate, RefreshStatus
from incentives.refresh import refresh_run
from points.models import AuditLog, Community
from points.services import EventInput, events_ingest
from points.timeutils import community_zone, today

pytestmark = pytest.mark.django_db
BASE = "/api/v1/communities/acme"


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["admin"])


@pytest.fixture
def bot(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["events:write", "members:read", "rewards:write"])


def _months(community: Community) -> tuple[dt.datetime, dt.datetime, str, str]:
    zone = community_zone(community.timezone)
    this = today(community.timezone).replace(day=1)
    last = (this - dt.timedelta(days=1)).replace(day=1)
    return (
        dt.datetime.combine(last, dt.time(1), tzinfo=zone),
        dt.datetime.combine(this, dt.time(1), tzinfo=zone),
        f"{last:%Y-%m}",
        f"{this:%Y-%m}",
    )


@pytest.fixture
def flagged(community: Community) -> tuple[str, str]:
    """Two runs a month apart: 'sam' and 'sue' silent twice (to_refresh), 'ivy' silent only
    this month (at_risk); five regulars check in every other day."""
    first, now, last_month, this_month = _months(community)
    regulars = [f"reg{i}" for i in range(5)]
    events = [
        EventInput(f"j-{who}", "share", who, occurred_at=now - dt.timedelta(days=80))
        for who in (*regulars, "sam", "sue")
    ]
    events += [
        EventInput(f"c-{who}-{d}", "check_in", who, occurred_at=now - dt.timedelta(days=d, hours=1))
        for who in regulars
        for d in range(0, 70, 2)
    ]
    events.append(EventInput("j-ivy", "share", "ivy", occurred_at=first - dt.timedelta(days=20)))
    events += [
        EventInput(f"c-ivy-{d}", "check_in", "ivy", occurred_at=first - dt.timedelta(days=d))
        for d in range(1, 10)
    ]
    assert all(o.status == "accepted" for o in events_ingest(community=community, events=events))
    refresh_run(community=community, now=first)
    refresh_run(community=community, now=now)
    statuses = dict(
        RefreshCandidate.objects.filter(period=this_month).values_list(
            "member__external_id", "status"
        )
    )
    assert statuses == {"sam": "to_refresh", "sue": "to_refresh", "ivy": "at_risk"}
    return last_month, this_month


def test_admin_lists_a_months_candidates_least_active_first_with_their_figures(
    admin: APIClient, bot: APIClient, flagged: tuple[str, str]
) -> None:
    last_month, this_month = flagged
    assert bot.get(f"{BASE}/refresh-candidates?month={this_month}").status_code == 403
    response = admin.get(f"{BASE}/refresh-candidates?month={this_month}")
    assert response.status_code == 200
    body = response.json()
    assert [(r["member"], r["status"]) for r in body["results"]] == [
        ("ivy", "at_risk"),
        ("sam", "to_refresh"),
        ("sue", "to_refresh"),
    ]
    assert body["next"] is None
    ivy = body["results"][0]
    assert ivy["month"] == this_month
    assert (ivy["speaking_days"], ivy["check_in_days"]) == (0, 0)
    assert ivy["figures"]["min_check_in_days"] == 4
    recovery = dt.datetime.fromisoformat(ivy["recovery_until"])
    assert recovery - dt.datetime.fromisoformat(ivy["flagged_at"]) == dt.timedelta(days=7)
    assert body["results"][1]["recovery_until"] is None
    # the default month is the current one; the status filter and the previous month
    assert admin.get(f"{BASE}/refresh-candidates").json() == body
    at_risk = admin.get(f"{BASE}/refresh-candidates?status=at_risk").json()["results"]
    assert [r["member"] for r in at_risk] == ["ivy"]
    before = admin.get(f"{BASE}/refresh-candidates?month={last_month}").json()["results"]
    assert {(r["member"], r["status"]) for r in before} == {
        ("sam", "at_risk"),
        ("sue", "at_risk"),
    }


def test_the_list_pages_with_a_cursor(admin: APIClient, flagged: tuple[str, str]) -> None:
    _, this_month = flagged
    first = admin.get(f"{BASE}/refresh-candidates?month={this_month}&page_size=2").json()
    assert [r["member"] for r in first["results"]] == ["ivy", "sam"]
    assert first["next"]
    second = admin.get(first["next"]).json()
    assert [r["member"] for r in second["results"]] == ["sue"]
    assert second["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("month=2026-13", "month"),
        ("month=26-1", "month"),
        ("status=gone", "status"),
        ("page_size=0", "page_size"),
        ("cursor=%%%", "cursor"),
        ("colour=red", "colour"),
    ],
)
def test_list_errors_name_the_parameter(
    admin: APIClient, community: Community, query: str, field: str
) -> None:
    response = admin.get(f"{BASE}/refresh-candidates?{query}")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_confirm_a_to_refresh_member_is_audited(
    admin: APIClient, bot: APIClient, flagged: tuple[str, str]
) -> None:
    _, this_month = flagged
    url = f"{BASE}/refresh-candidates/sam/confirm"
    assert bot.post(url, {"month": this_month}, format="json").status_code == 403
    response = admin.post(url, {"month": this_month, "note": "two silent months"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["member"], body["status"], body["note"]) == (
        "sam",
        "confirmed",
        "two silent months",
    )
    assert body["decided_by"].startswith("key:")
    audit = AuditLog.objects.get(action="refresh.confirm", target="sam")
    assert audit.actor == body["decided_by"]
    again = admin.post(url, {"month": this_month}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "refresh_not_decidable"


def test_spare_from_at_risk_and_confirm_refused_from_at_risk(
    admin: APIClient, flagged: tuple[str, str]
) -> None:
    _, this_month = flagged
    refused = admin.post(
        f"{BASE}/refresh-candidates/ivy/confirm", {"month": this_month}, format="json"
    )
    assert refused.status_code == 409
    assert refused["Content-Type"].startswith("application/problem+json")
    spared = admin.post(
        f"{BASE}/refresh-candidates/ivy/spare", {"month": this_month}, format="json"
    )
    assert spared.status_code == 200
    assert spared.json()["status"] == RefreshStatus.SPARED
    assert AuditLog.objects.filter(action="refresh.spare", target="ivy").count() == 1


def test_decision_errors_name_the_field_and_unknown_rows_are_404(
    admin: APIClient, flagged: tuple[str, str]
) -> None:
    _, this_month = flagged
    url = f"{BASE}/refresh-candidates/sam/spare"
    for body, fields in (
        ({}, ["month"]),
        ({"month": 202612}, ["month"]),
        ({"month": "2026-13"}, ["month"]),
        ({"month": this_month, "note": "x" * 501}, ["note"]),
        ({"month": this_month, "reason": "x"}, ["reason"]),
    ):
        response = admin.post(url, body, format="json")
        assert response.status_code == 400, body
        assert [e["field"] for e in response.json()["errors"]] == fields, body
    missing = admin.post(
        f"{BASE}/refresh-candidates/reg0/spare", {"month": this_month}, format="json"
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "refresh_candidate_not_found"
    nobody = admin.post(
        f"{BASE}/refresh-candidates/nobody/spare", {"month": this_month}, format="json"
    )
    assert nobody.status_code == 404
    assert nobody.json()["code"] == "member_not_found"
    assert not AuditLog.objects.filter(action__startswith="refresh.").exists()
