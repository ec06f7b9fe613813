"""GET …/events/{id} explains an event; POST …/events/{id}/reverse reverses it, once."""

from __future__ import annotations

from collections.abc import Callable

from rest_framework.test import APIClient

from points.models import Community

BASE = "/api/v1/communities/acme/events"


def test_event_detail_shows_awards_rule_version_and_entries(client_for: APIClient) -> None:
    client_for.post(BASE, {"id": "p1", "type": "ugc_post", "member": "ann"}, format="json")

    response = client_for.get(f"{BASE}/p1")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["type"], body["member"], body["rule_version"]) == (
        "p1",
        "ugc_post",
        "ann",
        1,
    )
    assert body["result"]["awards"][0]["rule"] == "points.ugc_post"
    assert [(e["kind"], e["points"], e["rule"]) for e in body["entries"]] == [
        ("award", 10, "points.ugc_post")
    ]
    assert body["reversed_at"] is None


def test_reverse_answers_201_then_200_with_the_same_body(client_for: APIClient) -> None:
    client_for.post(BASE, {"id": "p1", "type": "ugc_post", "member": "ann"}, format="json")

    first = client_for.post(f"{BASE}/p1/reverse", {"reason": "post deleted"}, format="json")
    again = client_for.post(f"{BASE}/p1/reverse", {"reason": "post deleted"}, format="json")
    member = client_for.get("/api/v1/communities/acme/members/ann").json()
    detail = client_for.get(f"{BASE}/p1").json()

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["reversed"] == [{"member": "ann", "points": -10, "owed": 0}]
    assert member["balance"] == 0
    assert detail["reversal"]["reason"] == "post deleted"
    assert [e["kind"] for e in detail["entries"]] == ["award", "reversal"]


def test_unknown_event_is_a_404_problem(client_for: APIClient) -> None:
    for response in (client_for.get(f"{BASE}/nope"), client_for.post(f"{BASE}/nope/reverse")):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "event_not_found"


def test_reversal_needs_the_events_write_scope(
    community: Community, make_client: Callable[..., APIClient]
) -> None:
    writer = make_client(community)
    writer.post(BASE, {"id": "p1", "type": "share", "member": "ann"}, format="json")
    reader = make_client(community, ["members:read"])

    assert reader.post(f"{BASE}/p1/reverse").status_code == 403
    assert reader.get(f"{BASE}/p1").status_code == 403


def test_a_key_of_another_community_cannot_see_or_reverse_its_events(
    community: Community, make_client: Callable[..., APIClient]
) -> None:
    from points.services import community_create

    make_client(community).post(BASE, {"id": "p1", "type": "share", "member": "ann"}, format="json")
    other = make_client(community_create(slug="other", name="Other"))

    assert other.get(f"{BASE}/p1").status_code == 404
    assert other.post(f"{BASE}/p1/reverse").status_code == 404
    assert other.get("/api/v1/communities/other/events/p1").status_code == 404


def test_reason_too_long_is_a_400_naming_the_field(client_for: APIClient) -> None:
    client_for.post(BASE, {"id": "p1", "type": "share", "member": "ann"}, format="json")
    response = client_for.post(f"{BASE}/p1/reverse", {"reason": "x" * 501}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "reason"
