"""The lean path for the two hottest requests, answered before Django's handler: a member's
rank (``GET …/members/{m}/rank``) and a single event (``POST …/events``), by an API key.

Bots ask a member's rank and post an event on every chat message. Through Django's handler, its
eleven middleware, the URL resolver and DRF's request, parser, negotiation, authentication,
permission, throttle and response objects, a rank lookup cost about 600 µs of a worker's CPU
of which the lookup itself is about 130, and a new single event about 1,870 µs of which the
parse, validation, ingestion and answer are about 1,240 (docs/performance.md, "Issue 12,
2026-12-04 night").

Here the common request is answered by the same functions the views and their middleware
call: the host check (``HttpRequest.get_host``), the key check (``api_key_check``), the
community and scope (``key_allows``), the rate limit (``rate_limit_take``), the body's parser
(``LimitedJSONParser``), the view's own body (``member_rank_answer``, ``event_post`` and
``outcome_response``), the request id, metrics and access line (``request_observed``),
Django's request signals (old connections closed) and the liveness check
(``connections_checked``). The security, frame, language and ``Allow`` headers are the ones
Django's middleware and DRF put on these answers: learnt once per process (and settings) by
running that middleware over a template response, for plain and secure requests. What it
leaves out is what these requests do not need: the URL resolver, the session, authentication
and message middleware (already skipped for the API), CSRF (DRF's views are exempt), the locale
middleware's negotiation (no ``Accept-Language``, no cookie: the default language), DRF's
request wrapping, negotiation and view dispatch (bodies are encoded by the API's own
``JSONRenderer``).

Everything else is handed to Django untouched (``serve`` returns ``None``) and answered exactly
as before: another method or path; a rank query other than one ``period`` of all_time, month or
week; an event body that is not ``application/json`` with a length, or that the parser or the
validator refuses; an ``Accept`` other than JSON, an ``Accept-Language`` or a cookie; a member
token; a missing or bad key, a key of another community or without the scope; a refused rate
limit; an unknown member; a redirect or host check the middleware would answer; and any
error. Nothing is handed on after an event was written: once ``event_post`` returned, its
outcome is answered here (a conflict or an invalid event too, as ``outcome_response`` renders
it); if ``event_post`` raised, Django gets the request and ingests it again, which the ledger's
exactly-once keys make safe (a commit that did happen answers as a replay). A request the lean
path counted against the rate limit carries that decision (``RATE_DECIDED``), so Django does
not count it again. ``API_FAST_PATHS = False`` turns the path off (decision 58).
``tests/api/test_fastpath.py`` checks that both answer byte for byte alike.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.locale import LocaleMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import resolve
from django.utils import translation
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from api.auth import KEYWORD, api_key_check, key_allows
from api.leaderboards import _PERIOD_KINDS, MemberRankView, member_rank_answer
from api.middleware import connections_checked
from api.parsers import LimitedJSONParser
from api.throttles import RATE_DECIDED, rate_limit_take
from api.views import EventCreateView, event_post, outcome_response
from config.observability import request_id_for, request_id_var, request_observed
from points.ingest.records import IngestStatus
from points.models import CommunityApiKey

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]

# As the URLconf's ``<slug:community>`` and ``<member:member>`` converters match.
RANK_PATH = re.compile(r"/api/v1/communities/([-a-zA-Z0-9_]+)/members/([^/\x00]+)/rank")
EVENTS_PATH = re.compile(r"/api/v1/communities/([-a-zA-Z0-9_]+)/events")
_RANK_QUERIES = {"": "all_time", **{f"period={kind}": kind for kind in _PERIOD_KINDS}}
_ACCEPTED = frozenset({"", "*/*", "application/json"})
_JSON_BODIES = frozenset({"application/json", "application/json; charset=utf-8"})
JSON = "application/json"
_PARSER = LimitedJSONParser()
_RENDERER = JSONRenderer()  # the API's one renderer (REST_FRAMEWORK settings)


@dataclass(frozen=True)
class _Answer:
    status: int
    reason: str
    content_type: str
    body: bytes
    language: str


def serve(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes] | None:
    """The answer for a request the lean path serves; ``None``: Django serves it."""
    if not getattr(settings, "API_FAST_PATHS", True):
        return None
    method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
    if method == "GET":
        match = RANK_PATH.fullmatch(path)
        kind = _RANK_QUERIES.get(environ.get("QUERY_STRING", ""))
        if match is None or kind is None:
            return None
        try:
            # A member id is UTF-8 in the path; WSGI hands it over as latin-1 (PEP 3333).
            member = match.group(2).encode("latin-1").decode()
        except UnicodeError:
            return None
        answer: Callable[[CommunityApiKey], _Answer | None] = functools.partial(_rank, member, kind)
        view: Any = MemberRankView
    elif method == "POST":
        match = EVENTS_PATH.fullmatch(path)
        if match is None or environ.get("QUERY_STRING"):
            return None
        body = _body(environ)
        if body is None:
            return None
        answer, view = functools.partial(_event, body), EventCreateView
    else:
        return None
    if environ.get("HTTP_ACCEPT", "").strip() not in _ACCEPTED:
        return None
    if environ.get("HTTP_ACCEPT_LANGUAGE") or environ.get("HTTP_COOKIE"):
        return None
    keyword, _, key = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if keyword.lower() != KEYWORD or not key.strip():
        return None
    started = time.perf_counter()
    signals.request_started.send(sender=WSGIHandler, environ=environ)
    rid = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
    token = request_id_var.set(rid)
    try:
        answered = _checked(environ, match.group(1), key.strip(), view, answer)
    except (APIException, DisallowedHost):
        answered = None  # Django answers it (its 400, 401, 404 …)
    except Exception:
        log.warning("the lean path failed; Django serves the request", exc_info=True)
        answered = None
    finally:
        request_id_var.reset(token)
    if answered is None:
        return None
    done, secure = answered
    request_observed(
        method=method,
        path=path,
        route=_route(view),
        status=done.status,
        seconds=time.perf_counter() - started,
        request_id=rid,
        community=match.group(1),
    )
    start_response(
        f"{done.status} {done.reason}",
        [
            ("Content-Type", done.content_type),
            ("Content-Length", str(len(done.body))),
            *_headers(view, secure, done.language),
            ("X-Request-ID", rid),
        ],
    )
    return _Body(done.body)


def _body(environ: dict[str, Any]) -> bytes | None:
    """An event's JSON body with its length, read and put back for Django; ``None`` for one
    Django must read itself (another type, chunked, empty, over the size limit)."""
    if environ.get("CONTENT_TYPE", "").lower() not in _JSON_BODIES:
        return None
    length = environ.get("CONTENT_LENGTH", "")
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if not length.isdigit() or int(length) == 0 or (limit is not None and int(length) > limit):
        return None
    body: bytes = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)  # Django reads it again if the lean path hands on
    return body


def _checked(
    environ: dict[str, Any],
    slug: str,
    key: str,
    view: type[APIView],
    answer: Callable[[CommunityApiKey], _Answer | None],
) -> tuple[_Answer, bool] | None:
    """The answer, after the checks Django's middleware and DRF make first, and whether the
    request came over HTTPS; ``None`` for Django to answer."""
    request = WSGIRequest(dict(environ))  # a copy: it rewrites PATH_INFO, Django may need it
    secure = request.is_secure()
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None  # SecurityMiddleware's redirect to HTTPS: Django answers it
    if settings.PREPEND_WWW or settings.DISALLOWED_USER_AGENTS:
        return None  # CommonMiddleware's redirects and refusals: Django answers them
    request.get_host()  # DisallowedHost: Django answers it (as CommonMiddleware does)
    api_key = api_key_check(key)
    scope = getattr(view, "required_scope", None)
    if api_key.community.slug != slug or not key_allows(api_key, scope):
        return None
    wait = rate_limit_take(api_key)
    environ[RATE_DECIDED] = wait
    if wait is not None:
        return None  # Django answers the 429 (with this decision, not a second count)
    connections_checked()
    done = answer(api_key)
    return None if done is None else (done, secure)


def _language() -> str:
    return translation.get_supported_language_variant(settings.LANGUAGE_CODE)


def _rank(member: str, kind: str, api_key: CommunityApiKey) -> _Answer | None:
    body = member_rank_answer(api_key.community, member, kind)
    if body is None:
        return None  # Django answers the 404
    return _Answer(200, "OK", JSON, _RENDERER.render(body), _language())


_PLAIN = frozenset({IngestStatus.ACCEPTED, IngestStatus.REPLAYED})


def _event(body: bytes, api_key: CommunityApiKey) -> _Answer:
    data = _PARSER.parse(io.BytesIO(body))  # its APIException: Django answers the 400 / 413
    outcome = event_post(api_key.community, data)  # validation errors: Django answers them
    language = _language()
    if outcome.status in _PLAIN:
        response = outcome_response(outcome)
    else:
        with translation.override(language):  # a conflict's or invalid event's problem text
            response = outcome_response(outcome)
    return _Answer(
        response.status_code,
        response.reason_phrase,
        response.content_type or JSON,
        _RENDERER.render(response.data),
        language,
    )


class _Body:
    """The WSGI body; closing it ends the request as ``HttpResponse.close`` does (the
    ``request_finished`` signal: old connections closed)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        signals.request_finished.send(sender=WSGIHandler)


_SAMPLE_PATHS: dict[Any, str] = {
    MemberRankView: "/api/v1/communities/c/members/m/rank",
    EventCreateView: "/api/v1/communities/c/events",
}


@functools.cache
def _route(view: Any) -> str:
    """The view's route as Django's resolver names it (the metrics' and access log's label)."""
    return str(resolve(_SAMPLE_PATHS[view]).route)


@functools.cache
def _headers(view: Any, secure: bool, language: str) -> Headers:
    """The headers DRF and the middleware put on the view's answers besides their type, length
    and request id: ``Allow`` (DRF), then the locale, frame and security middleware's own, run
    over a template response (``secure``: a request over HTTPS, which adds HSTS)."""
    scheme = "https" if secure else "http"
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(),
        }
    )
    response = HttpResponse(b"", content_type=JSON)
    instance = view()
    instance.setup(request)  # as ``as_view`` does: a view with ``get`` also answers ``HEAD``
    response["Allow"] = ", ".join(instance.allowed_methods)
    with translation.override(language):
        LocaleMiddleware(_unused).process_response(request, response)
    XFrameOptionsMiddleware(_unused).process_response(request, response)
    SecurityMiddleware(_unused).process_response(request, response)
    return [(k, v) for k, v in response.items() if k not in ("Content-Type", "Content-Length")]


def _unused(request: Any) -> HttpResponse:
    raise AssertionError("only the middleware's response hook runs here")


def _forget_headers(**kwargs: Any) -> None:
    _headers.cache_clear()


setting_changed.connect(_forget_headers)  # tests that override the security settings
