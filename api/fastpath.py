"""The lean path for rank lookups: ``GET …/members/{m}/rank`` answered before Django's handler.

Bots ask a member's rank on every command, and the member page asks it on every view. Through
Django's handler, its eleven middleware, the URL resolver and DRF's request, negotiation and
response objects, one lookup costs about 600 µs of a worker's CPU, of which the lookup itself
(one indexed statement) is about 150 (docs/performance.md, "Issue 12, 2026-12-04 night").

Here the common request, a well-formed ``GET`` by an API key, is answered by the same functions
the view and its middleware call: the host check (``HttpRequest.get_host``), the key check
(``api_key_check``), the community and scope (``key_allows``), the rate limit
(``rate_limit_take``), the answer (``member_rank_answer``), the request id, metrics and access
log line (``request_observed``), Django's request signals (old connections closed) and the
liveness check (``connections_checked``). The security, frame, language and ``Allow`` headers
are the ones Django's middleware and DRF put on this answer: learnt once per process (and
settings) by running that middleware over a template response, for plain and secure requests.
What it leaves out is what this request does not need: the URL resolver, the session,
authentication and message middleware (already skipped for the API), CSRF (a ``GET``), the
locale middleware's negotiation (no ``Accept-Language``, no cookie: the default language; the
answer holds no translated text), DRF's request wrapping, negotiation, view dispatch and
renderer (the body is encoded as DRF's ``JSONRenderer`` does: compact, UTF-8, no NaN).

Everything else is handed to Django untouched (``serve`` returns ``None``) and answered exactly
as before: another method or path, a query other than one ``period`` of all_time, month or
week, an ``Accept`` other than JSON, an ``Accept-Language`` or a cookie (the language would have
to be negotiated), a member token, a missing or bad key, a key of another community or without
the scope, a refused rate limit, an unknown member, a redirect or host check the middleware
would answer, and any error. A request the lean path counted against the rate limit carries
that decision (``RATE_DECIDED``), so Django does not count it again. ``API_FAST_RANK = False``
turns the path off. ``tests/api/test_fastpath.py`` checks that both answer byte for byte alike.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.core.signals import setting_changed
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import resolve
from django.utils import translation
from django.utils.cache import patch_vary_headers
from rest_framework.exceptions import APIException

from api.auth import KEYWORD, api_key_check, key_allows
from api.leaderboards import _PERIOD_KINDS, MemberRankView, member_rank_answer
from api.middleware import connections_checked
from api.throttles import RATE_DECIDED, rate_limit_take
from config.observability import request_id_for, request_id_var, request_observed

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Headers = list[tuple[str, str]]

# As the URLconf's ``<slug:community>`` and ``<member:member>`` converters match.
RANK_PATH = re.compile(r"/api/v1/communities/([-a-zA-Z0-9_]+)/members/([^/\x00]+)/rank")
_QUERIES = {"": "all_time", **{f"period={kind}": kind for kind in _PERIOD_KINDS}}
_ACCEPTED = frozenset({"", "*/*", "application/json"})
CONTENT_TYPE = "application/json"


def serve(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes] | None:
    """The rank answer for a request the lean path serves; ``None``: Django serves it."""
    if not getattr(settings, "API_FAST_RANK", True) or environ.get("REQUEST_METHOD") != "GET":
        return None
    match = RANK_PATH.fullmatch(environ.get("PATH_INFO", ""))
    kind = _QUERIES.get(environ.get("QUERY_STRING", ""))
    if match is None or kind is None:
        return None
    if environ.get("HTTP_ACCEPT", "").strip() not in _ACCEPTED:
        return None
    if environ.get("HTTP_ACCEPT_LANGUAGE") or environ.get("HTTP_COOKIE"):
        return None
    keyword, _, key = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
    if keyword.lower() != KEYWORD or not key.strip():
        return None
    try:
        # A member id is UTF-8 in the path; WSGI hands it over as latin-1 (PEP 3333).
        member = match.group(2).encode("latin-1").decode()
    except UnicodeError:
        return None
    started = time.perf_counter()
    signals.request_started.send(sender=WSGIHandler, environ=environ)
    rid = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
    token = request_id_var.set(rid)
    try:
        answered = _answer(environ, match.group(1), member, kind, key.strip())
    except (APIException, DisallowedHost):
        answered = None  # Django answers it (its 401, 404, 400 …)
    except Exception:
        log.warning("the lean rank path failed; Django serves the request", exc_info=True)
        answered = None
    finally:
        request_id_var.reset(token)
    if answered is None:
        return None
    body, headers = answered
    request_observed(
        method="GET",
        path=environ["PATH_INFO"],
        route=_route(),
        status=200,
        seconds=time.perf_counter() - started,
        request_id=rid,
        community=match.group(1),
    )
    start_response(
        "200 OK",
        [
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(len(body))),
            *headers,
            ("X-Request-ID", rid),
        ],
    )
    return _Answer(body)


def _answer(
    environ: dict[str, Any], slug: str, member: str, kind: str, key: str
) -> tuple[bytes, Headers] | None:
    """The body and the middleware's headers, or ``None`` for Django to answer."""
    request = WSGIRequest(dict(environ))  # a copy: it rewrites PATH_INFO, Django may need it
    secure = request.is_secure()
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None  # SecurityMiddleware's redirect to HTTPS: Django answers it
    if settings.PREPEND_WWW or settings.DISALLOWED_USER_AGENTS:
        return None  # CommonMiddleware's redirects and refusals: Django answers them
    request.get_host()  # DisallowedHost: Django answers it (as CommonMiddleware does)
    api_key = api_key_check(key)
    if api_key.community.slug != slug or not key_allows(api_key, MemberRankView.required_scope):
        return None
    wait = rate_limit_take(api_key)
    environ[RATE_DECIDED] = wait
    if wait is not None:
        return None  # Django answers the 429 (with this decision, not a second count)
    connections_checked()
    body = member_rank_answer(api_key.community, member, kind)
    if body is None:
        return None  # Django answers the 404
    return _json(body), _headers(secure)


def _json(data: Any) -> bytes:
    """As DRF's ``JSONRenderer`` (``UNICODE_JSON``, ``COMPACT_JSON``, ``STRICT_JSON``) renders
    the plain data of an answer (strings, numbers, ``None``, lists and dicts)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


class _Answer:
    """The WSGI body; closing it ends the request as ``HttpResponse.close`` does (the
    ``request_finished`` signal: old connections closed)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        signals.request_finished.send(sender=WSGIHandler)


@functools.cache
def _route() -> str:
    """The rank route as Django's resolver names it (the metrics' and access log's label)."""
    return str(resolve("/api/v1/communities/c/members/m/rank").route)


@functools.cache
def _headers(secure: bool) -> Headers:
    """The headers DRF and the middleware put on a rank answer besides its type, length and
    request id: ``Allow`` (DRF), then the locale, frame and security middleware's own, run over
    a template response (``secure``: a request over HTTPS, which adds HSTS)."""
    scheme = "https" if secure else "http"
    request = WSGIRequest(
        {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(),
        }
    )
    response = HttpResponse(b"", content_type=CONTENT_TYPE)
    view = MemberRankView()
    view.setup(request)  # as ``as_view`` does: a view with ``get`` also answers ``HEAD``
    response["Allow"] = ", ".join(view.allowed_methods)
    patch_vary_headers(response, ("Accept-Language",))
    response.headers.setdefault(
        "Content-Language", translation.get_supported_language_variant(settings.LANGUAGE_CODE)
    )
    XFrameOptionsMiddleware(_unused).process_response(request, response)
    SecurityMiddleware(_unused).process_response(request, response)
    return [(k, v) for k, v in response.items() if k not in ("Content-Type", "Content-Length")]


def _unused(request: Any) -> HttpResponse:
    raise AssertionError("only the middleware's response hook runs here")


def _forget_headers(**kwargs: Any) -> None:
    _headers.cache_clear()


setting_changed.connect(_forget_headers)  # tests that override the security settings
