"""The benchmark database and the raw psycopg baselines that run against it."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from config.database import resolve_database_url

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
RAW_TABLE = "bench_raw_event"
RAW_TYPES = ("message", "share", "help", "ugc_post", "check_in")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# The columns ``points.services._insert_events`` writes, in the same order.
COLUMNS = (
    "community_id, client_id, member_id, type, occurred_at, received_at, local_day, target, "
    'content, score, "group", meta, body_hash, rule_version, points, scoring'
)


def server_url() -> str:
    """The PostgreSQL server: ``DATABASE_URL``, else 127.0.0.1:5432, else the embedded one."""
    url = resolve_database_url(prefer_local=True)
    host = str(conninfo_to_dict(url).get("host") or "")
    if host and not host.startswith("/") and host not in LOOPBACK_HOSTS:
        raise SystemExit(f"bench: refusing to run against a non-local database host {host!r}")
    return url


def with_dbname(url: str, dbname: str) -> str:
    parts = conninfo_to_dict(url)
    parts["dbname"] = dbname
    return make_conninfo("", **parts)


def recreate(url: str, dbname: str) -> str:
    """Drop and create ``dbname`` on the server of ``url``; return its URL."""
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return with_dbname(url, dbname)


def drop(url: str, dbname: str) -> None:
    with psycopg.connect(with_dbname(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


def create_raw_table(url: str) -> None:
    """A table with ``points_event``'s columns, defaults, checks and indexes, minus the FKs."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
        conn.execute(f"CREATE TABLE {RAW_TABLE} (LIKE points_event INCLUDING ALL)")


def server_settings(url: str) -> dict[str, str]:
    names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
    with psycopg.connect(url, autocommit=True) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]


# What the service stores as ``scoring`` for one accepted event (the sizes matter, not the
# values): ``points.scoring.ScoringRecord.to_json``.
RESULT = (
    '{"v": 1, "rule_type": "%s", "counted": true, "balance": %d, '
    '"awards": [["m%05d", "points.%s", 1, 1, 1, null]]}'
)


class RawRows:
    """Rows as the service would store them: same columns, similar sizes, distinct ids.

    Made cheaply (one clock read per call) so that the raw baseline spends its time in
    PostgreSQL, not in this generator.
    """

    def __init__(self, prefix: str, seed: int, members: int) -> None:
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.members = members
        self.n = 0

    def rows(self, count: int) -> list[tuple[Any, ...]]:
        now = dt.datetime.now(tz=dt.UTC)
        day = now.astimezone(SHANGHAI).date()
        choice, randrange, out = self.rng.choice, self.rng.randrange, []
        for _ in range(count):
            self.n += 1
            client_id = f"{self.prefix}-{self.n}"
            kind = choice(RAW_TYPES)
            out.append(
                (
                    1,
                    client_id,
                    randrange(1, self.members + 1),
                    kind,
                    now,
                    now,
                    day,
                    "",
                    None,
                    None,
                    f"g{randrange(20)}",
                    "{}",
                    hashlib.sha256(client_id.encode()).hexdigest(),
                    1,
                    1,
                    RESULT % (kind, self.n, self.n % 100_000, kind),
                )
            )
        return out


INSERT_ONE = (
    f"INSERT INTO {RAW_TABLE} ({COLUMNS}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb)"
)

INSERT_MANY = f"""
    INSERT INTO {RAW_TABLE} ({COLUMNS})
    SELECT %s, x.client_id, x.member_id, x.type, x.occurred_at, x.received_at, x.local_day,
           x.target, x.content::jsonb, x.score, x.grp, x.meta::jsonb, x.body_hash,
           x.rule_version, x.points, x.result::jsonb
    FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::timestamptz[], %s::timestamptz[],
                %s::date[], %s::text[], %s::text[], %s::smallint[], %s::text[], %s::text[],
                %s::text[], %s::int[], %s::int[], %s::text[])
         AS x(client_id, member_id, type, occurred_at, received_at, local_day, target, content,
              score, grp, meta, body_hash, rule_version, points, result)
"""


class RawSingleInserter:
    """One connection; each step is one single-row INSERT and its COMMIT."""

    def __init__(self, url: str, rows: RawRows) -> None:
        self.conn = psycopg.connect(url)
        self.rows = rows

    def step(self) -> int:
        with self.conn.cursor() as cursor:
            cursor.execute(INSERT_ONE, self.rows.rows(1)[0])
        self.conn.commit()
        return 1

    def close(self) -> None:
        self.conn.close()


class RawBatchInserter:
    """One connection; each step is one multi-row INSERT of ``size`` rows and its COMMIT."""

    def __init__(self, url: str, rows: RawRows, size: int) -> None:
        self.conn = psycopg.connect(url)
        self.rows = rows
        self.size = size

    def step(self) -> int:
        batch = self.rows.rows(self.size)
        columns = [list(c) for c in zip(*batch, strict=True)]
        with self.conn.cursor() as cursor:
            cursor.execute(INSERT_MANY, [columns[0][0], *columns[1:]])
        self.conn.commit()
        return self.size

    def close(self) -> None:
        self.conn.close()
