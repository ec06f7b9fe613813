"""Hostile input (issue 13): no body, cursor or id yields a 500; one bad item never sinks a
batch; what is accepted can be read back and shown safely; replays answer like the first time.

Bodies are posted as raw text where the value cannot be written by ``json.dumps`` (NaN,
lone surrogates, deep nesting), exactly as a hostile bot would send them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from api.parsers import MAX_DEPTH
from points.exceptions import RulesInvalid
from points.ingest import display_name_clean, member_id_problem
from points.models import AwardOnce, Community, Event, LedgerEntry, Member, RuleSet
from points.rules import DEFAULT_RULES, MAX_POINTS, parse_rules
from points.services import EventInput, events_ingest

pytestmark = pytest.mark.django_db

BASE = "/api/v1/communities/acme"
EVENTS = f"{BASE}/events"
BATCH = f"{BASE}/events/batch"
RULES = f"{BASE}/rules"
ADJUSTMENTS = f"{BASE}/adjustments"
PROBLEM = "application/problem+json"


@pytest.fixture
def admin(community: Community, make_client: Callable[..., APIClient]) -> APIClient:
    return make_client(community, ["events:write", "members:read", "admin"])


def _raw(client: APIClient, url: str, text: str | bytes, method: str = "post") -> Any:
    return getattr(client, method)(url, data=text, content_type="application/json")


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


def _fields(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["code"] for e in problem.get("errors", [])}


def _nothing_written() -> bool:
    return not Event.objects.exists() and not LedgerEntry.objects.exists()


def _message(client_id: str, member: str = "m", **extra: Any) -> dict[str, Any]:
    return {"id": client_id, "type": "message", "member": member, **extra}


def _statuses(response: Any) -> list[tuple[str | None, str]]:
    assert response.status_code == 200, response.content
    return [(r["id"], r["status"]) for r in response.json()["results"]]


# --- non-finite numbers ------------------------------------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_number_in_an_event_is_400_naming_its_field(client_for, number):
    text = f'{{"id": "e", "type": "message", "member": "m", "meta": {{"x": [1, {number}]}}}}'

    problem = _problem(_raw(client_for, EVENTS, text), 400, "validation_error")

    assert _fields(problem) == {"meta.x[1]": "non_finite_number"}
    assert _nothing_written()


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_number_in_a_batch_item_is_that_items_error_only(client_for, number):
    text = (
        '{"events": [{"id": "ok-1", "type": "message", "member": "m"},'
        f' {{"id": "bad", "type": "message", "member": "m", "meta": {{"x": {number}}}}},'
        ' {"id": "ok-2", "type": "message", "member": "m"}]}'
    )

    response = _raw(client_for, BATCH, text)

    assert _statuses(response) == [("ok-1", "accepted"), ("bad", "invalid"), ("ok-2", "accepted")]
    error = response.json()["results"][1]["error"]
    assert error["errors"] == [
        {"field": "meta.x", "code": "non_finite_number", "message": error["errors"][0]["message"]}
    ]
    assert set(Event.objects.values_list("client_id", flat=True)) == {"ok-1", "ok-2"}


def test_non_finite_numbers_in_rules_and_adjustments_are_400(admin):
    rules = _raw(admin, RULES, '{"rules": {"points": {"check_in": NaN}}}', "put")
    adjustment = _raw(
        admin, ADJUSTMENTS, '{"member": "m", "points": Infinity, "reason": "x"}', "post"
    )

    assert _fields(_problem(rules, 400, "validation_error")) == {
        "rules.points.check_in": "non_finite_number"
    }
    assert _fields(_problem(adjustment, 400, "validation_error")) == {"points": "non_finite_number"}
    assert RuleSet.objects.count() == 1


def test_an_integer_too_long_to_parse_is_400_number_too_large(client_for):
    text = '{"id": "e", "type": "message", "member": "m", "meta": {"n": ' + "9" * 5000 + "}}"

    _problem(_raw(client_for, EVENTS, text), 400, "number_too_large")
    assert _nothing_written()


def test_an_integer_too_long_to_parse_in_a_batch_item_is_that_items_error_only(client_for):
    huge = '{"id": "huge", "type": "message", "member": "m", "meta": {"n": ' + "9" * 5000 + "}}"
    text = '{"events": [' + huge + ', {"id": "ok", "type": "message", "member": "m"}]}'

    response = _raw(client_for, BATCH, text)

    assert _statuses(response) == [("huge", "invalid"), ("ok", "accepted")]
    [error] = response.json()["results"][0]["error"]["errors"]
    assert (error["field"], error["code"]) == ("meta.n", "number_too_large")


def test_finite_floats_and_large_integers_in_meta_are_kept(client_for):
    text = '{"id": "e", "type": "message", "member": "m", "meta": {"f": 1.5e300, "n": 1e2}}'

    assert _raw(client_for, EVENTS, text).status_code == 201
    meta = Event.objects.get(client_id="e").meta
    assert (float(meta["f"]), float(meta["n"])) == (1.5e300, 100.0)


# --- deep nesting --------------------------------------------------------------------------------


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_json_nested_beyond_what_can_be_parsed_is_400_malformed(client_for):
    text = '{"id": "e", "type": "message", "member": "m", "meta": {"x": ' + _nested(50_000) + "}}"

    _problem(_raw(client_for, EVENTS, text), 400, "malformed_json")
    assert _nothing_written()


def test_json_nested_deeper_than_the_limit_is_400_naming_the_limit(client_for):
    meta = '{"x": ' + _nested(MAX_DEPTH - 1) + "}"  # body {…} + meta {…} + 31 lists: 33
    text = '{"id": "e", "type": "message", "member": "m", "meta": ' + meta + "}"

    problem = _problem(_raw(client_for, EVENTS, text), 400, "validation_error")

    assert _fields(problem) == {"body": "nested_too_deep"}
    assert _nothing_written()


def test_json_nested_up_to_the_limit_is_accepted(client_for):
    meta = {"x": json.loads(_nested(MAX_DEPTH - 2))}  # body {…} + meta {…} + 30 lists

    assert client_for.post(EVENTS, _message("e", meta=meta), format="json").status_code == 201


def test_a_deeply_nested_batch_item_is_that_items_error_only(client_for):
    deep = '{"id": "deep", "type": "message", "member": "m", "meta": ' + _nested(500) + "}"
    text = '{"events": [' + deep + ', {"id": "ok", "type": "message", "member": "m"}]}'

    response = _raw(client_for, BATCH, text)

    assert _statuses(response) == [("deep", "invalid"), ("ok", "accepted")]
    assert response.json()["results"][0]["error"]["errors"][0]["code"] == "nested_too_deep"


# --- lone surrogates and NUL -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"id": "e", "type": "message", "member": "m", "meta": {"display_name": "\\ud800"}}',
         "meta.display_name"),
        ('{"id": "e", "type": "message", "member": "m", "meta": {"n": "a\\udfffb"}}', "meta.n"),
        ('{"id": "e", "type": "message", "member": "m", "meta": {"\\ud83d": 1}}',
         "meta.\\ud83d"),
        ('{"id": "e", "type": "message", "member": "m", "group": "\\ude00\\ud83d"}', "group"),
        ('{"id": "\\ud800", "type": "message", "member": "m"}', "id"),
        ('{"id": "e", "type": "message", "member": "m\\ud800"}', "member"),
        ('{"id": "e", "type": "share", "member": "m", "content": {"url": "\\udbff"}}',
         "content.url"),
    ],
)  # fmt: skip
def test_lone_surrogate_in_any_string_is_400_naming_the_field(client_for, text, field):
    problem = _problem(_raw(client_for, EVENTS, text), 400, "validation_error")

    assert _fields(problem) == {field: "invalid_unicode"}
    json.dumps(problem).encode("utf-8")  # the answer itself is valid UTF-8
    assert _nothing_written()


def test_a_surrogate_pair_is_one_character_and_accepted(client_for):
    text = (
        '{"id": "e", "type": "message", "member": "m", "meta": {"display_name": "\\ud83d\\ude00"}}'
    )

    assert _raw(client_for, EVENTS, text).status_code == 201
    assert Member.objects.get(external_id="m").display_name == "\U0001f600"


def test_lone_surrogate_in_a_batch_item_is_that_items_error_only(client_for):
    text = (
        '{"events": [{"id": "bad", "type": "message", "member": "m",'
        ' "meta": {"display_name": "\\ud800"}}, "\\udc00",'
        ' {"id": "ok", "type": "message", "member": "m"}]}'
    )

    response = _raw(client_for, BATCH, text)

    assert _statuses(response) == [("bad", "invalid"), (None, "invalid"), ("ok", "accepted")]
    results = response.json()["results"]
    assert results[0]["error"]["errors"][0]["field"] == "meta.display_name"
    assert list(Event.objects.values_list("client_id", flat=True)) == ["ok"]


def test_nul_in_the_rule_document_is_400_not_a_database_error(admin):
    rules = {**DEFAULT_RULES, "monthly_quota": {**DEFAULT_RULES["monthly_quota"]}}
    rules["monthly_quota"]["achievement"] = "a\u0000b"

    response = admin.put(RULES, {"rules": rules}, format="json")

    assert _fields(_problem(response, 400, "validation_error")) == {
        "rules.monthly_quota.achievement": "null_characters_not_allowed"
    }


# --- pagination cursor ----------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 at all!",
        "é",
        _b64("p=abc"),
        _b64("p=1.5"),
        _b64("p=-1"),
        _b64("p=" + "9" * 40),
        _b64("p=1\x00"),
        _b64("o=99999999999999999999"),
        _b64("o=5000"),
        _b64("r=2"),
        _b64("p=1&p=2"),
        _b64("x=1"),
        _b64("garbage"),
        base64.b64encode(b"\xff\xfe p=1").decode(),
        "A" * 500,
    ],
)
def test_crafted_ledger_cursor_is_400_naming_cursor(client_for, cursor):
    client_for.post(EVENTS, _message("e", member="alice"), format="json")
    url = f"{BASE}/members/alice/ledger?cursor={urllib.parse.quote(cursor)}"

    problem = _problem(client_for.get(url), 400, "validation_error")

    assert _fields(problem) == {"cursor": "invalid_cursor"}


def test_ledger_cursors_it_hands_out_walk_every_entry_once(client_for, community):
    events_ingest(
        community=community,
        events=[EventInput(f"e{i}", "message", "alice") for i in range(7)],
    )
    url: str | None = f"{BASE}/members/alice/ledger?page_size=3"
    seen: list[int] = []
    while url:
        page = client_for.get(url)
        assert page.status_code == 200, page.content
        seen.extend(entry["id"] for entry in page.json()["results"])
        url = page.json()["next"]

    assert seen == sorted(LedgerEntry.objects.values_list("id", flat=True), reverse=True)
    assert len(seen) == 7


# --- a batch repeating an id stored with another body -----------------------------------------


def test_batch_repeating_a_stored_id_with_another_body_answers_conflict_for_each_copy(
    client_for,
):
    assert (
        client_for.post(EVENTS, _message("dup", member="alice"), format="json").status_code == 201
    )
    other = _message("dup", member="bob")

    first = client_for.post(BATCH, {"events": [other, other]}, format="json")
    retry = client_for.post(BATCH, {"events": [other, other]}, format="json")

    assert _statuses(first) == [("dup", "conflict"), ("dup", "conflict")]
    assert retry.content == first.content
    assert Event.objects.count() == 1
    assert not Member.objects.filter(external_id="bob").exists()


def test_batch_copies_of_a_stored_id_are_each_compared_with_the_stored_event(client_for):
    stored = _message("dup", member="alice")
    assert client_for.post(EVENTS, stored, format="json").status_code == 201
    other = _message("dup", member="bob")

    response = client_for.post(
        BATCH, {"events": [other, stored, other, stored, _message("new")]}, format="json"
    )

    assert _statuses(response) == [
        ("dup", "conflict"),
        ("dup", "replayed"),
        ("dup", "conflict"),
        ("dup", "replayed"),
        ("new", "accepted"),
    ]
    results = response.json()["results"]
    assert results[1] == results[3]
    assert results[1]["points"] == 1


# --- rule values bounded by the columns --------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"points": {"check_in": 2**31}}, "rules.points.check_in"),
        ({"points": {"message": MAX_POINTS + 1}}, "rules.points.message"),
        ({"points": {"message": 10**40}}, "rules.points.message"),
        ({"points": {"message": 1}, "daily_caps": {"message": 2**31}}, "rules.daily_caps.message"),
        ({"points": {"message": 1}, "daily_total_cap": 2**63}, "rules.daily_total_cap"),
        ({"points": {"message": 1}, "cooldowns": {"message": 2**31}}, "rules.cooldowns.message"),
        (
            {"points": {"message": 1}, "streak": {"type": "check_in", "every": 7, "bonus": 2**31}},
            "rules.streak.bonus",
        ),
        (
            {"points": {"message": 1}, "duplicate_content": {"types": [], "window_days": 10**9}},
            "rules.duplicate_content.window_days",
        ),
        ({"points": {"message": 1}, "expiry_days": 10**7}, "rules.expiry_days"),
    ],
)
def test_rule_values_beyond_what_the_columns_hold_are_refused(admin, rules, field):
    response = admin.put(RULES, {"rules": rules}, format="json")

    problem = _problem(response, 400, "invalid_rules")
    assert field in _fields(problem), problem
    assert RuleSet.objects.count() == 1


def test_rule_points_at_the_bound_are_published_and_scored(admin):
    published = admin.put(
        RULES,
        {"rules": {"points": {"help": MAX_POINTS}, "daily_total_cap": None}},
        format="json",
    )
    assert published.status_code == 201, published.content

    response = admin.post(BATCH, {"events": [_message(f"h{i}", type="help") for i in range(3)]},
                          format="json")  # fmt: skip

    assert [r["points"] for r in response.json()["results"]] == [MAX_POINTS] * 3
    assert Member.objects.get(external_id="m").balance == 3 * MAX_POINTS


def test_parse_rules_bounds_what_the_admin_form_publishes_too():
    with pytest.raises(RulesInvalid) as refused:
        parse_rules({"points": {"check_in": 2**31}})

    assert [(e.field, e.code) for e in refused.value.errors] == [("points.check_in", "max_value")]


def test_admin_rule_form_refuses_points_beyond_the_bound(community):
    from points.admin import RuleSetForm

    soon = timezone.now() + dt.timedelta(days=1)
    form = RuleSetForm(
        data={
            "community": community.pk,
            "effective_from_0": soon.date().isoformat(),
            "effective_from_1": "00:00:00",
            "effective_from": soon.isoformat(),
            "rules": json.dumps({"points": {"check_in": 2**31}}),
            "note": "",
        }
    )

    assert not form.is_valid()
    assert "points.check_in" in str(form.errors["rules"])


# --- a batch is a set of independent items -----------------------------------------------------


def test_one_batch_of_every_hostile_item_stores_the_good_items(client_for):
    old = (timezone.now() - dt.timedelta(days=400)).isoformat()
    items = [
        '{"id": "good-1", "type": "message", "member": "m"}',
        '{"id": "nan", "type": "message", "member": "m", "meta": {"x": NaN}}',
        '{"id": "surrogate", "type": "message", "member": "m", "group": "\\ud800"}',
        '{"id": "nul", "type": "message", "member": "m", "meta": {"x": "\\u0000"}}',
        '{"id": "deep", "type": "message", "member": "m", "meta": ' + _nested(100) + "}",
        '{"id": "slash", "type": "message", "member": "a/b"}',
        '{"id": "old", "type": "message", "member": "m", "occurred_at": "' + old + '"}',
        '{"id": "year-1", "type": "message", "member": "m", "occurred_at": "0001-01-01T00:00:00Z"}',
        '{"id": "huge", "type": "message", "member": "m", "meta": {"n": ' + "1" * 5000 + "}}",
        "Infinity",
        "null",
        "[1, 2]",
        '{"id": "good-2", "type": "message", "member": "m"}',
    ]

    response = _raw(client_for, BATCH, '{"events": [' + ", ".join(items) + "]}")

    statuses = _statuses(response)
    assert statuses[0] == ("good-1", "accepted")
    assert statuses[-1] == ("good-2", "accepted")
    assert [s for _i, s in statuses[1:-1]] == ["invalid"] * (len(items) - 2)
    assert set(Event.objects.values_list("client_id", flat=True)) == {"good-1", "good-2"}
    for result in response.json()["results"][1:-1]:
        assert result["error"]["errors"], result


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '"events"',
        "NaN",
        '{"events": "x"}',
        '{"events": []}',
        '{"events": [' + _nested(5000) + "]}",
        '{"events": [{}], "x": NaN}',
    ],
)
def test_a_body_that_is_not_a_batch_fails_whole_as_a_problem(client_for, text):
    response = _raw(client_for, BATCH, text)

    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    assert _nothing_written()


# --- occurred_at window ------------------------------------------------------------------------


def _at(delta: dt.timedelta) -> str:
    return (timezone.now() + delta).isoformat()


@pytest.mark.parametrize(
    ("occurred_at", "code"),
    [
        ("0001-01-01T00:00:00Z", "before_backfill_limit"),
        ("1999-12-31T23:59:59+08:00", "before_backfill_limit"),
        (None, "before_backfill_limit"),  # 366 days before the community was created
        ("9999-12-31T23:59:59Z", "in_future"),
    ],
)
def test_occurred_at_outside_the_window_is_400(client_for, occurred_at, code):
    occurred_at = occurred_at or _at(-dt.timedelta(days=366))

    response = client_for.post(EVENTS, _message("e", occurred_at=occurred_at), format="json")

    assert _fields(_problem(response, 400, "validation_error")) == {"occurred_at": code}


def test_occurred_at_back_to_the_backfill_limit_is_accepted(client_for):
    response = client_for.post(
        EVENTS, _message("e", occurred_at=_at(-dt.timedelta(days=364))), format="json"
    )

    assert response.status_code == 201, response.content


def test_backfill_limit_follows_the_setting(client_for, settings):
    settings.EVENTS_BACKFILL_DAYS = 10
    late = client_for.post(EVENTS, _message("a", occurred_at=_at(-dt.timedelta(days=11))),
                           format="json")  # fmt: skip
    inside = client_for.post(EVENTS, _message("b", occurred_at=_at(-dt.timedelta(days=9))),
                             format="json")  # fmt: skip

    assert _fields(_problem(late, 400, "validation_error")) == {
        "occurred_at": "before_backfill_limit"
    }
    assert inside.status_code == 201


# --- member ids: an alphabet every accepted id can be read back in -------------------------------

BAD_MEMBER_IDS = [
    "a/b",
    "a\\b",
    ".",
    "..",
    "has space",
    "tab\there",
    "rtl\u202eevil",
    "iso\u2066late",
    "zero\u200bwidth",
    "bom\ufeff",
    "soft\u00adhyphen",
    "filler\u3164",
    "vs\ufe0f",
    "nbsp\u00a0",
    "line\u2028sep",
    "x" * 65,
]


@pytest.mark.parametrize("member", BAD_MEMBER_IDS)
def test_member_id_outside_the_alphabet_is_400_naming_member(client_for, member):
    response = client_for.post(EVENTS, _message("e", member=member), format="json")

    assert "member" in _fields(_problem(response, 400, "validation_error"))
    assert _nothing_written()


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "reaction", "target": "post-1", "content": {"author": "a/b"}}, "content.author"),
        ({"type": "invite", "target": "new\u200bbie"}, "target"),
        ({"type": "peer_score", "target": "x/y", "score": 3}, "target"),
    ],
)
def test_member_ids_in_target_and_author_use_the_same_alphabet(client_for, event, field):
    response = client_for.post(EVENTS, {"id": "e", "member": "m", **event}, format="json")

    assert field in _fields(_problem(response, 400, "validation_error"))


@pytest.mark.parametrize(
    "member",
    [
        "wxid_alice",
        "u-10086",
        "张三",
        "José",
        "\U0001f600",
        "a%b",
        "a%2Fb",
        "a?b",
        "a#b",
        "a;b",
        "a.b",
        "...",
        "x" * 64,
    ],
)
def test_every_accepted_member_id_can_be_read_back_through_the_api(client_for, member):
    assert client_for.post(EVENTS, _message("e", member=member), format="json").status_code == 201

    url = f"{BASE}/members/{urllib.parse.quote(member, safe='')}"
    response = client_for.get(url)
    ledger = client_for.get(url + "/ledger")

    assert response.status_code == 200, response.content
    assert response.json()["member"] == member
    assert ledger.status_code == 200


def test_member_id_rule_refuses_what_a_url_path_or_a_reader_cannot_carry():
    assert member_id_problem("wxid_alice") is None
    assert member_id_problem("") is not None
    assert all(member_id_problem(bad) is not None for bad in BAD_MEMBER_IDS)


# --- display names are shown clean -------------------------------------------------------------

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji: three joined by ZWJ


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("Alice", "Alice"),
        ("  Alice   Smith ", "Alice Smith"),
        ("\u202eecilA", "ecilA"),
        ("Al\u200bice\u200c\u200d\u2060\ufeff", "Alice"),
        ("A\u2066l\u2069i\u200fce\u061c", "Alice"),
        ("Al\x07ice\x1b[31m", "Alice[31m"),
        ("line\nbreak\ttab", "line break tab"),
        ("\u3164\u115f Bob", "Bob"),
        ("Zalgo: a\u0301\u0302\u0303\u0304\u0305", "Zalgo: \u00e1\u0302\u0303"),
        (f"famille {FAMILY}", f"famille {FAMILY}"),
        ("\U0001f3f3\ufe0f\u200d\U0001f308 flag", "\U0001f3f3\ufe0f\u200d\U0001f308 flag"),
        ("張三", "張三"),
        ("x" * 300, "x" * 200),
    ],
)  # fmt: skip
def test_display_name_is_stored_without_invisible_or_bidi_characters(client_for, sent, shown):
    response = client_for.post(
        EVENTS, _message("e", member="m", meta={"display_name": sent}), format="json"
    )

    assert response.status_code == 201, response.content
    assert Member.objects.get(external_id="m").display_name == shown
    assert display_name_clean(sent) == shown


def test_a_display_name_of_only_invisible_characters_keeps_the_previous_name(client_for):
    client_for.post(EVENTS, _message("a", meta={"display_name": "Alice"}), format="json")
    client_for.post(EVENTS, _message("b", meta={"display_name": "\u200b\u202e \u3164"}),
                    format="json")  # fmt: skip

    assert Member.objects.get(external_id="m").display_name == "Alice"
    assert client_for.get(f"{BASE}/members/m").json()["display_name"] == "Alice"


# --- replays: the same status word, the same bytes ----------------------------------------------


def test_single_replay_says_replayed_and_is_otherwise_byte_identical(client_for):
    event = _message("e", meta={"display_name": "Alice"})

    first = client_for.post(EVENTS, event, format="json")
    second = client_for.post(EVENTS, event, format="json")
    third = client_for.post(EVENTS, event, format="json")

    assert (first.status_code, second.status_code, third.status_code) == (201, 200, 200)
    assert first.json()["status"] == "accepted"
    assert second.json()["status"] == "replayed"
    assert second.content == first.content.replace(b'"accepted"', b'"replayed"', 1)
    assert third.content == second.content


def test_batch_items_answer_exactly_what_the_single_endpoint_answers(client_for):
    event = _message("e")
    first = client_for.post(EVENTS, event, format="json")
    replay = client_for.post(EVENTS, event, format="json")

    batch = client_for.post(BATCH, {"events": [event, _message("f")]}, format="json")

    replayed, accepted = batch.json()["results"]
    assert json.dumps(replayed) == json.dumps(replay.json())
    assert list(accepted) == list(first.json())  # same keys, same order
    assert accepted["rule_version"] == 1
    assert accepted["status"] == "accepted"


def test_batch_replay_of_a_batch_is_byte_identical(client_for):
    body = {"events": [_message("a"), _message("b", member="n")]}
    client_for.post(BATCH, body, format="json")

    second = client_for.post(BATCH, body, format="json")
    third = client_for.post(BATCH, body, format="json")

    assert [r["status"] for r in second.json()["results"]] == ["replayed", "replayed"]
    assert third.content == second.content


# --- timestamps: one format ----------------------------------------------------------------------

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def _timestamps(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v)]
    if isinstance(value, str) and re.match(r"\d{4}-\d\d-\d\dT", value):
        return [value]
    return []


def test_member_and_ledger_timestamps_use_one_format(client_for, community):
    client_for.post(EVENTS, _message("e", member="alice"), format="json")
    member = Member.objects.get(external_id="alice")
    AwardOnce.objects.create(
        community=community,
        key=f"quota:{member.pk}:2026-11",
        member=member,
        event=Event.objects.get(client_id="e"),
        kind="quota",
        achievement="monthly_check_in",
        created_at=timezone.now(),
    )

    detail = client_for.get(f"{BASE}/members/alice").json()
    ledger = client_for.get(f"{BASE}/members/alice/ledger").json()

    found = _timestamps(detail) + _timestamps(ledger)
    assert detail["achievements"][0]["awarded_at"] in found
    assert [t for t in found if not TIMESTAMP.fullmatch(t)] == []
