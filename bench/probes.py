"""``python -m bench.probes``: what the database side of one event could cost (not ``make bench``).

Three psycopg-only probes, each beside the raw single-row INSERT+COMMIT baseline of the same run,
on a throw-away database ``bench_probe`` with the service's schema:

1. the round trips of today's single-event request (health check, key lookup, replay lookup,
   BEGIN, seven statements, COMMIT) as trivial ``SELECT 1`` plus the one INSERT: the price of
   the round trips alone, with no work in them;
2. every write of an accepted event (member upsert, two tallies, event, ledger entry, balance,
   three period totals, replay check) in one PL/pgSQL call, one COMMIT per event;
3. the same call for 8 events per COMMIT, as a server-side group commit would do.

The function exists only in ``bench_probe``; it sketches a design, it is not the service's code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import sys
from collections.abc import Sequence
from typing import Protocol

import psycopg

from bench import database
from bench.load import PhaseResult, run_phase
from bench.run import close_django, setup_django

INGEST_FUNCTION = """
CREATE FUNCTION probe_ingest(c bigint, cid text, ext text, typ text, at timestamptz,
                             d_day date, pts int, bh text, res jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE mid bigint; bal bigint; eid bigint; stored jsonb;
BEGIN
  SELECT e.scoring INTO stored FROM points_eventkey k
    JOIN points_event e ON e.id = k.id AND e.occurred_at = k.occurred_at
   WHERE k.community_id = c AND k.client_id = cid;
  IF FOUND THEN RETURN stored; END IF;
  INSERT INTO points_member AS m (community_id, external_id, display_name, status, balance,
                                  held, lifetime_points, joined_at, last_event_at, created_at)
  VALUES (c, ext, '', 'active', 0, 0, 0, at, at, now())
  ON CONFLICT (community_id, external_id)
    DO UPDATE SET last_event_at = GREATEST(m.last_event_at, EXCLUDED.last_event_at)
  RETURNING id, balance INTO mid, bal;
  INSERT INTO points_dailytally AS t (community_id, member_id, day, event_type, count, points)
  VALUES (c, mid, d_day, typ, 1, pts), (c, mid, d_day, '*', 1, pts)
  ON CONFLICT (community_id, member_id, day, event_type)
    DO UPDATE SET count = t.count + 1, points = t.points + EXCLUDED.points;
  INSERT INTO points_event (community_id, client_id, member_id, type, occurred_at, received_at,
                            local_day, target, content, score, "group", meta, body_hash,
                            rule_version, points, scoring)
  VALUES (c, cid, mid, typ, at, now(), d_day, '', NULL, NULL, 'g1', '{}', bh, 1, pts, res)
  RETURNING id INTO eid;
  INSERT INTO points_ledgerentry (community_id, member_id, event_id, kind, points,
                                  balance_after, rule, rule_version, reason, created_at)
  VALUES (c, mid, eid, 'award', pts, bal + pts, 'points.' || typ, 1, '', now());
  UPDATE points_member SET balance = balance + pts, lifetime_points = lifetime_points + pts
  WHERE id = mid;
  INSERT INTO points_periodtotal AS p (community_id, member_id, kind, start, points, active)
  VALUES (c, mid, 'month', date_trunc('month', d_day)::date, pts, true),
         (c, mid, 'week', date_trunc('week', d_day)::date, pts, true)
  ON CONFLICT (community_id, member_id, kind, start)
    DO UPDATE SET points = p.points + EXCLUDED.points;
  RETURN res;
END $$;
"""

# Today's request: health check, key lookup, replay lookup, BEGIN, 7 statements, COMMIT.
TODAY_EXTRA_ROUND_TRIPS = 10


class _Prober:
    def __init__(self, url: str, tag: str, community: int, mode: str, per_commit: int) -> None:
        self.conn = psycopg.connect(url)
        self.rows = database.RawRows(tag, hash(tag) % 1000, 10_000)
        self.rng = random.Random(tag)
        self.tag, self.community, self.mode, self.per_commit = tag, community, mode, per_commit
        self.n = 0

    def step(self) -> int:
        if self.mode == "round_trips":
            for _ in range(TODAY_EXTRA_ROUND_TRIPS):
                self.conn.execute("SELECT 1").fetchone()
            self.conn.execute(database.INSERT_ONE, self.rows.rows(1)[0])
        else:
            now = dt.datetime.now(tz=dt.UTC)
            for _ in range(self.per_commit):
                self.n += 1
                cid = f"{self.tag}-{self.n}"
                result = json.dumps(
                    {"v": 1, "rule_type": "message", "counted": True, "balance": 1, "awards": []}
                )
                self.conn.execute(
                    "SELECT probe_ingest(%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                    (
                        self.community,
                        cid,
                        f"m{self.rng.randrange(10_000):05d}",
                        "message",
                        now,
                        now.date(),
                        1,
                        hashlib.sha256(cid.encode()).hexdigest(),
                        result,
                    ),
                ).fetchone()
        self.conn.commit()
        return self.per_commit

    def close(self) -> None:
        self.conn.close()


class _Steps(Protocol):
    def step(self) -> int: ...
    def close(self) -> None: ...


def _phase(name: str, probers: Sequence[_Steps], seconds: float) -> PhaseResult:
    try:
        return run_phase(name, [p.step for p in probers], warmup=1.0, duration=seconds)
    finally:
        for p in probers:
            p.close()


def main() -> int:
    seconds = float(os.environ.get("BENCH_SECONDS", 6))
    clients = int(os.environ.get("BENCH_CLIENTS", 4))
    server_url = database.server_url()
    url = database.recreate(server_url, "bench_probe")
    try:
        setup_django(url)
        database.create_raw_table(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(INGEST_FUNCTION)
            row = conn.execute("SELECT id FROM points_community").fetchone()
            community = int(row[0]) if row else 0
            # Members exist already, as they would after a while in production.
            conn.execute(
                "INSERT INTO points_member (community_id, external_id, display_name, status, "
                "balance, held, lifetime_points, joined_at, created_at) "
                "SELECT %s, 'm' || lpad(g::text, 5, '0'), '', 'active', 0, 0, 0, now(), now() "
                "FROM generate_series(0, 9999) g",
                [community],
            )

        def probers(mode: str, per_commit: int) -> list[_Prober]:
            return [
                _Prober(url, f"{mode}{per_commit}-{i}", community, mode, per_commit)
                for i in range(clients)
            ]

        raw_before = _phase("raw", [_Raw(url, f"ra{i}") for i in range(clients)], seconds)
        trips = _phase("round trips", probers("round_trips", 1), seconds)
        one_call = _phase("one call", probers("function", 1), seconds)
        grouped = _phase("grouped", probers("function", 8), seconds)
        raw_after = _phase("raw", [_Raw(url, f"rb{i}") for i in range(clients)], seconds)
        raw = (raw_before.units + raw_after.units) / (raw_before.seconds + raw_after.seconds)
        print(
            f"# raw single-row INSERT+COMMIT: {raw_before.rate:.0f} before, "
            f"{raw_after.rate:.0f} after",
            file=sys.stderr,
        )
        for name, result, unit in (
            (
                f"today's {TODAY_EXTRA_ROUND_TRIPS + 2} round trips per event, no work in them",
                trips,
                "events/s",
            ),
            (
                "every write of an event in one PL/pgSQL call, one COMMIT per event",
                one_call,
                "events/s",
            ),
            ("the same call, 8 events per COMMIT (group commit)", grouped, "events/s"),
        ):
            busy = f" (CPU {100 * result.cpu_busy:.0f}% busy)" if result.cpu_busy else ""
            print(
                f"{name} ({clients} connections){busy}: ours {result.rate:.0f} {unit}, "
                f"raw baseline {raw:.0f} rows/s, ratio {result.rate / raw:.2f}",
                flush=True,
            )
    finally:
        close_django()
        database.drop(server_url, "bench_probe")
    return 0


class _Raw:
    def __init__(self, url: str, tag: str) -> None:
        self.inner = database.RawSingleInserter(
            url, database.RawRows(tag, hash(tag) % 1000, 10_000)
        )

    def step(self) -> int:
        return self.inner.step()

    def close(self) -> None:
        self.inner.close()


if __name__ == "__main__":
    raise SystemExit(main())
