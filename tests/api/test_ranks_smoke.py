import pytest

from points.models import Community
from points.services import rank_snapshots_refresh

pytestmark = pytest.mark.django_db


def test_leaderboard_rank_token_and_page(client_for):
    url = "/api/v1/communities/acme/events/batch"
    events = []
    for m, n in [("alice", 5), ("bob", 3), ("carol", 3), ("dave", 1)]:
        events += [
            {"id": f"{m}-{k}", "type": "share", "member": m, "meta": {"display_name": m.title()}}
            for k in range(n)
        ]
    assert client_for.post(url, {"events": events}, format="json").status_code == 200
    # what the refresh that the commit queued does (a worker, in production)
    rank_snapshots_refresh(community=Community.objects.get(slug="acme"))
    board = client_for.get("/api/v1/communities/acme/leaderboard?period=month").json()
    assert [(r["member"], r["rank"]) for r in board["results"]] == [
        ("alice", 1),
        ("bob", 2),
        ("carol", 2),
        ("dave", 4),
    ]
    rank = client_for.get("/api/v1/communities/acme/members/carol/rank?period=all_time").json()
    assert rank["rank"] == 2
    assert rank["total"] == 4
    assert [r["member"] for r in rank["above"]] == ["alice", "bob"]
    token = client_for.post("/api/v1/communities/acme/members/carol/token").json()
    page = client_for.get(token["url"])
    assert page.status_code == 200
    html = page.content.decode()
    assert "积分榜" in html
    assert "Carol" in html
    en = client_for.get(token["url"] + "?lang=en").content.decode()
    assert "Leaderboard" in en
    from rest_framework.test import APIClient

    member_client = APIClient()
    member_client.credentials(HTTP_AUTHORIZATION=f"Member {token['token']}")
    assert member_client.get("/api/v1/communities/acme/members/carol").status_code == 200
    assert member_client.get("/api/v1/communities/acme/members/alice").status_code == 404
    assert member_client.get("/api/v1/communities/acme/leaderboard").status_code == 200
    assert (
        member_client.post("/api/v1/communities/acme/events", {}, format="json").status_code == 403
    )
