"""The lean request path for machine callers: the API (``/api/v1/``) and the probes.

* ``Web*Middleware``: Django's session, authentication and messages middleware, run for the
  web pages (admin, member pages, API docs) and skipped for the API and the probes. The API
  authenticates every request by its ``Authorization`` header (an API key or a member token,
  ``api.auth``), never by a cookie: it has no session to load, no logged-in user and no
  messages. CSRF protection stays on for every path (it costs a cookie lookup; DRF's views are
  exempt from it, being authenticated by header), as do the locale (errors speak the
  request's language), security headers, request ids and metrics.
* ``DatabaseLivenessMiddleware``: the per-request check of a persistent database connection
  (``CONN_HEALTH_CHECKS``) done by polling its socket instead of a ``SELECT 1`` round trip.
* ``FastContentNegotiation``: DRF's content negotiation without parsing the common ``Accept``
  headers when the view has one renderer.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from rest_framework.negotiation import DefaultContentNegotiation

# Paths served without the web-only middleware: the API and the probes.
LEAN_PREFIXES = ("/api/v1/",)
LEAN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

GetResponse = Callable[[HttpRequest], HttpResponse]


def is_lean(request: HttpRequest) -> bool:
    path = request.path_info
    return path.startswith(LEAN_PREFIXES) or path in LEAN_PATHS


class _WebOnly(MiddlewareMixin):
    """Mixed into a Django middleware: run it for the web pages, skip it on the lean paths.
    (Subclasses, so that the admin's checks for its middleware still find them.)"""

    def __call__(self, request: HttpRequest) -> Any:
        if is_lean(request):
            return self.get_response(request)
        return super().__call__(request)


class WebSessionMiddleware(_WebOnly, SessionMiddleware):
    """``SessionMiddleware`` for the web pages (admin login, member pages)."""


class WebAuthenticationMiddleware(_WebOnly, AuthenticationMiddleware):
    """``AuthenticationMiddleware`` (``request.user``) for the web pages."""


class WebMessageMiddleware(_WebOnly, MessageMiddleware):
    """``MessageMiddleware`` for the web pages (the admin's notices)."""


def connection_alive(raw: Any) -> bool:
    """Whether an idle psycopg connection still stands, without a round trip: not closed or
    broken as far as libpq knows, and nothing waiting on its socket. An idle connection is sent
    nothing by a healthy server; a server that shut down, restarted, or ended the session
    (``pg_terminate_backend``, ``idle_session_timeout``, a pooler) has sent its error message
    or closed the socket, which makes it readable."""
    try:
        if raw.closed or raw.broken:
            return False
        poller = select.poll()
        poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False


class DatabaseLivenessMiddleware:
    """``CONN_HEALTH_CHECKS`` at the price of a ``poll()``: Django checks a persistent connection
    at its first use in each request with a ``SELECT 1`` (a round trip per request). Here it is
    checked when the request starts by ``connection_alive``; a dead one is closed (the request
    opens a new one when it needs it) and a live one is marked checked for this request, so
    Django does not check it again. What this cannot see (a peer that vanished without a word,
    e.g. a cut network) a ``SELECT 1`` would not see either before its own timeout; a request
    that fails on such a connection is answered 500 and Django drops the connection after it
    (``errors_occurred``). Celery and commands keep Django's own check."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        connections_checked()
        return self.get_response(request)


def connections_checked() -> None:
    """This thread's persistent connections checked as a request starts (see
    ``DatabaseLivenessMiddleware``): a live one marked checked, a dead one closed."""
    conn: Any
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is None or conn.in_atomic_block or not conn.health_check_enabled:
            continue
        if connection_alive(raw):
            conn.health_check_done = True
        else:
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110 - it is being dropped because it is dead
                conn.connection = None


class FastContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once for a view with a single renderer when the request
    accepts anything (no ``Accept`` header, or ``*/*``) or exactly that renderer's media type,
    and asks no ``?format=``: what ``DefaultContentNegotiation`` chooses then, without parsing
    the header. Anything else (an empty header, a list, parameters, another type) goes through
    DRF's own rules (406 when nothing matches)."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        if len(renderers) == 1 and not format_suffix:
            renderer = renderers[0]
            accept = request.META.get("HTTP_ACCEPT", "*/*").strip()
            if accept in ("*/*", renderer.media_type) and not (
                request.META.get("QUERY_STRING")
                and request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            ):
                return renderer, renderer.media_type
        return super().select_renderer(request, renderers, format_suffix)
