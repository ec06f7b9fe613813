"""The lean path of the API (api/middleware.py, api/throttles.py): no session, auth or messages
middleware on /api/v1/ and the probes while the web pages keep them; the rate limit's leases
never let a fleet past the limit; a dead database connection is replaced without a SELECT 1
per request; DRF's negotiation answered early only where it would answer the same."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import close_old_connections, connection, connections
from django.test import Client, override_settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIClient, APIRequestFactory

from api import throttles
from api.middleware import FastContentNegotiation, connection_alive
from points.models import Community
from points.services import EventInput, events_ingest
from tests.redis_db import REDIS, redis_up

API = "/api/v1/communities/acme"


# --- middleware: the API has no session; the web pages keep sessions, CSRF and messages ----


def test_the_api_sets_no_session_and_reads_none(
    community: Community, client_for: APIClient
) -> None:
    events_ingest(community=community, events=[EventInput("e1", "share", "ann")])
    client_for.cookies["sessionid"] = "whatever"
    with mock.patch(
        "django.contrib.sessions.backends.db.SessionStore.load",
        side_effect=AssertionError("the API must not load a session"),
    ):
        rank = client_for.get(f"{API}/members/ann/rank")
        posted = client_for.post(
            f"{API}/events",
            {"id": "e2", "type": "share", "member": "ann"},
            format="json",
        )
        health = client_for.get("/healthz")
    assert (rank.status_code, posted.status_code, health.status_code) == (200, 201, 200)
    for response in (rank, posted, health):
        assert "sessionid" not in response.cookies
        assert "csrftoken" not in response.cookies
        assert not hasattr(response.wsgi_request, "session")
        assert not hasattr(response.wsgi_request, "_messages")
        # what every response keeps: request id, security headers, the language
        assert response["X-Request-ID"]
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
    assert rank["Content-Language"] == "en"


def test_api_errors_still_speak_the_callers_language(client_for: APIClient) -> None:
    response = client_for.get(f"{API}/members/nobody/rank", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert response.status_code == 404
    assert response["Content-Language"] == "zh-hans"


def test_the_admin_keeps_sessions_csrf_and_messages(db: None) -> None:
    User.objects.create_superuser("root", "root@example.com", "pw-123456")
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/admin/login/")
    assert page.status_code == 200
    assert "csrftoken" in page.cookies
    forged = browser.post("/admin/login/", {"username": "root", "password": "pw-123456"})
    assert forged.status_code == 403  # no CSRF token: refused
    token = page.cookies["csrftoken"].value
    login = browser.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "pw-123456", "csrfmiddlewaretoken": token},
    )
    assert login.status_code == 302
    assert "sessionid" in login.cookies
    home = browser.get("/admin/")
    assert home.status_code == 200
    assert home.wsgi_request.user.is_authenticated
    assert hasattr(home.wsgi_request, "_messages")


# --- the rate limit's leases -----------------------------------------------------------------


@pytest.fixture(params=["postgresql", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    throttles.rate_limit_leases_clear()
    if request.param == "redis":
        if not redis_up():
            pytest.skip("no Redis at 127.0.0.1:6379")
        import redis

        redis.Redis.from_url(REDIS).flushdb()
        with override_settings(REDIS_URL=REDIS):
            yield request.param
    else:
        with override_settings(REDIS_URL=""):
            yield request.param
    throttles.rate_limit_leases_clear()


def test_lease_sizes() -> None:
    assert [throttles.lease_size(n) for n in (1, 7, 120, 199, 200, 1200, 10**8)] == [
        1,
        1,
        1,
        1,
        2,
        12,
        throttles.LEASE_MAX,
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("processes", [1, 4, 16])
def test_a_fleet_never_admits_more_than_the_limit(backend: str, processes: int) -> None:
    """``processes`` processes (each its own lease table) share one counter; requests arrive at
    random ones. Admitted: at most the limit, at least limit − processes × (lease − 1)."""
    limit, period = 1000, 3600
    size = throttles.lease_size(limit)
    tables: list[dict[Any, Any]] = [{} for _ in range(processes)]
    rng = random.Random(processes)
    now = 7200.0 + 10  # one window
    admitted = 0
    with mock.patch.object(throttles, "_leases", {}):
        for _ in range(2 * limit):
            table = tables[rng.randrange(processes)]
            with mock.patch.object(throttles, "_leases", table):
                ok, left = throttles.counter_take(f"fleet:{processes}", limit, period, now=now)
            admitted += ok
            assert left == 3590
    assert limit - processes * (size - 1) <= admitted <= limit
    if processes == 1:
        assert admitted == limit


@pytest.mark.django_db
def test_one_round_trip_per_lease_and_none_once_the_window_is_used_up(backend: str) -> None:
    calls: list[int] = []
    real = throttles.counter_hit

    def counted(*args: Any, **kwargs: Any) -> tuple[int, int]:
        calls.append(kwargs.get("hits", 1))
        return real(*args, **kwargs)

    with mock.patch.object(throttles, "counter_hit", counted):
        results = [throttles.counter_take("rt", 500, 60, now=600.0)[0] for _ in range(520)]
    assert results == [True] * 500 + [False] * 20
    assert calls == [5] * 100 + [5]  # 100 leases of 5, one more that came back empty
    # the next window starts afresh
    assert throttles.counter_take("rt", 500, 60, now=660.0) == (True, 60)


@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_across_real_processes(backend: str, community: Community) -> None:
    """Three separate Python processes, each taking 400 hits of a 1,000-per-hour limit through
    the shared counter: 1,000 admitted in all (leases of 10: no more, and none lost while
    every process keeps asking)."""
    import subprocess
    import sys

    from config.database import BASE_DIR

    script = (
        "import django, os, sys; django.setup()\n"
        "from django.conf import settings\n"
        "settings.REDIS_URL = os.environ['TEST_REDIS_URL']\n"
        "from api.throttles import counter_take\n"
        "n = sum(counter_take(sys.argv[1], 1000, 3600)[0] for _ in range(400))\n"
        "print(n)\n"
    )
    from django.conf import settings

    settings_dict = connection.settings_dict
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": (
            f"postgresql://{settings_dict['USER']}@{settings_dict['HOST'] or '127.0.0.1'}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
        ),
        "PYTHONPATH": str(BASE_DIR),
        "TEST_REDIS_URL": settings.REDIS_URL,
    }
    ident = f"procs:{backend}:{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", script, ident],
            env=env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    counts = [int(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert sum(counts) == 1000, counts


# --- the connection check without a round trip -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_live_connection_is_not_pinged_and_a_dead_one_is_replaced(
    community: Community, client_for: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    events_ingest(community=community, events=[EventInput("e1", "share", "ann")])
    # a persistent connection with Django's health checks on, as in production
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    connection.close()
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    close_old_connections()  # what Django does when a request starts
    with mock.patch.object(
        type(connections["default"]), "is_usable", side_effect=AssertionError("SELECT 1 issued")
    ):
        assert client_for.get(f"{API}/members/ann/rank").status_code == 200
    assert connection.connection is not None
    assert connection_alive(connection.connection)

    settings_dict = connection.settings_dict
    url = (
        f"postgresql://{settings_dict['USER']}@{settings_dict['HOST'] or '127.0.0.1'}:"
        f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
    )
    with psycopg.connect(url, autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while connection_alive(connection.connection) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connection_alive(connection.connection)
    close_old_connections()
    response = client_for.get(f"{API}/members/ann/rank")  # no 500: a new connection
    assert response.status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
    connection.close()


# --- content negotiation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "*/*",
        "application/json",
        " application/json ",
        "application/*",
        "text/html",
        "application/json; indent=4",
        "text/html, application/json;q=0.9",
    ],
)
@pytest.mark.parametrize("query", ["", "format=json", "format=xml", "period=week"])
def test_fast_negotiation_chooses_what_drf_chooses(accept: str | None, query: str) -> None:
    factory = APIRequestFactory()
    headers: dict[str, Any] = {} if accept is None else {"HTTP_ACCEPT": accept}

    def outcome(negotiation: Any) -> Any:
        request = Request(factory.get(f"/x?{query}", **headers))
        try:
            renderer, media_type = negotiation.select_renderer(request, [JSONRenderer()])
        except Exception as exc:  # noqa: BLE001 - the same exception is the point
            return type(exc).__name__
        return type(renderer).__name__, media_type

    assert outcome(FastContentNegotiation()) == outcome(DefaultContentNegotiation())


# --- the rank path's query -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 200),
        ("period=all_time", 200),
        ("period=week", 200),
        ("period=month", 200),
        ("period=month&month=2026-01", 200),
        ("period=", 400),
        ("period=year", 400),
        ("period=week&period=month", 200),
        ("period=month&month=2026-13", 400),
    ],
)
def test_rank_queries_read_directly_answer_as_the_serializer(
    community: Community, client_for: APIClient, query: str, status: int
) -> None:
    events_ingest(community=community, events=[EventInput("e1", "share", "ann")])
    fast = client_for.get(f"{API}/members/ann/rank?{query}")
    with mock.patch("api.leaderboards._rank_query", lambda r: _serializer_query(r)):
        slow = client_for.get(f"{API}/members/ann/rank?{query}")
    assert fast.status_code == slow.status_code == status
    assert _strip(fast.json()) == _strip(slow.json())


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("age_seconds", "instance")}


def _serializer_query(request: Any) -> dict[str, Any]:
    from api.leaderboards import _PERIOD_QUERY, _query

    return _query(_PERIOD_QUERY, request)
