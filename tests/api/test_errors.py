"""Every error leaves the API as an RFC 9457 problem (application/problem+json)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.test import RequestFactory
from rest_framework.test import APIClient

from api.errors import handler400, handler404, handler500
from points.models import Event, LedgerEntry, Member

pytestmark = pytest.mark.django_db

BASE = "/api/v1/communities/acme"
EVENT = {"id": "e-1", "type": "share", "member": "alice"}


# Each case: (id, scopes of the key or None for no key, request, expected status, expected code)
CASES: list[tuple[str, list[str] | None, Callable[[APIClient], Any], int, str]] = [
    ("malformed-json", ["admin"],
     lambda c: c.post(f"{BASE}/events", data="{", content_type="application/json"),
     400, "malformed_json"),
    ("validation", ["admin"],
     lambda c: c.post(f"{BASE}/events", {"id": "x"}, format="json"), 400, "validation_error"),
    ("unknown-type", ["admin"],
     lambda c: c.post(f"{BASE}/events", {**EVENT, "type": "zz"}, format="json"),
     400, "validation_error"),
    ("batch-envelope", ["admin"],
     lambda c: c.post(f"{BASE}/events/batch", {"events": []}, format="json"),
     400, "validation_error"),
    ("bad-period", ["admin"],
     lambda c: c.get(f"{BASE}/leaderboard?period=decade"), 400, "validation_error"),
    ("missing-key", None, lambda c: c.get(f"{BASE}/members/alice"), 401, "missing_api_key"),
    ("invalid-key", None,
     lambda c: c.get(f"{BASE}/members/alice", HTTP_AUTHORIZATION="Api-Key x.y"),
     401, "invalid_api_key"),
    ("forbidden", ["events:write"], lambda c: c.get(f"{BASE}/members/alice"), 403, "forbidden"),
    ("unknown-community", ["admin"],
     lambda c: c.get("/api/v1/communities/nowhere/members/alice"), 404, "not_found"),
    ("unknown-member", ["admin"],
     lambda c: c.get(f"{BASE}/members/nobody"), 404, "member_not_found"),
    ("unknown-url", ["admin"], lambda c: c.get("/api/v1/nothing/here"), 404, "not_found"),
    ("unknown-url-no-key", None, lambda c: c.get("/api/v1/"), 404, "not_found"),
    ("unknown-sub-url", ["admin"],
     lambda c: c.get(f"{BASE}/members/alice/ledger/extra"), 404, "not_found"),
    ("get-on-events", ["admin"], lambda c: c.get(f"{BASE}/events"), 405, "method_not_allowed"),
    ("delete-member", ["admin"],
     lambda c: c.delete(f"{BASE}/members/alice"), 405, "method_not_allowed"),
    ("not-acceptable", ["admin"],
     lambda c: c.get(f"{BASE}/members/alice", HTTP_ACCEPT="text/csv"), 406, "not_acceptable"),
    ("conflict", ["admin"],
     lambda c: (c.post(f"{BASE}/events", EVENT, format="json"),
                c.post(f"{BASE}/events", {**EVENT, "member": "bob"}, format="json"))[1],
     409, "event_conflict"),
    ("payload-too-large", ["admin"],
     lambda c: c.post(f"{BASE}/events/batch", data=b'{"events": ["' +
                      b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"]}',
                      content_type="application/json"),
     413, "payload_too_large"),
    ("form-encoded", ["admin"],
     lambda c: c.post(f"{BASE}/events", EVENT), 415, "unsupported_media_type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("scopes", "call", "status", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_error_response_is_problem_json_with_type_title_status_detail_code(
    community, make_client, scopes, call, status, code
):
    client = APIClient() if scopes is None else make_client(community, scopes)
    Member.objects.get_or_create(community=community, external_id="alice",
                                 defaults={"joined_at": community.created_at})  # fmt: skip

    response = call(client)

    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"/api/errors/#{code}"
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    for error in body.get("errors", []):
        assert set(error) == {"field", "code", "message"}


def test_405_names_the_allowed_methods(client_for):
    response = client_for.get(f"{BASE}/events")

    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert "GET" not in response["Allow"].split(", ")


def test_401_carries_www_authenticate(community):
    response = APIClient().post(f"{BASE}/events", EVENT, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


def test_validation_errors_name_nested_fields_with_dotted_paths(client_for):
    response = client_for.post(
        f"{BASE}/events", {**EVENT, "content": {"kind": "spam", "length": "long"}}, format="json"
    )

    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"content.kind", "content.length"}


def test_errors_write_nothing(client_for):
    before = (Event.objects.count(), LedgerEntry.objects.count(), Member.objects.count())

    for response in (
        client_for.post(f"{BASE}/events", data="{", content_type="application/json"),
        client_for.post(f"{BASE}/events", {**EVENT, "type": "zz"}, format="json"),
        client_for.post(f"{BASE}/events", EVENT),
        client_for.get(f"{BASE}/events"),
    ):
        assert response.status_code >= 400

    assert (Event.objects.count(), LedgerEntry.objects.count(), Member.objects.count()) == before


def test_django_level_handlers_answer_with_problems():
    request = RequestFactory().get("/anything")

    for response, status, code in (
        (handler404(request, None), 404, "not_found"),
        (handler500(request), 500, "server_error"),
        (handler400(request, None), 400, "bad_request"),
    ):
        assert response.status_code == status
        assert response["Content-Type"] == "application/problem+json"
        body = json.loads(response.content)
        assert body["code"] == code
        assert body["status"] == status
        assert {"type", "title", "detail"} <= set(body)


def test_unhandled_exception_in_a_view_is_a_500_problem(client_for, monkeypatch):
    def explode(**kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("points.ingest.group.events_ingest", explode)
    client = client_for
    client.raise_request_exception = False

    response = client.post(f"{BASE}/events", EVENT, format="json")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["code"] == "server_error"
    assert "boom" not in response.content.decode()


CJK = re.compile(r"[\u3400-\u9fff]")
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|“[^”]*”|`[^`]*`")
ENGLISH_WORD = re.compile(r"\b(the|is|are|not|must|this|no|invalid|required|only)\b", re.I)


def _texts(body: dict[str, Any]) -> list[str]:
    return [body["title"], body["detail"], *(e["message"] for e in body.get("errors", []))]


@pytest.mark.parametrize("accept_language", [None, "en-GB,en;q=0.9", "fr-FR"])
@pytest.mark.parametrize(
    ("scopes", "call", "status", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_error_is_english_throughout_unless_chinese_is_asked_for(
    community, make_client, scopes, call, status, code, accept_language
):
    client = APIClient() if scopes is None else make_client(community, scopes)
    if accept_language:
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = accept_language

    body = json.loads(call(client).content)

    for text in _texts(body):
        assert not CJK.search(QUOTED.sub("", text)), body
        assert "{" not in text, body


@pytest.mark.parametrize(
    ("scopes", "call", "status", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_error_is_chinese_throughout_when_accept_language_prefers_it(
    community, make_client, scopes, call, status, code
):
    client = APIClient() if scopes is None else make_client(community, scopes)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "zh-CN,zh;q=0.9,en;q=0.5"
    Member.objects.get_or_create(community=community, external_id="alice",
                                 defaults={"joined_at": community.created_at})  # fmt: skip

    response = call(client)

    assert response.status_code == status
    body = json.loads(response.content)
    assert body["code"] == code  # codes and field paths stay as they are, for bots
    for text in _texts(body):
        assert CJK.search(text), body
        assert not ENGLISH_WORD.search(QUOTED.sub("", text)), body


def test_untranslated_service_message_falls_back_to_a_chinese_one():
    from django.utils import translation

    from api.errors import field_errors, problem
    from points.exceptions import FieldError

    with translation.override("zh-hans"):
        body = problem(
            400,
            "some_new_code",
            "A title nobody translated",
            "A detail nobody translated.",
            field_errors([FieldError("x", "invalid", "a message nobody translated")]),
        )

    assert body["title"] == "错误的请求"
    assert body["detail"] == "错误的请求"
    assert body["errors"][0]["message"] == "该值无效。"


def test_405_and_415_titles_name_the_method_and_the_media_type(client_for):
    not_allowed = client_for.delete(f"{BASE}/events").json()
    unsupported = client_for.post(f"{BASE}/events", data="x", content_type="text/plain").json()

    assert not_allowed["title"] == "Method DELETE not allowed"
    assert unsupported["title"] == "Unsupported media type text/plain"


def test_integer_past_the_digit_limit_is_called_a_number_too_large(community, make_client):
    client = make_client(community, ["admin"])
    body = '{"member": "alice", "reason": "x", "points": ' + "9" * 5000 + "}"

    response = client.post(f"{BASE}/adjustments", data=body, content_type="application/json")

    assert response.status_code == 400
    problem_body = response.json()
    assert problem_body["code"] == "number_too_large"
    assert problem_body["title"] == "Number too large"
    assert problem_body["detail"] == "A number in the body has more than 4,300 digits."


def test_out_of_range_integer_field_says_the_bound(community, make_client):
    client = make_client(community, ["admin"])

    response = client.post(
        f"{BASE}/adjustments", {"member": "alice", "points": 10**30, "reason": "x"}, format="json"
    )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "points"
    assert error["message"] == "Ensure this value is less than or equal to 1000000."


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"id": "x", "type": "share", "member": "a", "meta": {"n": NaN}}', "有限值"),
        ('{"id": "x", "type": "share", "member": "a/b"}', "成员 ID"),
    ],
)
def test_hostile_input_field_messages_are_translated(community, make_client, body, expected):
    client = make_client(community, ["events:write"])
    response = client.post(
        "/api/v1/communities/acme/events",
        body,
        content_type="application/json",
        HTTP_ACCEPT_LANGUAGE="zh-CN",
    )
    assert response.status_code == 400
    assert expected in response.json()["errors"][0]["message"]


def test_a_chinese_batch_answer_carries_no_english_item_message(community, make_client):
    client = make_client(community, ["events:write"])
    response = client.post(
        "/api/v1/communities/acme/events/batch",
        {"events": [{"id": "b1", "type": "nope", "member": "a"}]},
        format="json",
        HTTP_ACCEPT_LANGUAGE="zh-CN",
    )
    item = response.json()["results"][0]
    assert item["status"] == "invalid"
    assert CJK.search(item["error"]["message"]), item
    assert not ENGLISH_WORD.search(QUOTED.sub("", item["error"]["message"])), item
