"""Incentive jobs (tiers, KOC detection, the monthly honor roll) on one large community, each
beside one raw aggregate pass over the same events.

The community (default 1,000,000 members, 20,000,000 events over the last 90 local days) is
generated with set-based SQL into the migrated schema: ``INSERT … SELECT`` over
``generate_series``, no API and no loop per row in Python. Its shape:

- members fall into activity classes by an *activity rank* r (1 = most active): 0.1% check in
  every day, 1.9% are core (active 60-95% of days), 8% regular (15-60%), 30% occasional (1-5%),
  60% lurkers (0.4%; half of them joined during the window, some of those invited, 1.7% left).
  A member's external id and primary key come from r through a fixed permutation, so active
  members are scattered through the tables as in a real community;
- what a member earns is generated as their *daily tallies* first (per member, local day and
  type: check-in, messages, shares, posts, featured posts, help, reactions received, invitees),
  with the default rules' points, per-type daily caps and the 200-point daily total (applied in
  a fixed type order); the events are the expansion of those tallies, so ``points_dailytally``,
  ``points_event.points`` and the month totals agree exactly;
- reactions: member = reactor (any engaged member), beneficiary = author, target = one of the
  author's contents (a few draw most). A quarter of them go to a few hundred "stars" (one in
  2,500 members, among those who post; Zipf-like among them), the rest evenly to the 40% of
  members who are engaged (a handful a month each); 20 rings of 5 lurkers react to each other
  every day of the last 30 (the KOC job must damp them);
- joins (with the inviter as beneficiary for 40%, paid within the invite caps) and the invites
  before them, peer scores (60% of 4-5), help (target = the member helped);
- seeded state as if the jobs had run before: staff, KOLs and an owner (trusted seeds), a few
  dozen confirmed KOCs (confirmed last month), tiers of core and regular members with their
  promotion history, and a webhook endpoint subscribed to every topic (so the jobs' messages
  are written to the outbox, as for a community that uses webhooks).

Not generated (no job reads them): ledger entries, once-only award keys, streak and quota
bonuses, rank snapshots. Reactors are drawn at random, so a popular content may get the same
member's reaction twice; the engine would pay the second nothing, here it counts like any other.

Indexes and constraints of the two big tables are dropped before the load and recreated after
it from their own definitions (captured from the migrated schema, checked equal afterwards).

Each job is then called in-process through Django (``tiers_evaluate``, ``koc_detect``,
``honor_roll_publish``: the functions the Celery tasks call) inside a transaction that is
rolled back when it returns: the ``run_once`` fence row and everything the job wrote vanish, so
every timed run does the whole work on the same data (the time is the job's, up to but without
its final COMMIT). Its raw baseline is one psycopg pass
``SELECT member_id, sum(points) FROM points_event WHERE community_id = … GROUP BY member_id``
(all rows fetched), run before and after each job; the figure uses their mean (and, with
BENCH_JOB_RUNS > 1, the job's fastest run).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import sys
import threading
import time
import zoneinfo
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

DAYS = 90
TZ = "Asia/Shanghai"
SLUG = "jobs-bench"
META = "bench_jobs_meta"
BIG_TABLES = ("points_event", "points_dailytally")

# Activity classes by activity rank r: (upper bound as a share of members, check-in
# probability on an active day, share, post, featured post, help, message weight).
CLASSES = (
    (0.001, 1.00, 0.20, 0.40, 0.05, 0.15, 6),  # every day
    (0.02, 0.90, 0.20, 0.35, 0.04, 0.10, 5),  # core
    (0.10, 0.80, 0.15, 0.15, 0.01, 0.05, 3),  # regular (with the above: the authors)
    (0.40, 0.60, 0.10, 0.05, 0.002, 0.02, 2),  # occasional (with the above: engaged)
    (1.00, 0.30, 0.05, 0.02, 0.0, 0.0, 1),  # lurkers
)
REACTION_SHARE = 0.35
PEER_SCORE_SHARE = 0.02
STAR_SHARE = 0.25  # of the reactions, to the stars
RINGS = 20


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _coprime_step(n: int, start: int) -> int:
    step = start
    while math.gcd(step, n) != 1:
        step += 1
    return step


class Plan:
    """The sizes and the arithmetic of one generated community."""

    def __init__(self, members: int, events: int, now: dt.datetime) -> None:
        self.n, self.events, self.now = members, events, now
        self.today = now.astimezone(zoneinfo.ZoneInfo(TZ)).date()
        self.first_day = self.today - dt.timedelta(days=DAYS)  # days 0 … 89: up to yesterday
        self.bounds = [max(1, round(c[0] * members)) for c in CLASSES]
        self.bounds[-1] = members
        self.engaged = self.bounds[3]  # ranks 1 … engaged react, rate, invite
        self.authors = self.bounds[2]  # ranks 1 … authors post and are reacted to
        self.stars = min(self.authors, max(5, members // 2500))
        self.rings = min(RINGS, max(1, members // 50_000))
        # rank -> member number, and popularity -> author rank: fixed permutations
        self.p = _coprime_step(members, 1_000_003)
        self.q = _coprime_step(self.authors, 7_919)
        # Events per member as at 1M/20M: activity scales with events / members.
        self.activity = (events / members) / 20.0

    def g_of(self, r: str) -> str:
        """SQL: member number (1 … n) of activity rank ``r``."""
        return f"((({r}) - 1)::bigint * {self.p} %% {self.n} + 1)"

    def author_r(self, s: str) -> str:
        """SQL: activity rank of the author at popularity rank ``s``."""
        return f"((({s}) - 1)::bigint * {self.q} %% {self.authors} + 1)"


class Loader:
    """One autocommit connection with client-side binding (DDL takes no server parameters)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor)
        for setting in (
            "SET synchronous_commit = off",
            "SET work_mem = '256MB'",
            "SET maintenance_work_mem = '1GB'",
            "SET max_parallel_maintenance_workers = 2",
            "SET jit = off",
        ):
            self.conn.execute(setting)
        self.started = time.monotonic()

    def run(self, label: str, query: str, params: dict[str, Any] | None = None) -> int:
        t0 = time.monotonic()
        cursor = self.conn.execute(query, params or {})
        rows = cursor.rowcount
        note(
            f"jobs data: {label}: {rows:,} rows in {time.monotonic() - t0:.1f} s "
            f"({time.monotonic() - self.started:.0f} s so far)"
            if rows >= 0
            else f"jobs data: {label} in {time.monotonic() - t0:.1f} s"
        )
        return rows

    def run_split(
        self, label: str, query: str, params: dict[str, Any], ways: int = 2, on: str = "t.id"
    ) -> int:
        """``query`` in ``ways`` parts at once, one connection each (the machine's two cores;
        each part is CPU-bound): ``__PART__`` in it becomes ``<on> % ways = <part>``."""
        t0 = time.monotonic()
        counts = [0] * ways
        errors: list[BaseException] = []

        def part(i: int) -> None:
            try:
                loader = Loader(self.url)
                try:
                    part_query = query.replace("__PART__", f"{on} %% {ways} = {i}")
                    cursor = loader.conn.execute(part_query, params)
                    counts[i] = cursor.rowcount
                finally:
                    loader.close()
            except BaseException as exc:  # noqa: BLE001 - raised below
                errors.append(exc)

        threads = [threading.Thread(target=part, args=(i,)) for i in range(ways)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        note(
            f"jobs data: {label}: {sum(counts):,} rows in {time.monotonic() - t0:.1f} s "
            f"({ways} connections; {time.monotonic() - self.started:.0f} s so far)"
        )
        return sum(counts)

    def one(self, query: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        row = self.conn.execute(query, params or {}).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.conn.close()


def _schema_of(db: Loader, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, definition) of the table's indexes that back no constraint, and of its unique
    and foreign-key constraints."""
    indexes = db.conn.execute(
        """
        SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %s::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
        ORDER BY i.relname
        """,
        [table],
    ).fetchall()
    constraints = db.conn.execute(
        """
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY conname
        """,
        [table],
    ).fetchall()
    return list(indexes), list(constraints)


def _drop_schema(db: Loader, table: str, schema: tuple[list[Any], list[Any]]) -> None:
    indexes, constraints = schema
    for name, _ in constraints:
        db.conn.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _ in indexes:
        db.conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))


def _comparable(schema: tuple[list[Any], list[Any]]) -> tuple[list[Any], list[Any]]:
    """Definitions as PostgreSQL prints them, less the casts it adds and the parentheses it
    moves when it prints a definition it was given in its own printed form (a partial index's
    ``ANY (ARRAY[…])``)."""

    def plain(text: str) -> str:
        return re.sub(r"::(character varying|timestamp with time zone|\w+)(\[\])?|[()\s]", "", text)

    indexes, constraints = schema
    return [(n, plain(d)) for n, d in indexes], [(n, plain(d)) for n, d in constraints]


def _restore_schema(db: Loader, schemas: dict[str, tuple[list[Any], list[Any]]]) -> None:
    """Recreate what ``_drop_schema`` dropped: every index (unique constraints' too) built two
    at a time, then the unique constraints attached to their index, then the foreign keys (one
    validating join each); checked equal to the captured definitions."""
    builds: list[tuple[str, str]] = []
    attach: list[tuple[str, str]] = []
    foreign: list[tuple[str, str, str]] = []
    for table, (indexes, constraints) in schemas.items():
        # A partitioned table's index is defined "ON ONLY <parent>": built as written it
        # would stay on the parent alone (invalid, no month has it). Built on the parent, it
        # is built on every month and attached.
        builds.extend(
            (f"index {table}.{name}", definition.replace(" ON ONLY ", " ON ", 1))
            for name, definition in indexes
        )
        for name, definition in constraints:
            if definition.startswith("UNIQUE ("):
                columns = definition[len("UNIQUE ") :]
                builds.append(
                    (
                        f"unique index {table}.{name}",
                        sql.SQL("CREATE UNIQUE INDEX {} ON {} ")
                        .format(sql.Identifier(name), sql.Identifier(table))
                        .as_string(db.conn)
                        + columns,
                    )
                )
                attach.append((table, name))
            else:
                foreign.append((table, name, definition))
    # biggest first, so that the two connections finish together
    builds.sort(key=lambda b: ("points_event" not in b[0], "unique" not in b[0]))
    queue = list(builds)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        loader = Loader(db.url)
        loader.conn.execute("SET max_parallel_maintenance_workers = 0")
        try:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    label, statement = queue.pop(0)
                loader.run(label, statement)
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)
        finally:
            loader.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for table, name in attach:
        db.conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
                sql.Identifier(table), sql.Identifier(name), sql.Identifier(name)
            )
        )
    for table, name, definition in foreign:
        db.run(
            f"foreign key {table}.{name}",
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ")
            .format(sql.Identifier(table), sql.Identifier(name))
            .as_string(db.conn)
            + definition,
        )
    for table, schema in schemas.items():
        if _comparable(_schema_of(db, table)) != _comparable(schema):
            raise RuntimeError(f"bench: {table}'s indexes or constraints differ after the load")
        invalid = db.conn.execute(
            """
            SELECT count(*) FROM pg_index x
            WHERE NOT x.indisvalid
              AND (x.indrelid = %s::regclass
                   OR x.indrelid IN (SELECT inhrelid FROM pg_inherits
                                     WHERE inhparent = %s::regclass))
            """,
            [table, table],
        ).fetchone()
        if invalid and invalid[0]:
            raise RuntimeError(f"bench: {table} has {invalid[0]} invalid indexes after the load")


def sizes() -> tuple[int, int]:
    """BENCH_JOB_MEMBERS and BENCH_JOB_EVENTS."""
    return _env_int("BENCH_JOB_MEMBERS", 1_000_000), _env_int("BENCH_JOB_EVENTS", 20_000_000)


def existing(url: str, members: int, events: int) -> dict[str, Any] | None:
    """The community generated earlier with the same sizes, if this database holds one."""
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError:
        return None
    with conn:
        found: Any = conn.execute("SELECT to_regclass(%s)", [META]).fetchone()
        if found[0] is None:
            return None
        row = conn.execute(
            f"SELECT community_id, reference_now, generated_s FROM {META} "  # noqa: S608
            "WHERE members = %s AND events = %s",
            [members, events],
        ).fetchone()
    if row is None:
        return None
    return {"community_id": row[0], "now": row[1], "generated_s": row[2], "reused": True}


def generate(url: str, *, members: int, events: int) -> dict[str, Any]:
    """Create the community and its data (see the module docstring); returns its id, the
    reference instant the data ends at, and the generation time."""
    from django.db import connections

    from points.services import community_create
    from webhooks.models import WebhookEndpoint

    started = time.monotonic()
    now = dt.datetime.now(tz=dt.UTC).replace(microsecond=0)
    plan = Plan(members, events, now)
    community = community_create(slug=SLUG, name=f"{members:,} members, {events:,} events")
    WebhookEndpoint.objects.create(
        community=community,
        url="http://127.0.0.1:9/never-delivered",
        secret_encrypted="bench: deliveries are never sent",  # noqa: S106 - not a secret
        topics=[],
    )
    connections.close_all()
    db = Loader(url)
    try:
        _load(db, plan, community.pk)
        generated = time.monotonic() - started
        db.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {META} (community_id bigint, members int, events "
            "bigint, reference_now timestamptz, generated_s float8)"
        )
        db.conn.execute(
            f"INSERT INTO {META} VALUES (%s, %s, %s, %s, %s)",  # noqa: S608
            [community.pk, members, events, now, generated],
        )
    finally:
        db.close()
    return {"community_id": community.pk, "now": now, "generated_s": generated, "reused": False}


def _load(db: Loader, plan: Plan, cid: int) -> None:
    n, b = plan.n, plan.bounds
    member_seq = db.one("SELECT pg_get_serial_sequence('points_member', 'id')")
    base = db.one("SELECT nextval(%s)", [member_seq])
    db.one("SELECT setval(%s, %s)", [member_seq, base + n])
    db.conn.execute("SELECT setseed(0.42)")
    p: dict[str, Any] = {
        "c": cid,
        "n": n,
        "base": base,
        "first_day": plan.first_day,
        "now": plan.now,
        "tz": TZ,
        "f": plan.activity,
        "engaged": plan.engaged,
        "authors": plan.authors,
        "stars": plan.stars,
        "rings": plan.rings,
        "ring_from": n - 5 * plan.rings + 1,
    }
    g_of = plan.g_of
    klass = (
        f"CASE WHEN r <= {b[0]} THEN 0 WHEN r <= {b[1]} THEN 1 WHEN r <= {b[2]} THEN 2 "
        f"WHEN r <= {b[3]} THEN 3 ELSE 4 END"
    )

    def arr(k: int) -> str:
        return "(ARRAY[" + ", ".join(repr(float(c[k])) for c in CLASSES) + "])[klass + 1]"

    for table in ("bj_days", "bj_m", "bj_md", "bj_mw", "bj_t", "bj_join", "bj_tally"):
        db.conn.execute(f"DROP TABLE IF EXISTS {table}")
    db.run(
        "days",
        """
        CREATE UNLOGGED TABLE bj_days AS
        SELECT i, (%(first_day)s::date + i) AS day,
               ((%(first_day)s::date + i)::timestamp AT TIME ZONE %(tz)s) AS t0
        FROM generate_series(0, 89) i
        """,
        p,
    )
    # Members by activity rank: class, activity, join day (half the lurkers joined during the
    # window), left (1.7% of the lurkers), ring (the last 5 x rings ranks).
    db.run(
        "members by activity rank",
        f"""
        CREATE UNLOGGED TABLE bj_m AS
        SELECT r, {g_of("r")} AS g, klass,
               CASE klass WHEN 0 THEN 1.0 WHEN 1 THEN 0.6 + 0.35 * v WHEN 2 THEN 0.15 + 0.45 * v
                          WHEN 3 THEN 0.01 + 0.04 * v ELSE 0.004 END AS p,
               CASE WHEN klass = 4 AND r < %(ring_from)s AND w < 0.5
                    THEN floor(random() * 90)::int END AS join_i,
               klass = 4 AND r < %(ring_from)s AND w >= 0.5 AND w < 0.517 AS gone,
               CASE WHEN r >= %(ring_from)s THEN r - %(ring_from)s END AS ring_pos
        FROM (SELECT r, {klass} AS klass, random() AS v, random() AS w
              FROM generate_series(1, %(n)s) r) x
        """,
        p,
    )
    db.conn.execute("ALTER TABLE bj_m ADD PRIMARY KEY (r)")
    # Active member-days of the members who earn (the payees).
    db.run(
        "active member-days",
        """
        CREATE UNLOGGED TABLE bj_md AS
        SELECT m.r, m.klass, d.i FROM bj_m m CROSS JOIN generate_series(0, 89) d(i)
        WHERE NOT m.gone AND d.i >= COALESCE(m.join_i, 0)
          AND random() < least(1.0, m.p * CASE WHEN m.klass = 0 THEN 1.0 ELSE %(f)s END)
        """,
        p,
    )
    # What each earns, per type (messages come later: they fill the event budget exactly).
    db.run(
        "tallies: check-ins, shares, posts, featured posts, help",
        f"""
        CREATE UNLOGGED TABLE bj_t AS
        SELECT md.r, md.i, t.type, t.c, NULL::int AS pts
        FROM bj_md md CROSS JOIN LATERAL (VALUES
            ('check_in', (random() < {arr(1)})::int),
            ('share', CASE WHEN random() < {arr(2)} THEN 1 + (random() < 0.3)::int ELSE 0 END),
            ('ugc_post', CASE WHEN random() < {arr(3)} THEN 1 + (random() < 0.25)::int
                              ELSE 0 END),
            ('content_featured', (random() < {arr(4)})::int),
            ('help', CASE WHEN random() < {arr(5)} THEN 1 + (random() < 0.3)::int ELSE 0 END)
        ) t(type, c)
        WHERE t.c > 0
        """,
        p,
    )
    # Reactions received, per member and day: a quarter to the stars (Zipf-like), the rest
    # spread evenly over every engaged member; the rings react to each other daily.
    ring_reactions = plan.rings * 5 * 4 * 30
    reactions = round(plan.events * REACTION_SHARE)
    p["random_reactions"] = max(reactions - ring_reactions, 0)
    db.run(
        "tallies: reactions received",
        f"""
        INSERT INTO bj_t (r, i, type, c)
        SELECT r, i, 'reaction', count(*)
        FROM (SELECT CASE WHEN random() < {STAR_SHARE}
                          THEN {plan.author_r("1 + floor(%(stars)s * power(random(), 1.5))::int")}
                          ELSE 1 + floor(%(engaged)s * random())::int END AS r,
                     floor(random() * 90)::int AS i
              FROM generate_series(1, %(random_reactions)s)) x
        GROUP BY 1, 2
        """,
        p,
    )
    db.run(
        "tallies: reactions within the rings",
        """
        INSERT INTO bj_t (r, i, type, c)
        SELECT m.r, d.i, 'reaction', 4 FROM bj_m m CROSS JOIN generate_series(60, 89) d(i)
        WHERE m.ring_pos IS NOT NULL
        """,
        p,
    )
    # Joins during the window; 40% invited by an engaged member (Zipf-like: top inviters),
    # paid 10 within the invite caps (50 a day, 300 a month).
    db.run(
        "joins and their inviters",
        """
        CREATE UNLOGGED TABLE bj_join AS
        SELECT x.*, CASE WHEN inviter_r IS NOT NULL AND paid_day AND sum(paid_day::int) OVER (
                        PARTITION BY inviter_r, date_trunc('month', day) ORDER BY t, r) <= 30
                    THEN 10 ELSE 0 END AS pts
        FROM (SELECT j.*, row_number() OVER (PARTITION BY inviter_r, i ORDER BY t, r) <= 5
                          AS paid_day
              FROM (SELECT m.r, m.join_i AS i, d.day,
                           d.t0 + random() * interval '86400 s' AS t,
                           CASE WHEN random() < 0.4
                                THEN 1 + floor(%(engaged)s * power(random(), 3.0))::int END
                                AS inviter_r
                    FROM bj_m m JOIN bj_days d ON d.i = m.join_i) j) x
        """,
        p,
    )
    db.run(
        "tallies: invitees",
        """
        INSERT INTO bj_t (r, i, type, c, pts)
        SELECT inviter_r, i, 'invite', count(*), sum(pts) FROM bj_join
        WHERE inviter_r IS NOT NULL GROUP BY 1, 2
        """,
    )
    fixed = db.one("SELECT sum(c) FROM bj_t")
    joins = db.one("SELECT count(*) FROM bj_join")
    invites = db.one("SELECT count(*) FROM bj_join WHERE inviter_r IS NOT NULL")
    peer_scores = round(plan.events * PEER_SCORE_SHARE)
    # invite tallies count joins, which are already in ``joins``
    messages = plan.events - (fixed - invites) - joins - invites - peer_scores
    if messages < 0:
        raise SystemExit(
            f"bench: {plan.events:,} events are too few for {n:,} members "
            f"(the other types alone make {plan.events - messages:,})"
        )
    p["messages"], p["peer_scores"] = messages, peer_scores
    # Messages: exactly ``messages`` over the active member-days, by weight (telescoping
    # floors of the cumulative weight, so the counts add up exactly).
    db.run(
        "message weights",
        f"""
        CREATE UNLOGGED TABLE bj_mw AS
        SELECT r, i, floor(-ln(1.0 - random()) * {arr(6)} * 1000)::bigint + 1 AS w FROM bj_md
        """,
    )
    db.run(
        "tallies: messages",
        """
        INSERT INTO bj_t (r, i, type, c)
        SELECT r, i, 'message', c FROM (
            SELECT r, i,
                   (floor(%(messages)s * cum / tot) - floor(%(messages)s * (cum - w) / tot))::int
                   AS c
            FROM (SELECT r, i, w, sum(w) OVER (ORDER BY r, i) AS cum, sum(w) OVER () AS tot
                  FROM bj_mw) x
        ) y WHERE c > 0
        """,
        p,
    )
    # Points: per-type caps, then the 200 daily total in a fixed type order.
    db.run(
        "tallies with points",
        """
        CREATE UNLOGGED TABLE bj_tally AS
        SELECT row_number() OVER () AS id, y.*,
               least(y.typ, greatest(200 - (sum(y.typ) OVER w - y.typ), 0))::int AS allow
        FROM (SELECT t.r, t.i, t.type, t.c, k.base, k.ord,
                     COALESCE(t.pts, least(t.c * k.base, COALESCE(k.cap, t.c * k.base))) AS typ
              FROM bj_t t JOIN (VALUES
                  ('check_in', 5, 1, 5), ('invite', 10, 2, NULL), ('message', 1, 3, 20),
                  ('share', 5, 4, 20), ('ugc_post', 10, 5, 50), ('help', 5, 6, 20),
                  ('content_featured', 20, 7, NULL), ('reaction', 1, 8, 30)
              ) k(type, base, ord, cap) ON k.type = t.type) y
        WINDOW w AS (PARTITION BY y.r, y.i ORDER BY y.ord)
        """,
    )
    for table in ("bj_t", "bj_mw", "bj_md"):
        db.conn.execute(f"DROP TABLE {table}")
    db.conn.execute("ANALYZE bj_tally")
    db.conn.execute("ANALYZE bj_m")
    db.conn.execute("ANALYZE bj_join")

    schemas = {t: _schema_of(db, t) for t in BIG_TABLES}
    for table, schema in schemas.items():
        _drop_schema(db, table, schema)
    _insert_events(db, plan, p)
    _insert_tallies(db, plan, p)
    _insert_members(db, plan, p)
    _restore_schema(db, schemas)
    _seed_state(db, plan, p)
    for table in ("bj_days", "bj_m", "bj_join", "bj_tally"):
        db.conn.execute(f"DROP TABLE {table}")
    # As autovacuum leaves tables that stopped changing: statistics and visibility map.
    for table in (
        "points_event",
        "points_dailytally",
        "points_member",
        "points_periodtotal",
        "incentives_membertier",
        "incentives_tierchange",
        "incentives_memberrole",
        "incentives_koccandidate",
    ):
        db.run(f"VACUUM (ANALYZE) {table}", f"VACUUM (ANALYZE) {table}")


# One event's scoring record, as the service stores it (``ScoringRecord.to_json``; sizes
# matter, not the values); built as text and parsed once (nested jsonb_build_object calls cost
# three times as much).
RESULT = """format(
    '{{"v": 1, "rule_type": "%%s", "counted": true, "balance": %%s, "awards": %%s}}',
    {rule}, {balance},
    CASE WHEN {payee} IS NULL THEN '[]' ELSE format(
        '[["%%s", "points.%%s", %%s, %%s, %%s, %%s]]', {payee}, {rule}, {base}, {base}, {pts},
        CASE WHEN {pts} < {base} THEN '"' || {cap} || '"' ELSE 'null' END)
    END)::jsonb"""
EVENT_COLUMNS = (
    "community_id, client_id, member_id, type, occurred_at, received_at, local_day, target, "
    'content, score, "group", meta, body_hash, rule_version, points, scoring, beneficiary_id, '
    "content_hash"
)


def _ext(g: str) -> str:
    return f"('j' || lpad(({g})::text, 7, '0'))"


def _insert_events(db: Loader, plan: Plan, p: dict[str, Any]) -> None:
    g_of, base = plan.g_of, p["base"]
    # (1) what payees did themselves: check-ins, messages, shares, posts, featured, help
    db.run_split(
        "events: check-ins, messages, shares, posts, featured posts, help",
        f"""
        INSERT INTO points_event ({EVENT_COLUMNS})
        SELECT %(c)s, e.cid, {base} + e.g, t.type, e.at, e.at + interval '40 ms', d.day,
               CASE t.type
                   WHEN 'share' THEN 'https://m.example.cn/s/' || (t.id * 7 + e.k)
                   WHEN 'ugc_post' THEN 'p' || e.g || '-' || ((t.i * 3 + e.k) %% 40)
                   WHEN 'content_featured' THEN 'p' || e.g || '-' || floor(random() * 40)
                   WHEN 'help' THEN {_ext("1 + floor(random() * %(n)s)::int")}
                   ELSE '' END,
               CASE WHEN t.type = 'ugc_post' THEN jsonb_build_object(
                   'hash', md5(e.cid), 'length', 20 + floor(random() * 400)::int) END,
               NULL, CASE WHEN t.type = 'message' THEN 'g' || (e.g %% 50) ELSE '' END, '{{}}',
               encode(sha256(convert_to(e.cid, 'UTF8')), 'hex'), 1, e.pts,
               {
            RESULT.format(
                cid="e.cid",
                actor_points="e.pts",
                balance="e.k * t.base",
                payee=_ext("e.g"),
                rule="t.type",
                pts="e.pts",
                base="t.base",
                cap="CASE WHEN t.allow < t.typ THEN 'daily_total_cap' "
                "ELSE 'daily_caps.' || t.type END",
            )
        },
               {base} + e.g,
               CASE WHEN t.type = 'ugc_post' THEN md5(e.cid) ELSE '' END
        FROM bj_tally t JOIN bj_days d ON d.i = t.i
        CROSS JOIN LATERAL (
            SELECT k, {g_of("t.r")} AS g,
                   md5('t' || t.id || '.' || k)::uuid::text AS cid,
                   least(t.base, greatest(t.allow - (k - 1) * t.base, 0)) AS pts,
                   d.t0 + ((k - 1 + random()) / t.c) * interval '86400 s' AS at
            FROM generate_series(1, t.c) k
        ) e
        WHERE t.type NOT IN ('reaction', 'invite') AND __PART__
        """,
        p,
    )
    # (2) reactions: reactor = an engaged member (never the author), beneficiary = author,
    # target = one of the author's contents (stars have more); rings react to each other.
    db.run_split(
        "events: reactions",
        f"""
        INSERT INTO points_event ({EVENT_COLUMNS})
        SELECT %(c)s, e.cid, {base} + e.reactor_g, 'reaction', e.at, e.at + interval '40 ms',
               d.day, 'p' || e.g || '-' || e.content, jsonb_build_object('author', {_ext("e.g")}),
               NULL, '', '{{}}', encode(sha256(convert_to(e.cid, 'UTF8')), 'hex'), 1, e.pts,
               {
            RESULT.format(
                cid="e.cid",
                actor_points="0",
                balance="e.k",
                payee=_ext("e.g"),
                rule="'reaction'",
                pts="e.pts",
                base="1",
                cap="CASE WHEN t.allow < t.typ THEN 'daily_total_cap' "
                "ELSE 'daily_caps.reaction' END",
            )
        },
               {base} + e.g, ''
        FROM bj_tally t JOIN bj_days d ON d.i = t.i JOIN bj_m a ON a.r = t.r
        CROSS JOIN LATERAL (
            SELECT k, a.g, md5('r' || t.id || '.' || k)::uuid::text AS cid,
                   least(1, greatest(t.allow - (k - 1), 0)) AS pts,
                   d.t0 + ((k - 1 + random()) / t.c) * interval '86400 s' AS at,
                   floor(CASE WHEN t.r <= %(authors)s THEN 40 ELSE 3 END
                         * power(random(), 1.5))::int AS content,
                   CASE WHEN a.ring_pos IS NOT NULL
                        THEN {
            g_of("%(ring_from)s + (a.ring_pos / 5) * 5 + (a.ring_pos %% 5 + k) %% 5")
        }
                        ELSE {
            g_of("1 + (t.r + floor(random() * (%(engaged)s - 1))::int) %% %(engaged)s")
        }
                   END AS reactor_g
            FROM generate_series(1, t.c) k
        ) e
        WHERE t.type = 'reaction' AND __PART__
        """,
        p,
    )
    # (3) joins (paying the inviter when invited) and the invites before them
    db.run(
        "events: joins",
        f"""
        INSERT INTO points_event ({EVENT_COLUMNS})
        SELECT %(c)s, e.cid, {base} + e.g, 'join', j.t, j.t + interval '40 ms', j.day, '', NULL,
               NULL, '', '{{}}', encode(sha256(convert_to(e.cid, 'UTF8')), 'hex'), 1, j.pts,
               {
            RESULT.format(
                cid="e.cid",
                actor_points="0",
                balance="0",
                payee="e.inviter",
                rule="'invite'",
                pts="j.pts",
                base="10",
                cap="'monthly_caps.invite'",
            )
        },
               {base} + e.inviter_g, ''
        FROM bj_join j CROSS JOIN LATERAL (
            SELECT {g_of("j.r")} AS g, md5('j' || j.r)::uuid::text AS cid,
                   {g_of("j.inviter_r")} AS inviter_g,
                   {_ext(g_of("j.inviter_r"))} AS inviter
        ) e
        """,
        p,
    )
    db.run(
        "events: invites",
        f"""
        INSERT INTO points_event ({EVENT_COLUMNS})
        SELECT %(c)s, e.cid, {base} + {g_of("j.inviter_r")}, 'invite', e.at,
               e.at + interval '40 ms', (e.at AT TIME ZONE %(tz)s)::date, {_ext(g_of("j.r"))},
               NULL, NULL, '', '{{}}', encode(sha256(convert_to(e.cid, 'UTF8')), 'hex'), 1, 0,
               {
            RESULT.format(
                cid="e.cid",
                actor_points="0",
                balance="0",
                payee="NULL",
                rule="''",
                pts="0",
                base="0",
                cap="NULL",
            )
        },
               NULL, ''
        FROM bj_join j CROSS JOIN LATERAL (
            SELECT md5('i' || j.r)::uuid::text AS cid,
                   greatest(j.t - random() * interval '2 days',
                            (%(first_day)s::timestamp AT TIME ZONE %(tz)s)) AS at
        ) e
        WHERE j.inviter_r IS NOT NULL
        """,
        p,
    )
    # (4) peer scores: rater = an engaged member, target = a star (30%) or anyone engaged
    db.run(
        "events: peer scores",
        f"""
        INSERT INTO points_event ({EVENT_COLUMNS})
        SELECT %(c)s, e.cid, {base} + e.rater_g, 'peer_score', e.at, e.at + interval '40 ms',
               (e.at AT TIME ZONE %(tz)s)::date, {_ext("e.target_g")}, NULL, e.score, '', '{{}}',
               encode(sha256(convert_to(e.cid, 'UTF8')), 'hex'), 1, 0,
               {
            RESULT.format(
                cid="e.cid",
                actor_points="0",
                balance="0",
                payee="NULL",
                rule="''",
                pts="0",
                base="0",
                cap="NULL",
            )
        },
               NULL, ''
        FROM generate_series(1, %(peer_scores)s) x CROSS JOIN LATERAL (
            SELECT md5('s' || x)::uuid::text AS cid,
                   {g_of("1 + floor(random() * %(engaged)s)::int + 0 * x")} AS rater_g,
                   CASE WHEN random() < 0.3
                        THEN {g_of(plan.author_r("1 + floor(random() * %(stars)s)::int"))}
                        ELSE {g_of("1 + floor(random() * %(engaged)s)::int")} END AS target_g,
                   CASE WHEN random() < 0.6 THEN 4 + (random() < 0.5)::int
                        ELSE 1 + floor(random() * 3)::int END AS score,
                   (%(first_day)s::timestamp AT TIME ZONE %(tz)s)
                       + random() * interval '90 days' AS at
        ) e
        """,
        p,
    )


def _insert_tallies(db: Loader, plan: Plan, p: dict[str, Any]) -> None:
    """Per member, day and type, and the ``*`` total per member-day (counted events)."""
    g = plan.g_of("t.r")
    db.run_split(
        "daily tallies",
        f"""
        INSERT INTO points_dailytally (community_id, member_id, day, event_type, count, points)
        SELECT %(c)s, %(base)s + {g}, d.day, t.type, t.c, t.allow
        FROM bj_tally t JOIN bj_days d ON d.i = t.i WHERE __PART__
        UNION ALL
        SELECT %(c)s, %(base)s + {g}, d.day, '*', sum(t.c), sum(t.allow)
        FROM bj_tally t JOIN bj_days d ON d.i = t.i WHERE __PART__ GROUP BY t.r, d.day
        """,
        p,
        on="t.r",
    )


def _insert_members(db: Loader, plan: Plan, p: dict[str, Any]) -> None:
    """Members (balance and lifetime from their tallies, last event from their events), and
    their month and all-time totals."""
    db.run(
        "members",
        f"""
        INSERT INTO points_member (id, community_id, external_id, display_name, status, balance,
                                   held, lifetime_points, owed, streak_days, joined_at, left_at,
                                   last_event_at, created_at)
        SELECT %(base)s + m.g, %(c)s, {_ext("m.g")}, 'Member ' || m.g,
               CASE WHEN m.gone THEN 'left' ELSE 'active' END,
               COALESCE(s.points, 0), 0, COALESCE(s.points, 0), 0, 0,
               COALESCE(j.t, (%(first_day)s::timestamp AT TIME ZONE %(tz)s)
                             - (1 + m.r %% 700) * interval '1 day'),
               CASE WHEN m.gone THEN %(now)s::timestamptz - (m.r %% 80) * interval '1 day' END,
               l.at, %(now)s
        FROM bj_m m
        LEFT JOIN bj_join j ON j.r = m.r
        LEFT JOIN (SELECT r, sum(allow) AS points FROM bj_tally GROUP BY r) s ON s.r = m.r
        LEFT JOIN (SELECT member_id, max(occurred_at) AS at FROM points_event
                   WHERE community_id = %(c)s GROUP BY member_id) l
               ON l.member_id = %(base)s + m.g
        """,
        p,
    )
    db.run(
        "month and all-time totals",
        """
        INSERT INTO points_periodtotal (community_id, member_id, kind, start, points, active)
        SELECT %(c)s, m.id, 'month', x.month, x.points, m.status = 'active'
        FROM (SELECT member_id, date_trunc('month', day)::date AS month, sum(points) AS points
              FROM points_dailytally WHERE community_id = %(c)s AND event_type = '*'
              GROUP BY 1, 2) x
        JOIN points_member m ON m.id = x.member_id
        """,
        p,
    )


def _seed_state(db: Loader, plan: Plan, p: dict[str, Any]) -> None:
    """Roles, confirmed KOCs and tiers as if the jobs had run before (see the docstring)."""
    g_of = plan.g_of
    p = p | {"last_month": (plan.today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)}
    star = plan.author_r("s")
    db.run(
        "roles: an owner, staff (core members) and KOLs (stars)",
        f"""
        INSERT INTO incentives_memberrole (community_id, member_id, role, set_by, set_at)
        SELECT %(c)s, %(base)s + {g_of("r")}, role, 'user:bench', %(now)s
        FROM (SELECT 1 AS r, 'owner' AS role
              UNION ALL
              SELECT r, 'staff' FROM generate_series({plan.bounds[0] + 1},
                                                     {plan.bounds[0] + 50}) r
              UNION ALL
              SELECT DISTINCT {star}, 'kol' FROM generate_series(20, %(stars)s, 20) s) x
        ON CONFLICT DO NOTHING
        """,
        p,
    )
    db.run(
        "confirmed KOCs (stars, confirmed last month)",
        f"""
        INSERT INTO incentives_koccandidate
               (community_id, member_id, status, window_end, window_days, score, robust_z,
                trust_rank, h_index, distinct_reactors, reciprocal_reactors, distinct_days,
                figures, detected_at, decided_by, decided_at, note)
        SELECT %(c)s, %(base)s + {g_of("r")}, 'confirmed', %(last_month)s::date + 10, 30, 12.0,
               9.0, 3.0, 20, 400, 2, 30, '{{}}', %(last_month)s::timestamp AT TIME ZONE %(tz)s
                   + interval '10 days', 'user:bench',
               %(last_month)s::timestamp AT TIME ZONE %(tz)s + (s %% 28) * interval '1 day', ''
        FROM (SELECT DISTINCT s, {star} AS r FROM generate_series(7, %(stars)s, 7) s) x
        WHERE NOT EXISTS (SELECT 1 FROM incentives_memberrole mr
                          WHERE mr.community_id = %(c)s
                            AND mr.member_id = %(base)s + {g_of("x.r")})
        """,
        p,
    )
    # Tiers: 70% of core members at "core", half the regular ones "active", the confirmed
    # KOCs "ambassador"; since 5-80 days ago, with the promotion that put them there.
    db.run(
        "member tiers",
        f"""
        INSERT INTO incentives_membertier
               (community_id, member_id, level, code, since, locked, locked_by, updated_at)
        SELECT %(c)s, m.id, x.level,
               (ARRAY['newcomer', 'active', 'core', 'ambassador'])[x.level + 1],
               x.since, false, '', x.since
        FROM (SELECT %(base)s + {g_of("r")} AS member_id,
                     CASE WHEN klass <= 1 THEN 2 ELSE 1 END AS level,
                     %(now)s::timestamptz - (5 + random() * 75) * interval '1 day' AS since
              FROM bj_m WHERE (klass <= 1 AND random() < 0.7) OR (klass = 2 AND random() < 0.5)) x
        JOIN points_member m ON m.id = x.member_id AND m.status = 'active'
        """,
        p,
    )
    db.run(
        "ambassadors: the confirmed KOCs",
        """
        INSERT INTO incentives_membertier AS mt
               (community_id, member_id, level, code, since, locked, locked_by, updated_at)
        SELECT %(c)s, member_id, 3, 'ambassador', decided_at, false, '', decided_at
        FROM incentives_koccandidate WHERE community_id = %(c)s AND status = 'confirmed'
        ON CONFLICT (community_id, member_id) DO UPDATE SET level = 3, code = 'ambassador',
            since = EXCLUDED.since, updated_at = EXCLUDED.updated_at
        """,
        p,
    )
    db.run(
        "tier history: the promotions behind the tiers",
        """
        INSERT INTO incentives_tierchange
               (community_id, member_id, kind, from_level, to_level, from_code, to_code, reason,
                figures, run, actor, created_at)
        SELECT %(c)s, member_id, 'promotion', 0, level, 'newcomer', code,
               'meets the entry criteria of ' || code, '{}',
               'tiers:' || (since AT TIME ZONE %(tz)s)::date, 'job:tiers', since
        FROM incentives_membertier WHERE community_id = %(c)s
        """,
        p,
    )


# --- timing ------------------------------------------------------------------------------------


def raw_pass(url: str, community_id: int) -> tuple[float, int]:
    """The raw baseline: one aggregate over the community's events, every row fetched."""
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        rows = conn.execute(
            "SELECT member_id, sum(points) FROM points_event WHERE community_id = %s "
            "GROUP BY member_id",
            [community_id],
        ).fetchall()
        return time.perf_counter() - t0, len(rows)


def timed_job(call: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """Run ``call`` in a transaction rolled back afterwards (its fence row and writes vanish,
    so the next run repeats the whole work); returns (seconds, the job's result)."""
    from django.db import connection, transaction

    with transaction.atomic():
        t0 = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - t0
        transaction.set_rollback(True)
    connection.close()
    return seconds, result


def setup_django(url: str) -> None:
    """This process's Django on the bench database, migrated (as ``bench.run`` does)."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    connections.close_all()


def measure(
    url: str,
    *,
    reuse: bool = False,
    figure: Callable[..., None] | None = None,
) -> None:
    """Generate (or reuse) the community, then time each job beside its raw baseline."""
    from points.models import Community

    members, events = sizes()
    runs = _env_int("BENCH_JOB_RUNS", 1)
    data = existing(url, members, events) if reuse else None
    if data is None:
        note(f"jobs data: generating {members:,} members and {events:,} events")
        data = generate(url, members=members, events=events)
    community = Community.objects.get(pk=data["community_id"])
    now: dt.datetime = data["now"]
    with psycopg.connect(url, autocommit=True) as conn:
        counts: Any = conn.execute(
            """
            SELECT (SELECT count(*) FROM points_member WHERE community_id = %(c)s),
                   (SELECT count(*) FROM points_event WHERE community_id = %(c)s),
                   (SELECT count(*) FROM points_dailytally WHERE community_id = %(c)s),
                   pg_size_pretty((SELECT sum(pg_total_relation_size(inhrelid))::bigint
                                   FROM pg_inherits  -- the months: the parent holds nothing
                                   WHERE inhparent = 'points_event'::regclass)),
                   pg_size_pretty(pg_total_relation_size('points_dailytally'))
            """,
            {"c": community.pk},
        ).fetchone()
        mix = conn.execute(
            "SELECT type, count(*) FROM points_event WHERE community_id = %s "
            "GROUP BY type ORDER BY 2 DESC",
            [community.pk],
        ).fetchall()
    note(
        f"jobs data: {counts[0]:,} members, {counts[1]:,} events ({counts[3]} with indexes), "
        f"{counts[2]:,} daily tallies ({counts[4]}); "
        + (
            "reused from an earlier run (BENCH_KEEP_DB=1), generated in "
            if data["reused"]
            else "generated in "
        )
        + f"{data['generated_s']:.0f} s"
    )
    note("jobs data: events by type: " + ", ".join(f"{t} {c:,}" for t, c in mix))
    zone = zoneinfo.ZoneInfo(community.timezone)
    today = now.astimezone(zone).date()
    last_day = (today - dt.timedelta(days=1)).isoformat()
    month = f"{(today.replace(day=1) - dt.timedelta(days=1)):%Y-%m}"
    note(
        f"jobs: data up to {last_day} (local); tiers and KOC evaluated for {last_day}, honor "
        f"roll of {month}; each timed run inside a transaction rolled back afterwards (the "
        f"run_once fence and the writes vanish: every run does the whole work), now = "
        f"{now:%Y-%m-%d %H:%M} UTC"
    )
    from incentives.honors import honor_roll_publish
    from incentives.koc import koc_detect
    from incentives.refresh import refresh_run
    from incentives.tiers import tiers_evaluate

    this_month = f"{today:%Y-%m}"

    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("tiers", lambda: tiers_evaluate(community=community, period=last_day, now=now)),
        ("koc", lambda: koc_detect(community=community, period=last_day, now=now)),
        (
            "honor_roll",
            lambda: honor_roll_publish(community=community, month=month, now=now),
        ),
        (
            "refresh",
            lambda: refresh_run(community=community, period=this_month, now=now),
        ),
    ]
    only = {j for j in os.environ.get("BENCH_JOB_ONLY", "").split(",") if j}
    warm, groups = raw_pass(url, community.pk)
    note(f"jobs: raw pass (warm-up, not counted): {warm:.1f} s, {groups:,} groups")
    size = f"{counts[0] / 1e6:g}M members, {counts[1] / 1e6:g}M events"
    target = "target ≤ 5: within 5x one raw aggregate pass over the events"
    for name, call in jobs:
        if only and name not in only:
            continue
        raws, ours = [], []
        result: dict[str, Any] = {}
        for _ in range(runs):
            raws.append(raw_pass(url, community.pk)[0])
            seconds, result = timed_job(call)
            ours.append(seconds)
            raws.append(raw_pass(url, community.pk)[0])
        note(
            f"jobs.{name}: runs {', '.join(f'{s:.1f}' for s in ours)} s; raw passes "
            f"{', '.join(f'{s:.1f}' for s in raws)} s; result {result}"
        )
        ours_s = min(ours) if runs > 1 else ours[0]
        raw_s = sum(raws) / len(raws)
        if figure is not None:
            figure(
                f"jobs.{name} ({size}; {target})",
                ours_s,
                raw_s,
                "s",
            )
        else:
            print(
                f"jobs.{name} ({size}; {target}): ours {ours_s:.1f} s, raw baseline "
                f"{raw_s:.1f} s, ratio {ours_s / raw_s:.2f}",
                flush=True,
            )
