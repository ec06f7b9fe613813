"""Rank lookups in a community of a million members: ``GET …/members/{m}/rank`` over HTTP
through the real server, beside one indexed PostgreSQL query for the same member's rank row.

The community is generated with set-based SQL (members and their all-time totals, with many
ties), its rank snapshot is built with the service the Celery job runs, then both sides look up
the same random members from the same number of clients.
"""

from __future__ import annotations

import http.client
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.cpu import Meter, Split

SLUG = "ranks-1m"


@dataclass
class Latencies:
    name: str
    samples: list[float]

    def p(self, q: float) -> float:
        ordered = sorted(self.samples)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return 1000 * statistics.median(self.samples)


def generate(bench_url: str, members: int) -> dict[str, Any]:
    """Create the community, ``members`` members and their all-time and this month's totals
    (set-based SQL), build both snapshots with ``rank_snapshot_build`` (what the Celery job
    runs); returns ids and timings."""
    from django.db import connections

    from points.models import PeriodKind, PeriodTotal, Scope
    from points.services import api_key_create, community_create, rank_snapshot_build
    from points.timeutils import month_start, today

    community = community_create(slug=SLUG, name="A million members")
    _key, plain = api_key_create(community=community, scopes=[Scope.MEMBERS_READ], name="bench")
    month = month_start(today(community.timezone))
    started = time.monotonic()
    with psycopg.connect(bench_url, autocommit=True) as conn:
        # Lifetime points from a skewed distribution with many ties (as in real communities);
        # the balance and the all-time total agree with them.
        conn.execute(
            """
            INSERT INTO points_member (community_id, external_id, display_name, status, balance,
                                       held, lifetime_points, owed, streak_days, joined_at,
                                       last_event_at, created_at)
            SELECT %s, 'u' || lpad(g::text, 7, '0'), '', 'active', p, 0, p, 0, 0, now(), now(),
                   now()
            FROM (SELECT g, 1 + floor(power(random(), 3) * 20000)::int AS p
                  FROM generate_series(1, %s) g) x
            """,
            [community.pk, members],
        )
        # The all-time total is the members' lifetime points (decision 48): no rows for it.
        # This month: three members in five were active, with at most their lifetime points.
        conn.execute(
            """
            INSERT INTO points_periodtotal (community_id, member_id, kind, start, points, active)
            SELECT %s, m.id, 'month', %s,
                   least(m.lifetime_points, 1 + floor(power(random(), 3) * 2000)::int), true
            FROM points_member m WHERE m.community_id = %s AND random() < 0.6
            """,
            [community.pk, month, community.pk],
        )
        # As autovacuum leaves a table that stopped changing: statistics and visibility map.
        conn.execute("VACUUM (ANALYZE) points_member")
        conn.execute("VACUUM (ANALYZE) points_periodtotal")
    generated = time.monotonic() - started
    connections.close_all()
    builds: dict[str, float] = {}
    for kind, start in (
        (PeriodKind.ALL_TIME, PeriodTotal.ALL_TIME_START),
        (PeriodKind.MONTH, month),
    ):
        started = time.monotonic()
        rank_snapshot_build(community=community, kind=kind, start=start, force=True)
        builds[kind.value] = time.monotonic() - started
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) points_ranksnapshot")
        top = conn.execute(
            """
            SELECT m.external_id, s.member_id, s.rank FROM points_ranksnapshot s
            JOIN points_member m ON m.id = s.member_id
            WHERE s.community_id = %s AND s.kind = 'all_time' AND s.position IN (1, %s)
            ORDER BY s.position
            """,
            [community.pk, int(members * 0.9)],
        ).fetchall()
        month_ranked = conn.execute(
            "SELECT ranked FROM points_rankbuild WHERE community_id = %s AND kind = 'month'",
            [community.pk],
        ).fetchone()
    connections.close_all()
    return {
        "community_id": community.pk,
        "key": plain,
        "generated_s": generated,
        "snapshot_s": builds["all_time"],
        "month_snapshot_s": builds["month"],
        "month_ranked": month_ranked[0] if month_ranked else 0,
        "first": top[0],
        "deep": top[-1],
    }


class Beat:
    """What Celery beat does in production, every ``every`` seconds: refresh the community's
    current snapshots (a period that did not change is only marked current). Without it the
    snapshot would pass a minute of age mid-run and every worker would try to queue a rebuild
    on a broker that nobody consumes here."""

    def __init__(self, community_id: int, every: float = 20.0) -> None:
        self.community_id, self.every = community_id, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        from django.db import connection

        from points.models import Community
        from points.services import rank_snapshots_refresh

        try:
            while not self.stop.wait(self.every):
                rank_snapshots_refresh(community=Community.objects.get(pk=self.community_id))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
        finally:
            connection.close()

    def __enter__(self) -> Beat:
        from points.models import Community
        from points.services import rank_snapshots_refresh

        rank_snapshots_refresh(community=Community.objects.get(pk=self.community_id))
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        if self.error is not None:
            raise self.error


def _in_threads(clients: int, body: Callable[[int], None]) -> None:
    """``body(i)`` in ``clients`` threads at once; the first error is raised here."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            body(i)
        except BaseException as exc:  # noqa: BLE001 - raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _timed(clients: int, per_client: int, work: Any) -> list[tuple[int, float]]:
    """``clients`` threads, each doing steps 0 … ``per_client`` - 1: (step, seconds) each."""
    samples: list[list[tuple[int, float]]] = [[] for _ in range(clients)]

    def loop(i: int) -> None:
        state = work.start(i)
        for n in range(per_client):
            t0 = time.perf_counter()
            work.step(state, n)
            samples[i].append((n, time.perf_counter() - t0))
        work.stop(state)

    _in_threads(clients, loop)
    return [s for per in samples for s in per]


def _run(clients: int, per_client: int, work: Any) -> list[float]:
    return [seconds for _n, seconds in _timed(clients, per_client, work)]


def _run_split(clients: int, per_client: int, work: Any, ways: int) -> list[list[float]]:
    """As ``_run``, the samples split by step modulo ``ways`` (which member was asked)."""
    out: list[list[float]] = [[] for _ in range(ways)]
    for n, seconds in _timed(clients, per_client, work):
        out[n % ways].append(seconds)
    return out


class HttpRank:
    def __init__(self, port: int, key: str, members: list[str]) -> None:
        self.port, self.key, self.members = port, key, members

    def start(self, i: int) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def step(self, conn: http.client.HTTPConnection, n: int) -> None:
        member = self.members[n % len(self.members)]
        path = f"/api/v1/communities/{SLUG}/members/{member}/rank?period=all_time"
        for attempt in (1, 2):
            try:
                conn.request("GET", path, headers={"Authorization": f"Api-Key {self.key}"})
                response = conn.getresponse()
                body = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()  # the sync worker closed the connection: reconnect once
                if attempt == 2:
                    raise
        if response.status != 200 or b'"rank":' not in body:
            raise RuntimeError(f"rank lookup: HTTP {response.status} {body[:200]!r}")

    def stop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()


def load(port: int, key: str, members: list[str], *, clients: int, seconds: float) -> int:
    """Rank lookups of ``members`` from ``clients`` threads for ``seconds`` (a profiler's
    load, not a figure); returns how many were answered."""
    work = HttpRank(port, key, members)
    deadline = time.monotonic() + seconds
    done = [0] * clients

    def loop(i: int) -> None:
        conn = work.start(i)
        while time.monotonic() < deadline:
            work.step(conn, done[i])
            done[i] += 1
        work.stop(conn)

    _in_threads(clients, loop)
    return sum(done)


class HttpFloor(HttpRank):
    """Context, not a figure: ``GET /healthz`` (no database, no auth) through the same server
    and clients, i.e. what any request costs here before it does any work."""

    def step(self, conn: http.client.HTTPConnection, n: int) -> None:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"/healthz: HTTP {response.status}")


class RawRank:
    """The raw baseline: one indexed query for one member's snapshot row."""

    def __init__(self, url: str, community_id: int, member_ids: list[int]) -> None:
        self.url, self.community_id, self.member_ids = url, community_id, member_ids

    def start(self, i: int) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def step(self, conn: psycopg.Connection[Any], n: int) -> None:
        row = conn.execute(
            "SELECT rank, position, points FROM points_ranksnapshot "
            "WHERE community_id = %s AND kind = 'all_time' AND start = '2000-01-01' "
            "AND member_id = %s",
            [self.community_id, self.member_ids[n % len(self.member_ids)]],
        ).fetchone()
        if row is None:
            raise RuntimeError("raw rank lookup found no row")

    def stop(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()


def measure(
    port: int,
    bench_url: str,
    *,
    members: int,
    clients: int,
    requests: int,
    profile: Callable[[Callable[[float], int]], None] | None = None,
    meter: Meter | None = None,
) -> tuple[dict[str, Any], list[tuple[str, Latencies, Latencies]]]:
    """The generated data's figures, and (name, ours, raw) latency pairs: random members,
    then the member at rank 1 and one at 90% of the board. Each of ours runs between two halves
    of its raw baseline (same members, same clients), so that drift on a noisy machine falls on
    both sides. ``profile``, if given, is handed a function that puts ``seconds`` of random
    rank lookups on the server (for a sampling profiler), after the figures. With a ``meter``,
    ``data["cpu"]`` says who spent the CPU of random members' lookups, their raw queries and
    ``/healthz``: name → (split, requests)."""
    data = generate(bench_url, members)
    rng = random.Random(7)
    with psycopg.connect(bench_url) as conn:
        sample = conn.execute(
            "SELECT external_id, id FROM points_member WHERE community_id = %s "
            "ORDER BY random() LIMIT 5000",
            [data["community_id"]],
        ).fetchall()
    rng.shuffle(sample)
    names, ids = [r[0] for r in sample], [r[1] for r in sample]
    per_client = max(requests // clients, 1)
    cpu: dict[str, tuple[Split, int]] = {}
    data["cpu"] = cpu

    def metered(name: str, n: int, work: Any) -> list[float]:
        start = meter.read() if meter else None
        samples = _run(clients, n, work)
        if meter and start:
            split, count = meter.read() - start, len(samples)
            if name in cpu:
                split, count = split + cpu[name][0], count + cpu[name][1]
            cpu[name] = (split, count)
        return samples

    def pair(label: str, names: list[str], ids: list[int], n: int) -> tuple[Latencies, Latencies]:
        raw = RawRank(bench_url, data["community_id"], ids)
        before = metered("raw", max(n // 2, 1), raw)
        ours = Latencies(label, metered("ours", n, HttpRank(port, data["key"], names)))
        return ours, Latencies(label, before + metered("raw", max(n // 2, 1), raw))

    out: list[tuple[str, Latencies, Latencies]] = []
    with Beat(data["community_id"]):
        # warm the workers' connections, prepared statements and the raw connections' cache
        _run(clients, 50, HttpRank(port, data["key"], names))
        _run(clients, 50, RawRank(bench_url, data["community_id"], ids))
        out.append(("random members", *pair("random", names, ids, per_client)))
        data["floor"] = Latencies("floor", metered("floor", per_client, HttpFloor(port, "", names)))
        # Rank 1 and rank ~900,000 asked alternately by every client, so that both see the
        # same machine (this box is shared and its load moves within seconds).
        labels = (
            "the member at rank 1",
            f"a member at rank {data['deep'][2]:,} (position {int(members * 0.9):,})",
        )
        pairs = [data["first"], data["deep"]]
        both = 2 * max(per_client // 4, 100)
        raw = RawRank(bench_url, data["community_id"], [p[1] for p in pairs])
        raw_before = _run_split(clients, both // 2, raw, 2)
        ours = _run_split(clients, both, HttpRank(port, data["key"], [p[0] for p in pairs]), 2)
        raw_after = _run_split(clients, both // 2, raw, 2)
        for k, label in enumerate(labels):
            out.append(
                (
                    label,
                    Latencies(label, ours[k]),
                    Latencies(label, raw_before[k] + raw_after[k]),
                )
            )
        if profile is not None:
            profile(
                lambda seconds: load(port, data["key"], names, clients=clients, seconds=seconds)
            )
    return data, out
