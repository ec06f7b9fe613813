"""The lean path (api/fastpath.py): the rank lookups and single events it serves are answered
byte for byte as Django and DRF answer them (status, headers, body), through the WSGI
application gunicorn runs; everything it does not serve reaches Django untouched; an event is
never written twice; a request is counted once against the rate limit, logged once and
measured once."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import override_settings

from api import fastpath, throttles
from config.observability import HTTP_REQUESTS
from config.wsgi import application, django_application
from points.models import Community, PeriodKind, PeriodTotal
from points.services import (
    EventInput,
    api_key_create,
    community_create,
    events_ingest,
    rank_snapshot_build,
)
from points.timeutils import month_start, today, week_start

API = "/api/v1/communities/acme"
Answer = tuple[str, dict[str, str], bytes]


pytestmark = pytest.mark.usefixtures("keep_test_connection")  # tests/conftest.py


@pytest.fixture(autouse=True)
def eager_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank rebuild a read queues runs in this process (no broker here)."""
    from config.celery import app
    from points import services

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)
    monkeypatch.setattr(services, "_rebuild_queued_at", {})


@pytest.fixture
def key(community: Community) -> str:
    """An API key that reads members, over a board with ranks in every period."""
    events = [EventInput(f"s{k}", "share", "ann") for k in range(3)]
    events += [EventInput(f"b{k}", "share", "bob") for k in range(2)]
    events += [EventInput("c0", "share", "小明"), EventInput("d0", "share", "dan")]
    events += [EventInput(f"e{k}", "share", "eve") for k in range(2)]
    events_ingest(community=community, events=events)
    events_ingest(community=community, events=[EventInput("bye", "leave", "dan")])
    day = today(community.timezone)
    for kind, start in (
        (PeriodKind.ALL_TIME, PeriodTotal.ALL_TIME_START),
        (PeriodKind.MONTH, month_start(day)),
        (PeriodKind.WEEK, week_start(day)),
    ):
        rank_snapshot_build(community=community, kind=kind, start=start, force=True)
    events_ingest(community=community, events=[EventInput("late", "share", "eve")])
    return api_key_create(community=community, scopes=["members:read"], name="bot")[1]


def _environ(path: str, key: str | None, query: str = "", **extra: Any) -> dict[str, Any]:
    """A request's WSGI environ as gunicorn builds it (PEP 3333: the path's UTF-8 bytes as
    latin-1 text)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path.encode().decode("latin-1"),
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if key:
        environ["HTTP_AUTHORIZATION"] = f"Api-Key {key}"
    return {**environ, **extra}


def _call(app: Callable[..., Any], environ: dict[str, Any]) -> Answer:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.update(status=status, headers=headers)

    result = app(dict(environ), start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    headers = dict(started["headers"])
    assert len(headers) == len(started["headers"]), "a header was sent twice"
    return started["status"], headers, body


def _served_fast(environ: dict[str, Any]) -> Answer | None:
    """The lean path's answer, or ``None`` where it hands the request to Django."""
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.update(status=status, headers=headers)

    result = fastpath.serve(dict(environ), start_response)
    if result is None:
        assert not started, "a request handed to Django must not have been started"
        return None
    body = b"".join(result)
    result.close()  # type: ignore[attr-defined]
    return started["status"], dict(started["headers"]), body


def _assert_same_headers(fast: Answer, slow: Answer, name: str = "") -> None:
    """The same headers but the request id, which each request gets its own of."""
    fast_headers, slow_headers = dict(fast[1]), dict(slow[1])
    assert fast_headers.pop("X-Request-ID")
    assert slow_headers.pop("X-Request-ID")
    assert fast_headers == slow_headers, name


def _assert_same(fast: Answer, slow: Answer) -> None:
    """Same status, headers (a generated request id aside) and body (the snapshot's age may
    have turned a second between the two)."""
    assert fast[0] == slow[0]
    _assert_same_headers(fast, slow)
    fast_body, slow_body = json.loads(fast[2]), json.loads(slow[2])
    if fast_body.get("age_seconds") == slow_body.get("age_seconds"):
        assert fast[2] == slow[2]
    else:
        assert abs(fast_body.pop("age_seconds") - slow_body.pop("age_seconds")) <= 1
        assert fast_body == slow_body


SERVED = [
    ("ann", ""),  # ranked first, all time (no query: all_time)
    ("ann", "period=all_time"),
    ("bob", "period=month"),
    ("eve", "period=week"),  # live points ahead of the snapshot's
    ("小明", ""),  # a member id that is not ASCII (UTF-8 in the path)
    ("dan", ""),  # left: not ranked
    ("ann", "period=month"),
]


@pytest.mark.parametrize(("member", "query"), SERVED)
def test_what_the_lean_path_serves_is_what_django_answers(
    key: str, member: str, query: str
) -> None:
    environ = _environ(f"{API}/members/{member}/rank", key, query)
    fast = _served_fast(environ)
    assert fast is not None, "the lean path should serve this request"
    assert fast[0] == "200 OK"
    _assert_same(fast, _call(django_application, environ))
    _assert_same(_call(application, environ), _call(django_application, environ))


def test_the_answer_names_the_member_and_its_neighbours(key: str) -> None:
    status, headers, body = _call(application, _environ(f"{API}/members/bob/rank", key))
    assert status == "200 OK"
    answer = json.loads(body)
    assert (answer["rank"], answer["total"]) == (2, 4)  # dan left: not ranked
    assert [r["member"] for r in answer["above"]] == ["ann"]
    assert [r["member"] for r in answer["below"]] == ["eve", "小明"]
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)


def test_a_sane_request_id_is_echoed_and_an_insane_one_replaced(key: str) -> None:
    path = f"{API}/members/ann/rank"
    fast = _served_fast(_environ(path, key, HTTP_X_REQUEST_ID="bot-42"))
    assert fast is not None
    assert fast[1]["X-Request-ID"] == "bot-42"
    fast = _served_fast(_environ(path, key, HTTP_X_REQUEST_ID="no spaces <here>"))
    assert fast is not None
    assert fast[1]["X-Request-ID"] not in ("", "no spaces <here>")


def test_security_headers_over_https_match_django(key: str) -> None:
    """Production's settings: HSTS on secure requests (through the proxy's header), and a
    plain request redirected by Django, not served."""
    secure = {
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "X_FRAME_OPTIONS": "SAMEORIGIN",
    }
    path = f"{API}/members/ann/rank"
    with override_settings(**secure):
        environ = _environ(path, key, HTTP_X_FORWARDED_PROTO="https")
        fast = _served_fast(environ)
        assert fast is not None
        assert fast[1]["Strict-Transport-Security"].startswith("max-age=31536000")
        assert fast[1]["X-Frame-Options"] == "SAMEORIGIN"
        # Django's middleware reads these settings once, when the handler is built
        _assert_same(fast, _call(WSGIHandler(), environ))
        plain = _environ(path, key)
        assert _served_fast(plain) is None
        assert _call(WSGIHandler(), plain)[0] == "301 Moved Permanently"
    fast = _served_fast(_environ(path, key))  # the settings restored: no HSTS, DENY
    assert fast is not None
    assert "Strict-Transport-Security" not in fast[1]
    assert fast[1]["X-Frame-Options"] == "DENY"


def _other_community_key() -> str:
    other = community_create(slug="other", name="Other")
    return api_key_create(community=other, scopes=["members:read"], name="bot")[1]


HANDED_ON: list[tuple[str, dict[str, Any], str]] = [
    ("HEAD", {"REQUEST_METHOD": "HEAD"}, "200 OK"),
    ("POST", {"REQUEST_METHOD": "POST"}, "405 Method Not Allowed"),
    ("a past month", {"QUERY_STRING": "period=month&month=2026-01"}, "200 OK"),
    ("a bad period", {"QUERY_STRING": "period=decade"}, "400 Bad Request"),
    ("another query", {"QUERY_STRING": "format=json"}, "200 OK"),
    ("HTML wanted", {"HTTP_ACCEPT": "text/html"}, "406 Not Acceptable"),
    ("a language", {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}, "200 OK"),
    ("a cookie", {"HTTP_COOKIE": "django_language=zh-hans"}, "200 OK"),
    ("no key", {"HTTP_AUTHORIZATION": ""}, "401 Unauthorized"),
    ("a bad key", {"HTTP_AUTHORIZATION": "Api-Key abcdefgh.nope"}, "401 Unauthorized"),
    ("another scheme", {"HTTP_AUTHORIZATION": "Bearer abc"}, "401 Unauthorized"),
    ("an unknown member", {"PATH_INFO": f"{API}/members/nobody/rank"}, "404 Not Found"),
    (
        "an unknown member, not ASCII",
        {"PATH_INFO": f"{API}/members/无人/rank".encode().decode("latin-1")},
        "404 Not Found",
    ),
    ("a trailing slash", {"PATH_INFO": f"{API}/members/ann/rank/"}, "404 Not Found"),
    ("a bad host", {"HTTP_HOST": "evil.example"}, "400 Bad Request"),
]


@pytest.mark.parametrize(("case", "change", "status"), HANDED_ON, ids=[c[0] for c in HANDED_ON])
def test_what_the_lean_path_does_not_serve_reaches_django(
    key: str, case: str, change: dict[str, Any], status: str
) -> None:
    environ = {**_environ(f"{API}/members/ann/rank", key), **change}
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        assert _served_fast(environ) is None
        answer, expected = _call(application, environ), _call(django_application, environ)
    assert answer[0] == expected[0] == status
    if case == "a language":
        assert answer[1]["Content-Language"] == "zh-hans"


def test_keys_of_another_community_or_scope_and_member_tokens_reach_django(
    community: Community, key: str
) -> None:
    from points.models import Member
    from points.services import member_token_issue

    path = f"{API}/members/ann/rank"
    writer = api_key_create(community=community, scopes=["events:write"], name="w")[1]
    token, _ = member_token_issue(
        member=Member.objects.get(community=community, external_id="ann"),
        ttl=dt.timedelta(hours=1),
    )
    cases = [
        (_environ(path, _other_community_key()), "404 Not Found"),
        (_environ(path, writer), "403 Forbidden"),
        (_environ(path, None, HTTP_AUTHORIZATION=f"Member {token}"), "200 OK"),
    ]
    for environ, status in cases:
        assert _served_fast(environ) is None
        assert _call(application, environ)[0] == status


def test_switched_off_everything_reaches_django(key: str) -> None:
    environ = _environ(f"{API}/members/ann/rank", key)
    with override_settings(API_FAST_PATHS=False):
        assert _served_fast(environ) is None
        assert _call(application, environ)[0] == "200 OK"


def test_a_failure_in_the_lean_path_is_answered_by_django(
    key: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(fastpath, "member_rank_answer", broken)
    environ = _environ(f"{API}/members/ann/rank", key)
    with caplog.at_level(logging.WARNING, logger="api.fastpath"):
        assert _served_fast(environ) is None
        assert _call(application, environ)[0] == "200 OK"
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def _hits(api_key_pk: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(hits), 0) FROM api_rate_window WHERE ident = %s",
            [f"key:{api_key_pk}"],
        )
        return int(cursor.fetchone()[0])


def test_each_request_is_counted_once_against_the_rate_limit(community: Community) -> None:
    """Two admitted by the lean path, the third refused by Django with the lean path's own
    decision (429, Retry-After), an unknown member answered 404 by Django: four hits."""
    events_ingest(community=community, events=[EventInput("s0", "share", "ann")])
    api_key, plain = api_key_create(community=community, scopes=["members:read"], name="b")
    throttles.rate_limit_leases_clear()
    with override_settings(API_RATE_LIMITS={"key": "3/h"}):
        ann, nobody = (_environ(f"{API}/members/{m}/rank", plain) for m in ("ann", "nobody"))
        answers = [_call(application, ann), _call(application, ann)]
        assert _hits(api_key.pk) == 2
        answers.append(_call(application, nobody))
        assert _hits(api_key.pk) == 3
        answers.append(_call(application, ann))
    assert [a[0] for a in answers] == ["200 OK", "200 OK", "404 Not Found", "429 Too Many Requests"]
    assert int(answers[-1][1]["Retry-After"]) > 0
    assert _hits(api_key.pk) == 4
    throttles.rate_limit_leases_clear()


def test_a_served_request_is_logged_and_measured_once(
    key: str, caplog: pytest.LogCaptureFixture
) -> None:
    route = "api/v1/communities/<slug:community>/members/<member:member>/rank"
    counted = HTTP_REQUESTS.labels("GET", route, "200")
    before = counted._value.get()  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="incentives.access"):
        fast = _served_fast(_environ(f"{API}/members/ann/rank", key, HTTP_X_REQUEST_ID="r-1"))
    assert fast is not None
    lines = [r for r in caplog.records if r.name == "incentives.access"]
    assert len(lines) == 1
    line: Any = lines[0]
    assert (line.route, line.status, line.request_id, line.community) == (route, 200, "r-1", "acme")
    assert line.path == f"{API}/members/ann/rank"
    assert counted._value.get() == before + 1  # type: ignore[attr-defined]


# --- single events: POST …/events ------------------------------------------------------------


def _post(
    slug: str, key: str, body: Any, content_type: str = "application/json", **extra: Any
) -> dict[str, Any]:
    """A fresh environ for an event post (its body stream is read once)."""
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    environ = _environ(
        f"/api/v1/communities/{slug}/events",
        key,
        REQUEST_METHOD="POST",
        CONTENT_TYPE=content_type,
        CONTENT_LENGTH=str(len(data)),
        **extra,
    )
    environ["wsgi.input"] = io.BytesIO(data)
    return environ


@pytest.fixture
def twins(community: Community) -> tuple[str, str]:
    """Two communities alike (the same rules, time zone and members), with a writing key
    each: what the lean path answers in one, Django answers in the other."""
    twin = community_create(slug="acme2", name="Acme 社群", timezone_name="Asia/Shanghai")
    keys = []
    for each in (community, twin):
        events_ingest(community=each, events=[EventInput("seed", "share", "ann")])
        keys.append(api_key_create(community=each, scopes=["events:write"], name="bot")[1])
    return keys[0], keys[1]


EVENTS: list[tuple[str, Any, str]] = [
    ("a check-in", {"id": "e1", "type": "check_in", "member": "ann"}, "201 Created"),
    ("its replay", {"id": "e1", "type": "check_in", "member": "ann"}, "200 OK"),
    ("its id reused", {"id": "e1", "type": "share", "member": "ann"}, "409 Conflict"),
    (
        "a new member, named",
        {"id": "e2", "type": "share", "member": "小明", "meta": {"display_name": "小明 ✓"}},
        "201 Created",
    ),
    ("a reaction paying ann", {"id": "e3", "type": "reaction", "member": "bob"}, "201 Created"),
    ("a peer score without score", {"id": "e4", "type": "peer_score", "member": "bob"}, "400"),
    ("a share in the past", {"id": "e5", "type": "share", "member": "bob"}, "201 Created"),
    ("an unknown type", {"id": "e6", "type": "nope!", "member": "bob"}, "400 Bad Request"),
    ("no id", {"type": "share", "member": "bob"}, "400 Bad Request"),
]


def test_single_events_are_answered_as_django_answers_them(twins: tuple[str, str]) -> None:
    """The same sequence posted to both twins, one through the lean path, the other through
    Django: the same status, headers and bytes every time (replays, conflicts and invalid
    events included; what the validator refuses is handed to Django)."""
    fast_key, slow_key = twins
    served = []
    for name, body, status in EVENTS:
        if name == "a reaction paying ann":
            body = {**body, "target": "c1", "content": {"id": "c1", "author": "ann"}}
        if name == "a share in the past":
            body = {**body, "occurred_at": "2026-01-05T08:00:00+08:00"}
        fast = _served_fast(_post("acme", fast_key, body))
        if fast is None:
            fast = _call(application, _post("acme", fast_key, body))
        else:
            served.append(name)
        slow = _call(django_application, _post("acme2", slow_key, body))
        assert fast[0].startswith(status), (name, fast)
        assert fast[0] == slow[0], name
        _assert_same_headers(fast, slow, name)
        assert fast[2] == slow[2], name
    assert served == [name for name, *_ in EVENTS[:7]]  # the validator's refusals: Django


EVENTS_HANDED_ON: list[tuple[str, dict[str, Any], str]] = [
    ("text/plain", {"CONTENT_TYPE": "text/plain"}, "415 Unsupported Media Type"),
    ("no length (chunked)", {"CONTENT_LENGTH": ""}, "400 Bad Request"),
    ("a query", {"QUERY_STRING": "x=1"}, "201 Created"),
    ("a language", {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}, "201 Created"),
    ("a read-only key", {"HTTP_AUTHORIZATION": "read-only"}, "403 Forbidden"),
    ("the batch path", {"PATH_INFO": "/api/v1/communities/acme/events/batch"}, "400 Bad Request"),
]


@pytest.mark.parametrize(
    ("case", "change", "status"), EVENTS_HANDED_ON, ids=[c[0] for c in EVENTS_HANDED_ON]
)
def test_event_posts_the_lean_path_does_not_serve_reach_django(
    community: Community, case: str, change: dict[str, Any], status: str
) -> None:
    key = api_key_create(community=community, scopes=["events:write"], name="w")[1]
    if change.get("HTTP_AUTHORIZATION") == "read-only":
        reader = api_key_create(community=community, scopes=["members:read"], name="r")[1]
        change = {"HTTP_AUTHORIZATION": f"Api-Key {reader}"}
    body = {"id": "h1", "type": "share", "member": "ann"}
    assert _served_fast({**_post("acme", key, body), **change}) is None
    answer = _call(application, {**_post("acme", key, body), **change})
    assert answer[0] == status, answer
    if case == "a language":
        assert answer[1]["Content-Language"] == "zh-hans"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"id": "m1", "type": "share", "member": ', "malformed_json"),
        (b'{"id": "m1", "type": "share", "member": "ann", "meta": {"x": NaN}}', "validation_error"),
        (b'{"id": "m1", "type": "share", "member": "ann\\u0000"}', "validation_error"),
        (b'{"id": "m1", "type": "share", "member": "ann\\ud800"}', "validation_error"),
        (
            b'{"id": "m1", "type": "share", "member": "ann", "meta": '
            + b'{"a": ' * 40
            + b"1"
            + b"}" * 41,
            "validation_error",
        ),
        (
            b'{"id": "m1", "type": "share", "member": "ann", "score": ' + b"9" * 5000 + b"}",
            "number_too_large",
        ),
        (b'{"id": "m1", "type": "share", "member": "ann", "score": 1e999}', "validation_error"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed_json"),
    ],
    ids=["malformed", "NaN", "NUL", "lone surrogate", "deep", "huge integer", "1e999", "recursion"],
)
def test_a_body_the_parser_refuses_reaches_django_whole(
    community: Community, body: bytes, code: str
) -> None:
    """The lean path read the body; Django reads the same bytes again (not an empty body)."""
    key = api_key_create(community=community, scopes=["events:write"], name="w")[1]
    assert _served_fast(_post("acme", key, body)) is None
    status, headers, answer = _call(application, _post("acme", key, body))
    assert (status, headers["Content-Type"]) == ("400 Bad Request", "application/problem+json")
    assert json.loads(answer)["code"] == code


def test_a_body_over_the_limit_reaches_django(community: Community) -> None:
    key = api_key_create(community=community, scopes=["events:write"], name="w")[1]
    body = {"id": "big", "type": "share", "member": "ann", "meta": {"x": "y" * 4000}}
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        assert _served_fast(_post("acme", key, body)) is None
        assert _call(application, _post("acme", key, body))[0] == "413 Request Entity Too Large"


def test_a_failure_after_the_commit_is_answered_by_django_as_a_replay(
    community: Community, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If anything fails once the event may be stored, Django gets the request and ingests
    it again: the ledger's exactly-once keys answer it as the replay it is, never twice."""
    key = api_key_create(community=community, scopes=["events:write"], name="w")[1]
    real = fastpath.event_post

    def stored_then_failed(*args: Any) -> Any:
        real(*args)
        raise ConnectionError("the answer was lost")

    monkeypatch.setattr(fastpath, "event_post", stored_then_failed)
    body = {"id": "once", "type": "share", "member": "ann"}
    status, _headers, answer = _call(application, _post("acme", key, body))
    assert (status, json.loads(answer)["status"]) == ("200 OK", "replayed")
    from points.models import Event

    assert Event.objects.filter(community=community, client_id="once").count() == 1


def test_each_event_post_is_counted_once_against_the_rate_limit(community: Community) -> None:
    api_key, plain = api_key_create(community=community, scopes=["events:write"], name="b")
    throttles.rate_limit_leases_clear()
    with override_settings(API_RATE_LIMITS={"key": "2/h"}):
        answers = [
            _call(
                application, _post("acme", plain, {"id": f"r{k}", "type": "share", "member": "a"})
            )
            for k in range(3)
        ]
    assert [a[0] for a in answers] == ["201 Created", "201 Created", "429 Too Many Requests"]
    assert _hits(api_key.pk) == 3
    throttles.rate_limit_leases_clear()


def test_a_served_event_is_logged_and_measured_once(
    community: Community, caplog: pytest.LogCaptureFixture
) -> None:
    key = api_key_create(community=community, scopes=["events:write"], name="w")[1]
    route = "api/v1/communities/<slug:community>/events"
    counted = HTTP_REQUESTS.labels("POST", route, "201")
    before = counted._value.get()  # type: ignore[attr-defined]
    body = {"id": "logged", "type": "share", "member": "ann"}
    with caplog.at_level(logging.INFO, logger="incentives.access"):
        fast = _served_fast(_post("acme", key, body, HTTP_X_REQUEST_ID="ev-1"))
    assert fast is not None
    assert fast[0] == "201 Created"
    lines: list[Any] = [r for r in caplog.records if r.name == "incentives.access"]
    assert [(r.route, r.status, r.request_id, r.method) for r in lines] == [
        (route, 201, "ev-1", "POST")
    ]
    assert counted._value.get() == before + 1  # type: ignore[attr-defined]
