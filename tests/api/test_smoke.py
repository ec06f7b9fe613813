import pytest

pytestmark = pytest.mark.django_db


def test_check_in_scores_once_per_day(client_for):
    url = "/api/v1/communities/acme/events"
    body = {
        "id": "e1",
        "type": "check_in",
        "member": "alice",
        "occurred_at": "2026-11-23T08:00:00+08:00",
    }
    first = client_for.post(url, body, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["points"] == 5
    replay = client_for.post(url, body, format="json")
    assert replay.status_code == 200
    assert replay.json() == first.json()
    second = client_for.post(url, {**body, "id": "e2"}, format="json")
    assert second.status_code == 201
    assert second.json()["points"] == 0
    assert second.json()["awards"][0]["cap"] == "first_per_day"
    conflict = client_for.post(url, {**body, "member": "bob"}, format="json")
    assert conflict.status_code == 409
    assert conflict["Content-Type"] == "application/problem+json"
    member = client_for.get("/api/v1/communities/acme/members/alice")
    assert member.json()["balance"] == 5
    ledger = client_for.get("/api/v1/communities/acme/members/alice/ledger")
    assert ledger.json()["results"][0]["points"] == 5


def test_batch_mixed(client_for):
    url = "/api/v1/communities/acme/events/batch"
    events = [{"id": f"m{i}", "type": "message", "member": "carol"} for i in range(25)]
    events.append({"id": "bad", "type": "nope", "member": "carol"})
    events.append({"type": "message"})
    res = client_for.post(url, {"events": events}, format="json")
    assert res.status_code == 200, res.content
    results = res.json()["results"]
    assert sum(r.get("points", 0) for r in results) == 20
    assert results[-2]["status"] == "invalid"
    assert results[-1]["status"] == "invalid"
