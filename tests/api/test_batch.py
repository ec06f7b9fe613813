"""POST /api/v1/communities/{c}/events/batch: independent items, input order, envelope limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from points.models import Event, LedgerEntry, Member

pytestmark = pytest.mark.django_db

URL = "/api/v1/communities/acme/events/batch"
SINGLE = "/api/v1/communities/acme/events"


def _counts() -> tuple[int, int, int]:
    return Event.objects.count(), LedgerEntry.objects.count(), Member.objects.count()


def _assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def _share(client_id: str, member: str = "bob", **extra: Any) -> dict[str, Any]:
    return {"id": client_id, "type": "share", "member": member, **extra}


def test_mixed_batch_answers_each_item_independently_in_input_order(client_for):
    stored = client_for.post(SINGLE, _share("old-1"), format="json")
    client_for.post(SINGLE, _share("old-2"), format="json")
    assert stored.status_code == 201
    events = [
        _share("new-1"),
        {"id": "bad-type", "type": "nope", "member": "bob"},
        _share("old-1"),  # replay of a stored event
        {"type": "share", "member": "bob"},  # no id
        _share("old-2", member="carol"),  # conflict with a stored event
        {"id": "bad-score", "type": "message", "member": "bob", "score": 2},
        "not an object",
        _share("new-2", member="carol"),
    ]

    response = client_for.post(URL, {"events": events}, format="json")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        ("new-1", "accepted"),
        ("bad-type", "invalid"),
        ("old-1", "replayed"),
        (None, "invalid"),
        ("old-2", "conflict"),
        ("bad-score", "invalid"),
        (None, "invalid"),
        ("new-2", "accepted"),
    ]
    assert results[1]["error"]["errors"][0]["field"] == "type"
    assert results[1]["error"]["errors"][0]["code"] == "unknown_event_type"
    assert results[2]["points"] == stored.json()["points"]
    assert results[2]["balance"] == stored.json()["balance"]
    assert results[2]["awards"] == stored.json()["awards"]
    assert results[3]["error"]["errors"][0]["field"] == "id"
    assert results[4]["error"]["code"] == "event_conflict"
    assert results[5]["error"]["errors"][0]["field"] == "score"
    assert results[6]["error"]["code"] == "validation_error"
    for item in (results[0], results[7]):
        assert item["points"] > 0
        assert item["awards"]
        assert "error" not in item
    for item in results[1:7]:
        if item["status"] != "replayed":
            assert "points" not in item
    assert set(Event.objects.values_list("client_id", flat=True)) == {
        "old-1",
        "old-2",
        "new-1",
        "new-2",
    }
    assert Member.objects.get(external_id="carol").balance == results[7]["balance"]
    bob = Member.objects.get(external_id="bob")
    assert bob.balance == results[0]["balance"]
    assert bob.balance == sum(e.points for e in LedgerEntry.objects.filter(member=bob))


def test_batch_conflict_item_reports_event_conflict_with_id_field(client_for):
    client_for.post(SINGLE, _share("e-1"), format="json")

    results = client_for.post(
        URL, {"events": [_share("e-1", group="other")]}, format="json"
    ).json()["results"]

    assert results[0]["status"] == "conflict"
    assert results[0]["error"]["code"] == "event_conflict"
    assert results[0]["error"]["errors"][0]["field"] == "id"


def test_duplicate_id_inside_one_batch_is_scored_once(client_for):
    events = [_share("dup"), _share("dup"), _share("dup", member="carol")]

    results = client_for.post(URL, {"events": events}, format="json").json()["results"]

    assert [r["status"] for r in results] == ["accepted", "replayed", "conflict"]
    assert results[1]["points"] == results[0]["points"]
    assert results[2]["error"]["code"] == "event_conflict"
    assert Event.objects.filter(client_id="dup").count() == 1
    assert not Member.objects.filter(external_id="carol").exists()


def test_replaying_a_whole_batch_returns_the_same_points_and_writes_nothing(client_for):
    events = [_share(f"r-{i}", member=f"m{i % 3}") for i in range(9)]
    first = client_for.post(URL, {"events": events}, format="json").json()["results"]
    before = _counts()

    again = client_for.post(URL, {"events": events}, format="json").json()["results"]

    assert [r["status"] for r in first] == ["accepted"] * 9
    assert [r["status"] for r in again] == ["replayed"] * 9
    assert [(r["id"], r["points"], r["balance"]) for r in again] == [
        (r["id"], r["points"], r["balance"]) for r in first
    ]
    assert _counts() == before


def test_items_are_scored_in_the_order_given(client_for):
    events = [{"id": f"m-{i}", "type": "message", "member": "dave"} for i in range(5)]

    results = client_for.post(URL, {"events": events}, format="json").json()["results"]

    balances = [r["balance"] for r in results]
    assert balances == sorted(balances)
    assert balances[-1] == Member.objects.get(external_id="dave").balance


def test_batch_of_1000_events_is_accepted(client_for):
    events = [
        {"id": f"k-{i:04d}", "type": "message", "member": f"member-{i % 50}"} for i in range(1000)
    ]

    response = client_for.post(URL, {"events": events}, format="json")

    assert response.status_code == 200, response.content[:500]
    results = response.json()["results"]
    assert len(results) == 1000
    assert [r["id"] for r in results] == [e["id"] for e in events]
    assert {r["status"] for r in results} == {"accepted"}
    assert Event.objects.count() == 1000
    assert Member.objects.count() == 50


def test_batch_over_1000_events_is_400_naming_events_and_writes_nothing(client_for, community):
    assert settings.EVENTS_BATCH_MAX == 1000
    events = [{"id": f"k-{i}", "type": "message", "member": "m"} for i in range(1001)]
    before = _counts()

    response = client_for.post(URL, {"events": events}, format="json")

    body = _assert_problem(response, 400, "validation_error")
    assert [e["field"] for e in body["errors"]] == ["events"]
    assert body["errors"][0]["code"] == "max_length"
    assert _counts() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"events": []}, "empty"),
        ({}, "required"),
        ({"event": [{"id": "a", "type": "message", "member": "m"}]}, "required"),
        ({"events": None}, "null"),
        ({"events": {"id": "a", "type": "message", "member": "m"}}, "not_a_list"),
        ({"events": "a"}, "not_a_list"),
    ],
    ids=["empty-list", "missing", "misspelt", "null", "object", "string"],
)
def test_bad_batch_envelope_is_400_naming_events_and_writes_nothing(
    client_for, community, body, code
):
    before = _counts()

    response = client_for.post(URL, body, format="json")

    problem = _assert_problem(response, 400, "validation_error")
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("events", code)]
    assert _counts() == before


def test_batch_body_that_is_a_list_is_400(client_for, community):
    response = client_for.post(URL, [_share("a")], format="json")

    _assert_problem(response, 400, "validation_error")
    assert Event.objects.count() == 0


def test_malformed_batch_json_is_400_malformed_json(client_for, community):
    response = client_for.post(URL, data=b'{"events": [', content_type="application/json")

    _assert_problem(response, 400, "malformed_json")


def test_batch_body_over_2_mb_is_413(client_for, community):
    filler = "a" * 3000
    events = [
        {"id": f"b-{i}", "type": "message", "member": "m", "meta": {"x": filler}}
        for i in range(settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 3000 + 1)
    ][:1000]
    raw = json.dumps({"events": events}).encode()
    assert len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = client_for.post(URL, data=raw, content_type="application/json")

    _assert_problem(response, 413, "payload_too_large")
    assert Event.objects.count() == 0


def test_batch_of_only_invalid_items_is_200_and_writes_nothing(client_for, community):
    before = _counts()

    response = client_for.post(
        URL,
        {"events": [{"id": "x", "type": "nope", "member": "m"}, {"id": "y"}]},
        format="json",
    )

    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["invalid", "invalid"]
    assert _counts() == before


def test_message_daily_cap_applies_inside_one_batch(client_for):
    events = [{"id": f"m{i}", "type": "message", "member": "carol"} for i in range(25)]

    results = client_for.post(URL, {"events": events}, format="json").json()["results"]

    assert sum(r["points"] for r in results) == 20
    assert results[-1]["points"] == 0
    assert results[-1]["awards"][0]["capped"] is True
    assert Member.objects.get(external_id="carol").balance == 20


def test_item_whose_meta_postgres_cannot_store_is_invalid_and_the_others_are_scored(client_for):
    events = [
        {"id": "nul", "type": "message", "member": "m", "meta": {"x": "\u0000"}},
        {"id": "ok", "type": "message", "member": "m"},
    ]

    response = client_for.post(URL, {"events": events}, format="json")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["invalid", "accepted"]
    assert results[0]["error"]["errors"][0]["field"] == "meta.x"
    assert list(Event.objects.values_list("client_id", flat=True)) == ["ok"]
