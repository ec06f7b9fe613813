"""The SQL of ingestion: one builder per statement, each returning a named ``Statement``;
``run`` sends a list of them in one psycopg pipeline (one round trip) and answers by name.

Rows go to PostgreSQL as one JSON parameter read by ``json_to_recordset`` (one ``orjson``
call, in C, instead of adapting an array per column; ``_recordset``). The arrays that remain
(keys to look up) go as array literals that ``run`` writes (``_array``), not as lists psycopg
adapts element by element in Python.

Every look-up by key is written so that one plan is possible: a ``LATERAL`` subquery probing
an index once per key, not ``community_id = %s AND key = ANY(%s)`` nor a join the planner may
turn into a hash join. The statements are prepared (decision 13), and a
generic plan does not know the array: without statistics (a new table, a fresh deployment,
autovacuum behind) PostgreSQL chose to read the community's whole range of the unique index
(``community_id`` is its first column) and to test each row against the array one element
after another: 34 ms to lock 480 of 5,500 members, 47 ms to find the ids of 500 events, a
cost that grows with the community and its history (decision 52).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
import psycopg
from django.db import connection
from psycopg import pq

from points.ingest.records import EventRow, LedgerRow, MemberState, OnceKey, TallyKey


class Statement(NamedTuple):
    name: str
    sql: str
    params: list[Any]


def run(statements: Sequence[Statement]) -> dict[str, list[tuple[Any, ...]]]:
    """Run the statements in one round trip (a pipeline when there are several); each one's
    rows by its name (empty when it returns none). Errors surface here and abort the
    transaction."""
    raw = connection.connection
    if raw is None:
        connection.ensure_connection()
        raw = connection.connection
    # psycopg's own cursors (with the server-side binding and preparation Django gives the
    # connection, decision 13), not Django's cursor wrappers, whose layers (debug hooks,
    # execute wrappers, an object per cursor) cost about as much CPU as the statements' own
    # adaptation here. What they guard is kept: a transaction already doomed by an error
    # refuses to go on, and psycopg's errors become Django's (so a broken connection is
    # marked and replaced).
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        if len(statements) == 1:  # no pipeline to open and sync for one statement
            [statement] = statements
            with raw.cursor() as cursor:
                cursor.execute(statement.sql, _params(statement))
                return {statement.name: _rows(cursor)}
        results: dict[str, list[tuple[Any, ...]]] = {}
        with raw.pipeline() as pipeline:
            cursors = []
            for statement in statements:
                cursor = raw.cursor()
                cursor.execute(statement.sql, _params(statement))
                cursors.append((statement.name, cursor))
            pipeline.sync()
            for name, cursor in cursors:
                results[name] = _rows(cursor)
                cursor.close()
        return results


def _params(statement: Statement) -> list[Any]:
    return [_array(p) if type(p) is list else p for p in statement.params]


def _array(items: list[Any]) -> str | list[Any]:
    """A list as PostgreSQL's array literal, for the ``%s::type[]`` cast that receives it (the
    string goes as an untyped parameter, which the cast types). psycopg adapts a list element
    by element in Python, 0.5 µs a string and 3 µs a timestamp, the keys of a batch of 500
    several thousand of them; a literal of strings or integers is one ``join``. A list holding
    anything but strings, integers, booleans, dates, times and None is left to psycopg."""
    kinds = set(map(type, items))
    if kinds == {str}:
        body = '","'.join(items)
        if '"' in body or "\\" in body:
            body = '","'.join(_escaped(text) for text in items)
        return '{"' + body + '"}'
    if kinds == {int}:
        return "{" + ",".join(map(str, items)) + "}"
    if kinds <= _ELEMENT_KINDS:
        return "{" + ",".join(map(_element, items)) + "}"
    return items


_ELEMENT_KINDS = {str, int, bool, dt.date, dt.datetime, type(None)}


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.date):  # and datetimes: ISO 8601, their offset included
        return '"' + value.isoformat() + '"'
    return '"' + _escaped(str(value)) + '"'


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _rows(cursor: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
    """The statement's rows, none when it returns none. Asked of the result's status, not of
    ``cursor.description``, which builds a column object per column on every call (in a
    profile of single events, more CPU than scoring)."""
    result = cursor.pgresult
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        return []
    return cursor.fetchall()


def _recordset(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a JSON array of objects for ``json_to_recordset``. orjson writes dates, times
    and the rest in C (the standard encoder called ``str`` per date: a tenth of a batch's CPU,
    spent holding the members' locks); what it refuses (an integer beyond 64 bits in a
    ``meta``) takes the standard encoder."""
    records = [dict(zip(names, row, strict=True)) for row in rows]
    try:
        return orjson.dumps(records).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(records, default=str, ensure_ascii=False)


# --- before the transaction -------------------------------------------------------------------


def stored_keys(community_id: int, client_ids: list[str], hinted: list[dt.datetime]) -> Statement:
    """Ids already used, with where their event is: one probe of the key table each (new
    events, the common case, stop here). A replay usually carries its first ``occurred_at``:
    the events stored at those times (``hinted``, literals, so the planner looks only at their
    months) come back in the same statement; the others cost ``stored_events``."""
    return Statement(
        "keys_stored",
        "SELECT k.client_id, k.id, k.occurred_at, e.body_hash, e.scoring, e.rule_version, "
        "m.external_id FROM unnest(%s::text[]) AS c(client_id) "
        "CROSS JOIN LATERAL (SELECT k.id, k.client_id, k.occurred_at FROM points_eventkey k "
        "WHERE k.community_id = %s AND k.client_id = c.client_id OFFSET 0) k "
        "LEFT JOIN LATERAL (SELECT e.body_hash, e.scoring, e.rule_version, e.member_id "
        "FROM points_event e WHERE e.id = k.id AND e.occurred_at = k.occurred_at "
        "AND e.occurred_at = ANY(%s::timestamptz[]) OFFSET 0) e ON true "
        "LEFT JOIN LATERAL (SELECT m.external_id FROM points_member m "
        "WHERE m.id = e.member_id OFFSET 0) m ON true",
        [client_ids, community_id, hinted],
    )


def stored_events(keys: Sequence[tuple[int, dt.datetime]]) -> Statement:
    """The stored events of these keys (id, occurred_at), with what renders their answer: a
    probe of the primary key each, in the months the keys name."""
    return Statement(
        "stored",
        """
        SELECT e.id, e.body_hash, e.scoring, e.rule_version, m.external_id
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS k(id, occurred_at)
        CROSS JOIN LATERAL (
            SELECT e.id, e.body_hash, e.scoring, e.rule_version, e.member_id
            FROM points_event e
            WHERE e.id = k.id AND e.occurred_at = k.occurred_at
              AND e.occurred_at = ANY(%s::timestamptz[])  -- prunes the other months at start
            OFFSET 0
        ) e
        CROSS JOIN LATERAL (
            SELECT m.external_id FROM points_member m WHERE m.id = e.member_id OFFSET 0
        ) m
        """,
        [[k[0] for k in keys], [k[1] for k in keys], sorted({k[1] for k in keys})],
    )


def prior_joins(community_id: int, joiners: list[str]) -> Statement:
    """Per joiner: the member whose stored invite of them came first, and whether they joined
    before."""
    return Statement(
        "joins",
        """
        SELECT j.ext,
               (SELECT m.external_id
                  FROM (  -- OFFSET 0: found by target, not by walking the ids in order
                    SELECT e.id, e.member_id FROM points_event e
                    WHERE e.community_id = %s AND e.type = 'invite' AND e.target = j.ext
                      AND e.target <> ''  -- lets the partial (community, type, target) index in
                      AND e.reversed_at IS NULL
                    OFFSET 0
                  ) e
                  CROSS JOIN LATERAL (
                    SELECT m.external_id FROM points_member m WHERE m.id = e.member_id OFFSET 0
                  ) m
                 WHERE m.external_id <> j.ext
                 ORDER BY e.id LIMIT 1),  -- arrived first: ids are taken as events arrive
               EXISTS (SELECT 1 FROM points_member m
                 CROSS JOIN LATERAL (
                   SELECT 1 FROM points_event e
                   WHERE e.community_id = m.community_id AND e.member_id = m.id
                     AND e.type = 'join'
                   OFFSET 0
                 ) e
                 WHERE m.community_id = %s AND m.external_id = j.ext)
        FROM unnest(%s::text[]) AS j(ext)
        """,
        [community_id, community_id, joiners],
    )


# --- lock and read ----------------------------------------------------------------------------


def generic_plans() -> Statement:
    """For the rest of the transaction, run prepared statements by their generic plan.

    Every statement of the transaction is written to have one good plan whatever its
    parameters (the module's docstring; ``tests/points/test_ingest_plans.py`` holds them to
    it), but PostgreSQL re-plans a prepared statement for each execution when its generic
    plan's estimate looks worse than the custom ones, as it does for arrays of one element: a
    single event's statements were planned anew every time (decision 55)."""
    return Statement(
        "generic_plans", "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)", []
    )


def members_insert(
    community_id: int, now: dt.datetime, new: Sequence[tuple[str, str, dt.datetime]]
) -> Statement:
    """Create members not seen before: (external id, display name, first seen). DO NOTHING
    leaves existing rows untouched (no dead row version per event)."""
    return Statement(
        "members_insert",
        """
        INSERT INTO points_member
            (community_id, external_id, display_name, status, balance, held,
             lifetime_points, joined_at, last_event_at, created_at)
        SELECT %s, x.external_id, x.display_name, 'active', 0, 0, 0, x.first_seen,
               x.first_seen, %s
        FROM json_to_recordset(%s::json)
             AS x(external_id text, display_name text, first_seen timestamptz)
        ORDER BY x.external_id COLLATE "C"
        ON CONFLICT (community_id, external_id) DO NOTHING
        """,
        [community_id, now, _recordset(("external_id", "display_name", "first_seen"), new)],
    )


def members_lock(community_id: int, external_ids: list[str]) -> Statement:
    """Lock every member the batch touches, with the community's rules revision.

    ``external_ids`` come sorted (Python's order of ``str`` is the byte order of their UTF-8,
    i.e. ``COLLATE "C"``, the order every service that locks several members uses): the
    nested loop over ``unnest`` probes and locks them one after another in that order."""
    return Statement(
        "members",
        """
        SELECT m.external_id, m.id, m.balance, m.lifetime_points, m.status,
               m.left_at, m.owed, m.streak_days, m.streak_last_day,
               (SELECT rules_revision FROM points_community WHERE id = %s) AS revision
        FROM unnest(%s::text[]) WITH ORDINALITY AS k(ext, n)
        CROSS JOIN LATERAL (
            SELECT * FROM points_member m
            WHERE m.community_id = %s AND m.external_id = k.ext
            FOR NO KEY UPDATE
        ) m
        ORDER BY k.n
        """,
        [community_id, external_ids, community_id],
    )


def tallies_read(
    community_id: int, spans: Sequence[tuple[str, str, dt.date, dt.date, str]]
) -> Statement:
    """Summed day tallies per (member, span, start, type) for spans (member's external id,
    span, first day, last day, type or '' for every type).

    One probe of the unique key per span: the tallies are read in a lateral subquery that
    ``OFFSET 0`` keeps from being flattened into the join. Flattened, the community's constant
    reaches the tallies, and on stale statistics the planner read the whole community's
    tallies once and joined every span against them (measured in the load test: 0.2 s per
    batch of 50, the step that held every member's lock)."""
    return Statement(
        "tallies",
        """
        SELECT m.id, k.span, k.start, t.event_type, sum(t.count)::int,
               sum(t.points)::int, (count(*) FILTER (WHERE t.count > 0))::int
        FROM unnest(%s::text[], %s::text[], %s::date[], %s::date[], %s::text[])
             AS k(ext, span, start, stop, type)
        CROSS JOIN LATERAL (  -- one probe per key, whatever the plan (module docstring)
            SELECT m.id, m.community_id FROM points_member m
            WHERE m.community_id = %s AND m.external_id = k.ext OFFSET 0
        ) m
        CROSS JOIN LATERAL (
            SELECT t.event_type, t.count, t.points FROM points_dailytally t
            WHERE t.community_id = m.community_id AND t.member_id = m.id
              AND t.day BETWEEN k.start AND k.stop AND (k.type = '' OR t.event_type = k.type)
            OFFSET 0
        ) t
        GROUP BY m.id, k.span, k.start, t.event_type
        """,
        [*([s[i] for s in spans] for i in range(5)), community_id],
    )


def keys_read(
    community_id: int, keys: list[str], member_keys: Sequence[tuple[str, str, str]]
) -> Statement:
    """Once-only keys already taken: ``keys`` as they are, and keys naming a member's id,
    given as (prefix, external id, suffix)."""
    return Statement(
        "keys",
        """
        SELECT a.key
        FROM unnest(%s::text[] || ARRAY(
            SELECT k.prefix || m.id || k.suffix
            FROM unnest(%s::text[], %s::text[], %s::text[]) AS k(prefix, ext, suffix)
            CROSS JOIN LATERAL (
                SELECT m.id FROM points_member m
                WHERE m.community_id = %s AND m.external_id = k.ext OFFSET 0
            ) m)) AS w(key)
        CROSS JOIN LATERAL (
            SELECT a.key FROM points_awardonce a
            WHERE a.community_id = %s AND a.key = w.key OFFSET 0
        ) a
        """,
        [keys, *([k[i] for k in member_keys] for i in range(3)), community_id, community_id],
    )


def hashes_read(community_id: int, probes: Sequence[tuple[str, str, dt.datetime]]) -> Statement:
    """Counted events per (member, content hash) since a time: one index probe each (only
    counted events keep their hash). The earliest time is repeated as a literal bound, so
    the planner keeps only the months from it on."""
    return Statement(
        "hashes",
        """
        SELECT m.id, e.content_hash, e.occurred_at
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS k(ext, content_hash, since)
        CROSS JOIN LATERAL (  -- one probe per key, whatever the plan (module docstring)
            SELECT m.id, m.community_id FROM points_member m
            WHERE m.community_id = %s AND m.external_id = k.ext OFFSET 0
        ) m
        CROSS JOIN LATERAL (
            SELECT e.content_hash, e.occurred_at FROM points_event e
            WHERE e.member_id = m.id AND e.content_hash = k.content_hash
              AND e.content_hash <> '' AND e.occurred_at >= k.since
              AND e.occurred_at >= %s AND e.reversed_at IS NULL
            OFFSET 0
        ) e
        """,
        [*([p[i] for p in probes] for i in range(3)), community_id, min(p[2] for p in probes)],
    )


def scored_read(
    community_id: int, probes: Sequence[tuple[str, str, dt.datetime, int]]
) -> Statement:
    """Events that paid points per (member, type) within a cooldown of a time (the widest
    window repeated as literal bounds, for the planner: see ``hashes_read``)."""
    earliest = min(p[2] - dt.timedelta(seconds=p[3]) for p in probes)
    latest = max(p[2] + dt.timedelta(seconds=p[3]) for p in probes)
    return Statement(
        "scored",
        """
        SELECT m.id, k.type, e.occurred_at
        FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::int[])
             AS k(ext, type, at, gap)
        CROSS JOIN LATERAL (  -- one probe per key, whatever the plan (module docstring)
            SELECT m.id, m.community_id FROM points_member m
            WHERE m.community_id = %s AND m.external_id = k.ext OFFSET 0
        ) m
        CROSS JOIN LATERAL (
            SELECT e.occurred_at FROM points_event e
            WHERE e.community_id = %s AND e.member_id = m.id
              AND e.occurred_at > k.at - k.gap * interval '1 second'
              AND e.occurred_at < k.at + k.gap * interval '1 second'
              AND e.type = k.type AND e.points > 0 AND e.reversed_at IS NULL
              AND e.occurred_at > %s AND e.occurred_at < %s
            OFFSET 0
        ) e
        """,
        [*([p[i] for p in probes] for i in range(4)), community_id, community_id, earliest, latest],
    )


# --- write ------------------------------------------------------------------------------------

_EVENT_COLUMNS = (
    "client_id",
    "member_id",
    "type",
    "occurred_at",
    "local_day",
    "target",
    "content",
    "score",
    "grp",
    "meta",
    "body_hash",
    "rule_version",
    "points",
    "scoring",
    "beneficiary_id",
    "content_hash",
)


def events_insert(community_id: int, now: dt.datetime, rows: Sequence[EventRow]) -> Statement:
    """The events and their keys, in one statement: the key is inserted first, and only the
    events whose key went in are; an id another transaction committed meanwhile is missing
    from RETURNING (the key's unique index is the exactly-once guarantee, decision 49)."""
    values = [
        (
            r.plan.event.client_id,
            r.member_id,
            r.plan.event.type,
            r.plan.occurred,
            r.plan.day,
            r.plan.event.target,
            r.plan.event.content,
            r.plan.event.score,
            r.plan.event.group,
            r.plan.event.meta or {},
            r.plan.hash,
            r.plan.version.version,
            r.points,
            r.record.to_json(),
            r.payee_id,
            r.content_hash,
        )
        for r in rows
    ]
    return Statement(
        "events",
        """
        WITH x AS MATERIALIZED (
            SELECT nextval('points_event_id_seq') AS id, x.*
            FROM json_to_recordset(%s::json)
                 AS x(client_id text, member_id bigint, type text, occurred_at timestamptz,
                      local_day date, target text, content jsonb, score smallint, grp text,
                      meta jsonb, body_hash text, rule_version int, points int,
                      scoring jsonb, beneficiary_id bigint, content_hash text)
        ), keys AS (
            INSERT INTO points_eventkey (id, community_id, client_id, occurred_at)
            SELECT x.id, %s, x.client_id, x.occurred_at FROM x
            ON CONFLICT (community_id, client_id) DO NOTHING
            RETURNING id
        )
        INSERT INTO points_event
            (id, community_id, client_id, member_id, type, occurred_at, received_at,
             local_day, target, content, score, "group", meta, body_hash, rule_version,
             points, scoring, beneficiary_id, content_hash)
        SELECT x.id, %s, x.client_id, x.member_id, x.type, x.occurred_at, %s, x.local_day,
               x.target, x.content, x.score, x.grp, x.meta, x.body_hash,
               x.rule_version, x.points, x.scoring, x.beneficiary_id, x.content_hash
        FROM x JOIN keys USING (id)
        RETURNING client_id
        """,
        [_recordset(_EVENT_COLUMNS, values), community_id, community_id, now],
    )


def tallies_write(community_id: int, day_tallies: Sequence[tuple[TallyKey, int, int]]) -> Statement:
    """Day tallies as they now stand: (key, count, points)."""
    return Statement(
        "tallies_write",
        """
        INSERT INTO points_dailytally AS t
            (community_id, member_id, day, event_type, count, points)
        SELECT %s, x.member_id, x.day, x.event_type, x.count, x.points
        FROM json_to_recordset(%s::json)
             AS x(member_id bigint, day date, event_type text, count int, points int)
        ON CONFLICT (community_id, member_id, day, event_type) DO UPDATE
            SET count = EXCLUDED.count, points = EXCLUDED.points
        """,
        [
            community_id,
            _recordset(
                ("member_id", "day", "event_type", "count", "points"),
                [(k.member_id, k.start, k.event_type, c, p) for k, c, p in day_tallies],
            ),
        ],
    )


def keys_insert(community_id: int, now: dt.datetime, keys: Sequence[OnceKey]) -> Statement:
    """Once-only keys; a key another transaction took meanwhile is missing from RETURNING."""
    return Statement(
        "keys_insert",
        """
        INSERT INTO points_awardonce
            (community_id, key, member_id, event_id, kind, achievement, created_at)
        SELECT %s, x.key, x.member_id, e.id, x.kind, x.achievement, %s
        FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[])
             AS x(key, member_id, client_id, kind, achievement)
        CROSS JOIN LATERAL (
            SELECT e.id FROM points_eventkey e
            WHERE e.community_id = %s AND e.client_id = x.client_id OFFSET 0
        ) e
        ON CONFLICT (community_id, key) DO NOTHING
        RETURNING key
        """,
        [community_id, now, *([k[i] for k in keys] for i in range(5)), community_id],
    )


def entries_insert(community_id: int, now: dt.datetime, entries: Sequence[LedgerRow]) -> Statement:
    """Ledger entries, in the order they were made (``n``)."""
    return Statement(
        "entries",
        """
        INSERT INTO points_ledgerentry
            (community_id, member_id, event_id, kind, points, balance_after, rule,
             rule_version, reason, created_at)
        SELECT %s, x.member_id, e.id, x.kind, x.points, x.balance_after, x.rule,
               x.rule_version, x.reason, %s
        FROM json_to_recordset(%s::json)
             AS x(client_id text, member_id bigint, kind text, points int,
                  balance_after bigint, rule text, rule_version int, reason text, n int)
        CROSS JOIN LATERAL (
            SELECT e.id FROM points_eventkey e
            WHERE e.community_id = %s AND e.client_id = x.client_id OFFSET 0
        ) e
        ORDER BY x.n
        """,
        [
            community_id,
            now,
            _recordset((*LedgerRow._fields, "n"), [(*e, n) for n, e in enumerate(entries)]),
            community_id,
        ],
    )


def members_update(members: Sequence[MemberState]) -> Statement:
    """Write back the locked members' state, by primary key alone: the ids are rows this
    transaction locked in the community, and a condition on ``community_id`` would let the
    planner read the community's range of the unique index instead (see the module's
    docstring)."""
    values = [
        (
            s.id,
            s.balance,
            s.lifetime,
            s.status,
            s.left_at,
            s.owed,
            s.streak.days,
            s.streak.last_day,
            s.last_seen,
            s.display_name,
        )
        for s in members
    ]
    return Statement(
        "members_update",
        """
        UPDATE points_member AS m
        SET balance = x.balance, lifetime_points = x.lifetime, status = x.status,
            left_at = x.left_at, owed = x.owed, streak_days = x.streak_days,
            streak_last_day = x.streak_last_day,
            last_event_at = GREATEST(m.last_event_at, x.last_event_at),
            display_name = COALESCE(NULLIF(x.display_name, ''), m.display_name)
        FROM json_to_recordset(%s::json)
             AS x(id bigint, balance bigint, lifetime bigint, status text,
                  left_at timestamptz, owed bigint, streak_days int,
                  streak_last_day date, last_event_at timestamptz, display_name text)
        WHERE m.id = x.id AND m.id = ANY(%s::bigint[])
        """,
        [
            _recordset(
                (
                    "id",
                    "balance",
                    "lifetime",
                    "status",
                    "left_at",
                    "owed",
                    "streak_days",
                    "streak_last_day",
                    "last_event_at",
                    "display_name",
                ),
                values,
            ),
            [s.id for s in members],
        ],
    )


def periods_add(
    community_id: int, deltas: Sequence[tuple[int, str, dt.date, int, bool]]
) -> Statement:
    """Add points to period totals: (member id, kind, start, points, member is active)."""
    return Statement(
        "periods",
        """
        INSERT INTO points_periodtotal AS p (community_id, member_id, kind, start, points,
                                             active)
        SELECT %s, x.member_id, x.kind, x.start, x.points, x.active
        FROM json_to_recordset(%s::json)
             AS x(member_id bigint, kind text, start date, points bigint, active boolean)
        ON CONFLICT (community_id, member_id, kind, start) DO UPDATE
            SET points = p.points + EXCLUDED.points, active = EXCLUDED.active
        """,
        [community_id, _recordset(("member_id", "kind", "start", "points", "active"), deltas)],
    )


def periods_active(community_id: int, changed: dict[int, bool]) -> Statement:
    """Keep ``active`` on a member's period totals in step with a leave or a re-join."""
    ids = sorted(changed)
    return Statement(
        "periods_active",
        """
        UPDATE points_periodtotal AS p SET active = x.active
        FROM unnest(%s::bigint[], %s::boolean[]) AS x(member_id, active)
        WHERE p.community_id = %s AND p.member_id = x.member_id
          AND p.active IS DISTINCT FROM x.active
        """,
        [ids, [changed[i] for i in ids], community_id],
    )


def rank_snapshots_stale(community_id: int) -> Statement:
    """A leave or a re-join changes who is ranked without a ledger entry: the next refresh
    rebuilds the community's snapshots."""
    return Statement(
        "ranks_stale",
        "UPDATE points_rankbuild SET ledger_high_water = -1 "
        "WHERE community_id = %s AND ledger_high_water <> -1",
        [community_id],
    )
