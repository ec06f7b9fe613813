"""The read-replica cases against a real streaming standby (docs/scaling.md).

Run by ``test_replica.test_real_replica_cases`` in a subprocess whose ``DATABASE_URL`` is the
private primary and ``DATABASE_REPLICA_URL`` its standby (collected only with
``SCALE_REPLICA_CASES=1``). No test database: the tests migrate the primary's ``app`` database
and work on it directly, committing (a write inside a test transaction would never reach the
standby), and they prove where a read went by pausing the standby's replay.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connections, router, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from config.db_router import max_lag_seconds, reads_from_replica, replica_lag
from incentives.reports import report_run
from points.models import Community, Member, PeriodKind
from points.selectors import leaderboard_page, period_resolve
from points.services import api_key_create, community_create, member_token_issue
from points.tasks import rank_snapshot_build_period

BASE = "/api/v1/communities/acme"
PROBE = "pg_last_wal_replay_lsn"  # the lag check itself, not a routed read


def _one(alias: str, sql: str, params: list[Any] | None = None) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def caught_up(timeout: float = 15.0) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    target = _one("default", "SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    while not _one("replica", "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]):
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.05)


@contextmanager
def replay_paused() -> Iterator[None]:
    _one("replica", "SELECT pg_wal_replay_pause()::text")
    deadline = time.monotonic() + 15
    while _one("replica", "SELECT pg_get_wal_replay_pause_state()") != "paused":
        assert time.monotonic() < deadline, "replay did not pause"
        time.sleep(0.02)
    try:
        yield
    finally:
        _one("replica", "SELECT pg_wal_replay_resume()::text")
        caught_up()


@contextmanager
def replica_reads() -> Iterator[list[str]]:
    """The SQL the standby ran inside (the lag probe left out)."""
    found: list[str] = []
    with CaptureQueriesContext(connections["replica"]) as captured:
        yield found
    found.extend(q["sql"] for q in captured.captured_queries if PROBE not in q["sql"])


@pytest.fixture(autouse=True)
def _database(django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="module")
def site(django_db_blocker: Any) -> dict[str, Any]:
    """Migrated ``app`` with community acme, a key with every scope, alice and bob with points
    and an all-time snapshot, replicated."""
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0)
        community = community_create(slug="acme", name="Acme", timezone_name="Asia/Shanghai")
        _, key = api_key_create(
            community=community, scopes=["events:write", "members:read", "admin"], name="bot"
        )
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        events = [
            {"id": "seed-1", "type": "check_in", "member": "alice"},
            {"id": "seed-2", "type": "check_in", "member": "bob"},
            {"id": "seed-3", "type": "message", "member": "bob"},
        ]
        posted = client.post(f"{BASE}/events/batch", {"events": events}, format="json")
        assert posted.status_code == 200, posted.content
        period = period_resolve(community, PeriodKind.ALL_TIME)
        rank_snapshot_build_period(community.pk, period.kind, period.start.isoformat())
        caught_up()
        cache.clear()  # the seed posts marked alice and bob as having written
        return {"community": community, "client": client, "period": period}


def _board(site: dict[str, Any]) -> dict[str, int]:
    answer = site["client"].get(f"{BASE}/leaderboard")
    assert answer.status_code == 200, answer.content
    return {row["member"]: row["points"] for row in answer.json()["results"]}


def _rank_points(site: dict[str, Any], member: str) -> int:
    answer = site["client"].get(f"{BASE}/members/{member}/rank")
    assert answer.status_code == 200, answer.content
    return int(answer.json()["points"])


def test_the_standby_streams_the_primarys_writes(site: dict[str, Any]) -> None:
    assert _one("replica", "SELECT pg_is_in_recovery()") is True
    assert _one("default", "SELECT pg_is_in_recovery()") is False
    streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
    assert _one("default", streaming) == 1
    Community.objects.filter(pk=site["community"].pk).update(name="Acme streamed")
    deadline = time.monotonic() + 10
    name = "SELECT name FROM points_community WHERE slug = 'acme'"
    while _one("replica", name) != "Acme streamed":
        assert time.monotonic() < deadline, "the write never reached the standby"
        time.sleep(0.05)


def test_the_routing_rule(site: dict[str, Any]) -> None:
    assert router.db_for_read(Member) == "default"  # unmarked
    with reads_from_replica():
        assert router.db_for_read(Member) == "replica"
        assert router.db_for_write(Member) == "default"
        from django.db import connection

        assert connection.alias == "replica"  # raw SQL on django.db.connection too
        with transaction.atomic():
            assert router.db_for_read(Member) == "default"  # a read in a transaction
            assert connection.alias == "default"
        assert Member.objects.filter(external_id="alice").get()._state.db == "replica"


def test_a_leaderboard_read_goes_to_the_replica(site: dict[str, Any]) -> None:
    community, period = site["community"], site["period"]
    before = _board(site)
    assert before["alice"] > 0
    with replay_paused():
        bump = "UPDATE points_ranksnapshot SET points = points + 1000 WHERE community_id = %s"
        with connections["default"].cursor() as cursor:
            cursor.execute(bump, [community.pk])
        with replica_reads() as on_replica:
            assert _board(site) == before  # the paused standby: the old value
        assert any("points_ranksnapshot" in sql for sql in on_replica)
        primary = {r.member: r.points for r in leaderboard_page(community, period)}
        assert primary["alice"] == before["alice"] + 1000  # the primary: the new one
        with transaction.atomic(), reads_from_replica():
            in_transaction = {r.member: r.points for r in leaderboard_page(community, period)}
        assert in_transaction == primary
    assert _board(site) == primary  # replayed


def test_writes_never_use_the_replica_and_reports_read_it(site: dict[str, Any]) -> None:
    client, community = site["client"], site["community"]

    def total() -> int:
        answer = client.get(f"{BASE}/reports/activity?weeks=1")
        assert answer.status_code == 200, answer.content
        return int(answer.json()["total"])

    before = total()
    with replay_paused():
        with replica_reads() as on_replica:
            carol = {"id": "w-1", "type": "check_in", "member": "carol"}
            one = client.post(f"{BASE}/events", carol, format="json")
            batch = client.post(
                f"{BASE}/events/batch",
                {"events": [{"id": "w-2", "type": "message", "member": "dave"}]},
                format="json",
            )
        assert (one.status_code, batch.status_code) == (201, 200), (one.content, batch.content)
        assert on_replica == []  # the write path never touched the standby
        with replica_reads() as on_replica:
            assert total() == before  # the report read the paused standby
        assert any("points_event" in sql for sql in on_replica)
        assert report_run(community, "activity", {"weeks": 1})["total"] == before + 2
    assert total() == before + 2


def test_member_reads_use_a_fresh_replica_even_on_an_idle_primary(site: dict[str, Any]) -> None:
    caught_up()
    cache.clear()
    time.sleep(max_lag_seconds() + 0.5)  # the last replayed commit is now older than the limit
    assert replica_lag() == 0.0  # but nothing is missing: the idle primary wrote no WAL
    with replica_reads() as on_replica:
        _rank_points(site, "bob")
    assert any("points_member" in sql for sql in on_replica)


def test_member_reads_fall_back_to_the_primary_when_the_replica_lags(
    site: dict[str, Any],
) -> None:
    community = site["community"]
    bob = Member.objects.get(community=community, external_id="bob")
    token, _ = member_token_issue(member=bob)
    cache.clear()
    before = _rank_points(site, "bob")
    with replay_paused():
        raise_bob = (
            # the all-time total is lifetime points (decision 48)
            "UPDATE points_member SET lifetime_points = lifetime_points + 500 WHERE id = %s"
        )
        with connections["default"].cursor() as cursor:
            cursor.execute(raise_bob, [bob.pk])  # the primary moves on, the standby does not
        time.sleep(max_lag_seconds() + 0.5)
        assert replica_lag() > max_lag_seconds()
        with replica_reads() as on_replica:
            assert _rank_points(site, "bob") == before + 500  # from the primary
            page = Client().get(f"/m/{token}/")
            assert page.status_code == 200
        assert on_replica == []  # only the lag probe ran there
        with replica_reads() as on_replica:
            _board(site)  # boards tolerate the lag: still the standby
        assert on_replica != []
    with replica_reads() as on_replica:
        assert _rank_points(site, "bob") == before + 500
    assert on_replica != []  # caught up again: the standby


def test_a_member_who_just_wrote_reads_the_primary(site: dict[str, Any]) -> None:
    client = site["client"]
    cache.clear()
    posted = client.post(
        f"{BASE}/events", {"id": "m-1", "type": "message", "member": "alice"}, format="json"
    )
    assert posted.status_code == 201, posted.content
    caught_up()
    with replica_reads() as on_replica:
        _rank_points(site, "alice")  # marked by the POST: the primary, however fresh the replica
    assert on_replica == []
    with replica_reads() as on_replica:
        _rank_points(site, "bob")  # bob did not write: the standby
    assert on_replica != []
    cache.clear()  # the mark expired
    with replica_reads() as on_replica:
        _rank_points(site, "alice")
    assert on_replica != []
