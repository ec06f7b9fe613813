"""POST /api/v1/communities/{c}/events: the result body, idempotency, and every refusal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from points.models import DailyTally, Event, LedgerEntry, Member, PeriodTotal

pytestmark = pytest.mark.django_db

URL = "/api/v1/communities/acme/events"
# A recent local day: events may be back-dated only so far (the backfill limit).
DAY = (timezone.now() - dt.timedelta(days=30)).date()
NEXT_DAY = DAY + dt.timedelta(days=1)


def _counts() -> dict[str, int]:
    return {
        "events": Event.objects.count(),
        "entries": LedgerEntry.objects.count(),
        "members": Member.objects.count(),
        "tallies": DailyTally.objects.count(),
        "period_totals": PeriodTotal.objects.count(),
    }


def _assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith("#" + code)
    assert body["title"]
    assert body["detail"]
    return body


def _fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


CHECK_IN = {
    "id": "evt-1",
    "type": "check_in",
    "member": "alice",
    "occurred_at": f"{DAY}T08:00:00+08:00",
    "meta": {"display_name": "Alice"},
}


def test_new_event_returns_201_with_id_status_points_balance_rule_version_awards(client_for):
    response = client_for.post(URL, CHECK_IN, format="json")

    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body == {
        "id": "evt-1",
        "status": "accepted",
        "points": 5,
        "balance": 5,
        "rule_version": 1,
        "awards": [
            {
                "rule": "points.check_in",
                "points": 5,
                "base": 5,
                "gross": 5,
                "capped": False,
                "cap": None,
                "member": "alice",
            }
        ],
    }
    event = Event.objects.get(client_id="evt-1")
    assert event.points == 5
    assert event.member.external_id == "alice"
    assert event.member.display_name == "Alice"
    assert list(LedgerEntry.objects.values_list("points", "balance_after")) == [(5, 5)]


def test_balance_in_result_accumulates_over_events(client_for):
    first = client_for.post(URL, {"id": "s-1", "type": "share", "member": "bob"}, format="json")
    second = client_for.post(URL, {"id": "s-2", "type": "share", "member": "bob"}, format="json")

    assert first.status_code == second.status_code == 201
    assert second.json()["balance"] == first.json()["points"] + second.json()["points"]
    assert Member.objects.get(external_id="bob").balance == second.json()["balance"]


def test_replay_of_same_id_and_body_returns_200_with_identical_body_and_writes_nothing(
    client_for,
):
    first = client_for.post(URL, CHECK_IN, format="json")
    before = _counts()

    replay = client_for.post(URL, CHECK_IN, format="json")

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.json() == {**first.json(), "status": "replayed"}
    assert _counts() == before
    assert Member.objects.get(external_id="alice").balance == 5


def test_replay_with_same_instant_in_another_offset_is_a_replay(client_for):
    first = client_for.post(URL, CHECK_IN, format="json")
    same_instant = {**CHECK_IN, "occurred_at": f"{DAY}T00:00:00Z"}

    replay = client_for.post(URL, same_instant, format="json")

    assert first.status_code == 201
    assert replay.status_code == 200
    assert replay.json() == {**first.json(), "status": "replayed"}


@pytest.mark.parametrize(
    "change",
    [
        {"member": "bob"},
        {"type": "message"},
        {"occurred_at": f"{DAY}T09:00:00+08:00"},
        {"meta": {"display_name": "Alicia"}},
        {"group": "g-2"},
    ],
    ids=["member", "type", "occurred_at", "meta", "group"],
)
def test_same_id_with_different_body_is_409_event_conflict_and_writes_nothing(client_for, change):
    assert client_for.post(URL, CHECK_IN, format="json").status_code == 201
    before = _counts()

    response = client_for.post(URL, {**CHECK_IN, **change}, format="json")

    body = _assert_problem(response, 409, "event_conflict")
    assert "id" in _fields(body)
    assert _counts() == before
    assert Member.objects.get(external_id="alice").display_name == "Alice"


def test_malformed_json_is_400_malformed_json_and_writes_nothing(client_for, community):
    before = _counts()

    response = client_for.post(URL, data=b'{"id": "x", "type": ', content_type="application/json")

    _assert_problem(response, 400, "malformed_json")
    assert _counts() == before


def test_invalid_utf8_body_is_400_malformed_json(client_for, community):
    response = client_for.post(URL, data=b'{"id": "\xff"}', content_type="application/json")

    _assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize("raw", ["[]", "[1, 2]", '"check_in"', "42", "true", "null"])
def test_body_that_is_not_a_json_object_is_400_and_writes_nothing(client_for, community, raw):
    before = _counts()

    response = client_for.post(URL, data=raw, content_type="application/json")

    _assert_problem(response, 400, "validation_error")
    assert _counts() == before


def test_empty_body_is_400_naming_the_required_fields(client_for, community):
    response = client_for.post(URL, data=b"", content_type="application/json")

    body = _assert_problem(response, 400, "validation_error")
    assert {"id", "type", "member"} <= _fields(body)


def test_unknown_event_type_is_400_on_field_type_and_writes_nothing(client_for, community):
    before = _counts()

    response = client_for.post(
        URL, {"id": "u-1", "type": "dance", "member": "alice"}, format="json"
    )

    body = _assert_problem(response, 400, "validation_error")
    assert body["errors"] == [
        {"field": "type", "code": "unknown_event_type", "message": "unknown event type 'dance'"}
    ]
    assert _counts() == before


def test_unknown_event_type_can_be_posted_again_once_it_is_fixed(client_for, community):
    bad = client_for.post(URL, {"id": "u-1", "type": "dance", "member": "alice"}, format="json")
    good = client_for.post(URL, {"id": "u-1", "type": "message", "member": "alice"}, format="json")

    assert bad.status_code == 400
    assert good.status_code == 201


def _future(minutes: int) -> str:
    return (timezone.now() + dt.timedelta(minutes=minutes)).isoformat()


INVALID_BODIES: list[tuple[str, dict[str, Any], str, str | None]] = [
    # (case id, body, field named in errors[], its code or None for "any")
    ("member-as-int-list", {"id": "a", "type": "message", "member": [1, 2]}, "member", None),
    ("member-as-object", {"id": "a", "type": "message", "member": {"x": 1}}, "member", None),
    ("score-not-int", {"id": "a", "type": "peer_score", "member": "m", "target": "t",
                       "score": "x"}, "score", "invalid"),
    ("score-too-high", {"id": "a", "type": "peer_score", "member": "m", "target": "t",
                        "score": 6}, "score", "max_value"),
    ("score-too-low", {"id": "a", "type": "peer_score", "member": "m", "target": "t",
                       "score": 0}, "score", "min_value"),
    ("type-not-string", {"id": "a", "type": 5, "member": "m"}, "type", None),
    ("type-bad-pattern", {"id": "a", "type": "Check In", "member": "m"}, "type", "invalid"),
    ("id-with-space", {"id": "a b", "type": "message", "member": "m"}, "id", "invalid"),
    ("id-too-long", {"id": "a" * 129, "type": "message", "member": "m"}, "id", None),
    ("member-too-long", {"id": "a", "type": "message", "member": "m" * 65}, "member",
     "max_length"),
    ("meta-not-object", {"id": "a", "type": "message", "member": "m", "meta": [1]}, "meta",
     None),
    ("content-bad-kind", {"id": "a", "type": "share", "member": "m",
                          "content": {"kind": "spam"}}, "content.kind", "invalid_choice"),
    ("content-negative-length", {"id": "a", "type": "ugc_post", "member": "m",
                                 "content": {"length": -1}}, "content.length", "min_value"),
    ("missing-id", {"type": "message", "member": "m"}, "id", "required"),
    ("missing-type", {"id": "a", "member": "m"}, "type", "required"),
    ("missing-member", {"id": "a", "type": "message"}, "member", "required"),
    ("null-member", {"id": "a", "type": "message", "member": None}, "member", "null"),
    ("empty-member", {"id": "a", "type": "message", "member": ""}, "member", "blank"),
    ("naive-occurred-at", {"id": "a", "type": "message", "member": "m",
                           "occurred_at": f"{DAY}T08:00:00"}, "occurred_at", "naive"),
    ("date-only-occurred-at", {"id": "a", "type": "message", "member": "m",
                               "occurred_at": f"{DAY}"}, "occurred_at", None),
    ("garbage-occurred-at", {"id": "a", "type": "message", "member": "m",
                             "occurred_at": "yesterday"}, "occurred_at", "invalid"),
    ("meta-nul-in-value", {"id": "a", "type": "message", "member": "m",
                           "meta": {"x": "a\u0000b"}}, "meta.x", "null_characters_not_allowed"),
    ("meta-nul-in-key", {"id": "a", "type": "message", "member": "m",
                         "meta": {"\u0000": 1}}, "meta.\\x00", "null_characters_not_allowed"),
    ("meta-nul-nested", {"id": "a", "type": "message", "member": "m",
                         "meta": {"l": [{"y": "\u0000"}]}}, "meta.l[0].y",
     "null_characters_not_allowed"),
    ("id-nul", {"id": "a\u0000", "type": "message", "member": "m"}, "id", None),
    ("member-nul", {"id": "a", "type": "message", "member": "m\u0000"}, "member", None),
    ("occurred-at-overflow", {"id": "a", "type": "message", "member": "m",
                              "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at", None),
    ("peer-score-without-score", {"id": "a", "type": "peer_score", "member": "m",
                                  "target": "t"}, "score", None),
    ("score-on-message", {"id": "a", "type": "message", "member": "m", "score": 3}, "score",
     None),
    ("invite-without-target", {"id": "a", "type": "invite", "member": "m"}, "target", None),
    ("reaction-without-target", {"id": "a", "type": "reaction", "member": "m"}, "target",
     None),
    ("peer-score-without-target", {"id": "a", "type": "peer_score", "member": "m",
                                   "score": 4}, "target", None),
    ("self-invite", {"id": "a", "type": "invite", "member": "m", "target": "m"}, "target",
     None),
    ("self-peer-score", {"id": "a", "type": "peer_score", "member": "m", "target": "m",
                         "score": 5}, "target", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [case[1:] for case in INVALID_BODIES],
    ids=[case[0] for case in INVALID_BODIES],
)
def test_invalid_event_is_400_naming_the_field_and_writes_nothing(
    client_for, community, body, field, code
):
    before = _counts()

    response = client_for.post(URL, body, format="json")

    problem = _assert_problem(response, 400, "validation_error")
    named = [e for e in problem["errors"] if e["field"] == field]
    assert named, problem["errors"]
    if code is not None:
        assert named[0]["code"] == code
    assert all(e["message"] for e in problem["errors"])
    assert _counts() == before


def test_occurred_at_more_than_five_minutes_in_the_future_is_400_in_future(client_for, community):
    before = _counts()

    response = client_for.post(
        URL, {"id": "f-1", "type": "message", "member": "m", "occurred_at": _future(60)},
        format="json",
    )  # fmt: skip

    problem = _assert_problem(response, 400, "validation_error")
    assert problem["errors"] == [
        {"field": "occurred_at", "code": "in_future", "message": "is in the future"}
    ]
    assert _counts() == before


def test_occurred_at_within_the_clock_skew_allowance_is_accepted(client_for):
    response = client_for.post(
        URL, {"id": "f-1", "type": "message", "member": "m", "occurred_at": _future(2)},
        format="json",
    )  # fmt: skip

    assert response.status_code == 201, response.content


def test_occurred_at_in_utc_with_z_suffix_is_accepted(client_for):
    response = client_for.post(
        URL,
        {"id": "z-1", "type": "message", "member": "m", "occurred_at": f"{DAY}T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert Event.objects.get(client_id="z-1").occurred_at == dt.datetime.combine(
        DAY, dt.time(), tzinfo=dt.UTC
    )


def test_occurred_at_defaults_to_the_time_received(client_for):
    before = timezone.now()

    response = client_for.post(URL, {"id": "n-1", "type": "message", "member": "m"}, format="json")

    assert response.status_code == 201
    occurred = Event.objects.get(client_id="n-1").occurred_at
    assert before <= occurred <= timezone.now()


def _meta_of_size(size: int) -> dict[str, str]:
    overhead = len(json.dumps({"note": ""}).encode())
    meta = {"note": "x" * (size - overhead)}
    assert len(json.dumps(meta, ensure_ascii=False).encode()) == size
    return meta


def test_meta_of_exactly_4096_bytes_is_accepted(client_for):
    body = {"id": "meta-ok", "type": "message", "member": "m", "meta": _meta_of_size(4096)}

    response = client_for.post(URL, body, format="json")

    assert response.status_code == 201, response.content


def test_meta_larger_than_4_kb_is_400_too_large_and_writes_nothing(client_for, community):
    before = _counts()
    body = {"id": "meta-big", "type": "message", "member": "m", "meta": _meta_of_size(4097)}

    response = client_for.post(URL, body, format="json")

    problem = _assert_problem(response, 400, "validation_error")
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("meta", "too_large")]
    assert _counts() == before


def test_meta_size_counts_utf8_bytes_not_characters(client_for, community):
    # 1,400 CJK characters are 4,200 bytes in UTF-8: over the limit though under 4,096 chars.
    body = {"id": "meta-cjk", "type": "message", "member": "m", "meta": {"n": "积" * 1400}}

    response = client_for.post(URL, body, format="json")

    _assert_problem(response, 400, "validation_error")


def test_body_over_2_mb_is_413_payload_too_large_and_writes_nothing(client_for, community):
    before = _counts()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps(
        {"id": "huge", "type": "message", "member": "m", "meta": {"x": "a" * limit}}
    ).encode()
    assert len(body) > limit

    response = client_for.post(URL, data=body, content_type="application/json")

    _assert_problem(response, 413, "payload_too_large")
    assert _counts() == before


def test_display_name_from_meta_is_stored_on_the_member(client_for):
    client_for.post(
        URL, {"id": "d-1", "type": "message", "member": "m", "meta": {"display_name": "小明"}},
        format="json",
    )  # fmt: skip

    assert Member.objects.get(external_id="m").display_name == "小明"


def test_second_check_in_same_local_day_scores_nothing_with_cap_first_per_day(client_for):
    first = client_for.post(URL, CHECK_IN, format="json")
    same_day = {**CHECK_IN, "id": "evt-2", "occurred_at": f"{DAY}T23:59:00+08:00"}
    next_day = {**CHECK_IN, "id": "evt-3", "occurred_at": f"{NEXT_DAY}T00:00:00+08:00"}

    second = client_for.post(URL, same_day, format="json")
    third = client_for.post(URL, next_day, format="json")

    assert first.json()["points"] == 5
    assert second.status_code == 201
    assert second.json()["points"] == 0
    assert second.json()["awards"][0]["cap"] == "first_per_day"
    assert second.json()["balance"] == 5
    assert third.json()["points"] == 5
    assert LedgerEntry.objects.count() == 2


def test_meta_with_a_literal_backslash_u0000_text_is_accepted(client_for):
    body = {"id": "bs", "type": "message", "member": "m", "meta": {"note": "\\u0000"}}

    response = client_for.post(URL, body, format="json")

    assert response.status_code == 201, response.content
    assert Event.objects.get(client_id="bs").meta == {"note": "\\u0000"}


def test_events_cannot_set_balances_or_status(client_for):
    response = client_for.post(
        "/api/v1/communities/acme/events",
        {
            "id": "mass-1",
            "type": "share",
            "member": "ann",
            "balance": 10**6,
            "status": "left",
            "points": 999,
            "held": 5,
        },
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["points"] == 5
    member = client_for.get("/api/v1/communities/acme/members/ann").json()
    assert (member["balance"], member["held"], member["status"]) == (5, 0, "active")
