"""Ingestion's look-ups probe an index per key whatever the planner knows (decision 52).

The statements are prepared, so after five runs a connection may use a generic plan, which
does not know how many keys an array holds; without statistics (a new deployment, a table
autovacuum has not reached) PostgreSQL chose, for ``community_id = %s AND key = ANY(%s)``, to
read the community's whole range of the unique index and test each row against the array.
Here every statement that looks rows up by key is planned generically with no statistics,
over a community of a few thousand members and events, and each scan of a table it looks up
must be an index scan whose condition names the key, not the community alone."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from points.ingest import event_ingest, statements
from points.ingest.records import EventInput, LedgerRow, MemberState, OnceKey
from points.models import Community
from points.scoring import StreakState

MEMBERS = 3000
# The tables looked up by key, and the columns a probe of each must name besides the community.
KEY_COLUMNS = {
    "points_member": ("external_id", "id"),
    "points_eventkey": ("client_id",),
    "points_awardonce": ("key",),
    "points_dailytally": ("member_id",),
    # its months (points_event_pYYYY_MM); a cooldown's look-up may take the index of the
    # type's events over the cooldown's minutes instead of the member's
    "points_event": ("id", "member_id", "target", "type"),
}
LOOKED_UP = tuple(KEY_COLUMNS)
PROBES = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")  # a bitmap's condition: its index's


@pytest.fixture
def crowded(community: Community) -> Community:
    """A community of ``MEMBERS`` members with an event each, and no statistics."""
    now = dt.datetime.now(dt.UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO points_member (community_id, external_id, display_name, status, "
            "balance, held, lifetime_points, owed, streak_days, joined_at, last_event_at, "
            "created_at) SELECT %s, 'm' || lpad(n::text, 5, '0'), '', 'active', 0, 0, 0, 0, 0, "
            "%s, %s, %s FROM generate_series(1, %s) AS n",
            [community.pk, now, now, now, MEMBERS],
        )
        cursor.execute(  # an event each (a trigger writes its key), in this month
            "INSERT INTO points_event (id, community_id, client_id, member_id, type, "
            'occurred_at, received_at, local_day, target, score, "group", meta, body_hash, '
            "rule_version, points, scoring, beneficiary_id, content_hash) "
            "SELECT m.id, m.community_id, 'e-' || m.id, m.id, 'share', %s, %s, %s, '', NULL, "
            "'', '{}', '', 1, 1, '{}', m.id, 'h' || m.id FROM points_member m "
            "WHERE m.community_id = %s",
            [now, now, now.date(), community.pk],
        )
        tables = [*LOOKED_UP, "points_periodtotal", "points_event", "points_ledgerentry"]
        cursor.execute("DELETE FROM pg_statistic WHERE starelid = ANY(%s::regclass[])", [tables])
        cursor.execute(
            "UPDATE pg_class SET reltuples = -1 WHERE oid = ANY(%s::regclass[])", [tables]
        )
    return community


def _generic_plan(statement: statements.Statement) -> dict[str, Any]:
    """EXPLAIN of the statement's generic plan (what a prepared statement may run)."""
    count = 0

    def number(_match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    sql = re.sub(r"%s", number, statement.sql)
    raw = connection.connection
    with psycopg.ClientCursor(raw) as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE probe_plan AS {sql}")
        try:
            arguments = ", ".join(["%s"] * len(statement.params))
            cursor.execute(
                f"EXPLAIN (FORMAT JSON) EXECUTE probe_plan({arguments})", statement.params
            )
            return cursor.fetchone()[0][0]["Plan"]  # type: ignore[index]
        finally:
            cursor.execute("DEALLOCATE probe_plan")


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _bad_scans(plan: dict[str, Any]) -> list[str]:
    """Scans of a looked-up table that are not an index probe by its key."""
    this_month = f"points_event_p{dt.datetime.now(dt.UTC):%Y_%m}"
    bad = []
    for node in _nodes(plan):
        name = node.get("Relation Name", "")
        table = re.sub(r"_p\d{4}_\d{2}$", "", name)
        if table != name and name != this_month:
            continue  # another month: empty here, and pruned when the statement runs
        if table not in KEY_COLUMNS or "Scan" not in node["Node Type"]:
            continue
        condition = node.get("Index Cond", node.get("Recheck Cond", ""))
        if node["Node Type"] not in PROBES or not any(
            re.search(rf"\b{column}\b", condition) for column in KEY_COLUMNS[table]
        ):
            bad.append(f"{node['Node Type']} on {name}: {condition or node.get('Filter', '')}")
    return bad


def _outline(plan: dict[str, Any], depth: int = 0) -> str:
    """The plan as indented lines (node, relation, conditions), for a failure's message."""
    parts = [plan["Node Type"], plan.get("Relation Name", "")]
    parts += [
        f"{k}: {plan[k]}"
        for k in ("Index Name", "Index Cond", "Recheck Cond", "Filter")
        if k in plan
    ]
    lines = ["  " * depth + " ".join(p for p in parts if p)]
    lines += [_outline(child, depth + 1) for child in plan.get("Plans", [])]
    return "\n".join(lines)


def _members(n: int) -> list[str]:
    return [f"m{i:05d}" for i in range(1, n + 1)]


def _statements(community_id: int) -> list[statements.Statement]:
    now = dt.datetime.now(dt.UTC)
    today = now.date()
    exts = _members(400)
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM points_member WHERE community_id = %s", [community_id])
        first = cursor.fetchone()[0]
    ids = [f"e-{i}" for i in range(first, first + 400)]
    states = _states(community_id, exts)
    entries = [LedgerRow(c, 1, "award", 1, 1, "points.check_in", 1, "") for c in ids]
    keys = [OnceKey(f"k-{c}", 1, c, "streak", "") for c in ids]
    return [
        statements.stored_keys(community_id, ids, [now]),
        statements.stored_events([(i, now) for i in range(first, first + 400)]),
        statements.members_insert(community_id, now, [(ext, "", now) for ext in exts]),
        statements.members_lock(community_id, exts),
        statements.tallies_read(
            community_id, [(ext, "day", today, today, "check_in") for ext in exts]
        ),
        statements.keys_read(community_id, [k.key for k in keys], [("s:", e, ":x") for e in exts]),
        statements.keys_insert(community_id, now, keys),
        statements.entries_insert(community_id, now, entries),
        statements.hashes_read(
            community_id, [(ext, "h", now - dt.timedelta(days=7)) for ext in exts]
        ),
        statements.scored_read(community_id, [(ext, "share", now, 600) for ext in exts]),
        statements.prior_joins(community_id, exts),
        statements.members_update(states),
        statements.periods_active(community_id, {m.id: False for m in states}),
    ]


def _states(community_id: int, exts: list[str]) -> list[MemberState]:
    """The members as the write-back receives them (locked rows, changed in memory)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, external_id FROM points_member WHERE community_id = %s "
            "AND external_id = ANY(%s) ORDER BY id",
            [community_id, exts],
        )
        rows = cursor.fetchall()
    return [MemberState(id, ext, 1, 1, "active", None, 0, StreakState(0, None)) for id, ext in rows]


def test_every_look_up_by_key_is_an_index_probe_in_a_generic_plan(crowded: Community) -> None:
    checked = []
    for statement in _statements(crowded.pk):
        plan = _generic_plan(statement)
        assert not _bad_scans(plan), (statement.name, _bad_scans(plan), _outline(plan))
        checked.append(statement.name)
    assert checked == [
        "keys_stored",
        "stored",
        "members_insert",
        "members",
        "tallies",
        "keys",
        "keys_insert",
        "entries",
        "hashes",
        "scored",
        "joins",
        "members_update",
        "periods_active",
    ]


def test_the_check_sees_the_plan_it_guards_against(crowded: Community) -> None:
    """The statement form decision 52 replaced, planned the same way, is caught."""
    old = statements.Statement(
        "members_any",
        "SELECT m.id FROM points_member m WHERE m.community_id = %s AND m.external_id = ANY(%s) "
        'ORDER BY m.external_id COLLATE "C" FOR NO KEY UPDATE OF m',
        [crowded.pk, _members(400)],
    )
    assert _bad_scans(_generic_plan(old))


def test_ingestion_runs_its_prepared_statements_by_generic_plans(community: Community) -> None:
    """Decision 55: PostgreSQL plans a prepared statement anew for each of its first five
    executions, and after that whenever the generic plan looks worse (it does for arrays of
    one element); the ingestion transaction forces the generic plan, so its prepared
    statements are never planned per run."""
    if connection.connection is None:
        connection.ensure_connection()
    if connection.connection.prepare_threshold is None:  # type: ignore[union-attr]
        pytest.skip("statements are not prepared on this connection (DB_PREPARE_THRESHOLD)")
    for n in range(12):  # past the threshold at which psycopg prepares a statement
        outcome = event_ingest(
            community=community,
            event=EventInput(client_id=f"plan-{n}", type="message", member=f"m{n % 3}"),
        )
        assert outcome.status == "accepted"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE %s OR statement LIKE %s",
            ["%FOR NO KEY UPDATE%", "%INSERT INTO points_ledgerentry%"],
        )
        prepared = cursor.fetchall()
    assert len(prepared) == 2, prepared
    for statement, generic, custom in prepared:
        assert custom == 0, (statement[:80], generic, custom)
        assert generic >= 1, (statement[:80], generic, custom)


def test_the_reference_checks_probe_members_and_keys_by_id(crowded: Community) -> None:
    """Decision 56: the statement triggers that replaced the events' and ledger entries'
    foreign keys look each member and event key up by its primary key, with no statistics
    (their plans are cached for the session). Their plans are read from auto_explain, sent
    to this connection as notices."""
    if connection.connection is None:
        connection.ensure_connection()
    raw = connection.connection
    plans: dict[str, dict[str, Any]] = {}  # the checks' plans by the rows they check

    def keep(notice: Any) -> None:
        text = notice.message_primary or ""
        if '"Plan"' not in text:
            return
        logged = json.loads(text[text.index("{") :])
        for rows in ("inserted_events", "inserted_entries"):
            if f"FROM {rows} e" in logged["Query Text"]:
                plans[rows] = logged["Plan"]

    raw.add_notice_handler(keep)
    try:
        with connection.cursor() as cursor:
            # the fixture's events took ids from the members'
            cursor.execute(
                "SELECT setval('points_event_id_seq', (SELECT max(id) FROM points_event))"
            )
            cursor.execute("LOAD 'auto_explain'")
            for setting in (
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_nested_statements = on",
                "auto_explain.log_format = json",
                "auto_explain.log_verbose = on",
                "client_min_messages = log",
            ):
                cursor.execute(f"SET {setting}")
        outcome = event_ingest(
            community=crowded, event=EventInput(client_id="refs", type="share", member="m00001")
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET client_min_messages")
            cursor.execute("RESET auto_explain.log_min_duration")
        raw.remove_notice_handler(keep)
    assert outcome.status == "accepted"
    scanned = {
        rows: sorted(
            (node["Relation Name"], node["Node Type"], node.get("Index Name", ""))
            for node in _nodes(plan)
            if "Relation Name" in node
        )
        for rows, plan in plans.items()
    }
    assert scanned == {
        "inserted_events": [("points_member", "Index Scan", "points_member_pkey")] * 2,
        "inserted_entries": [
            ("points_eventkey", "Index Scan", "points_eventkey_pkey"),
            ("points_member", "Index Scan", "points_member_pkey"),
        ],
    }, {rows: _outline(plan) for rows, plan in plans.items()}
