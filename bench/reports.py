"""The operator's reports (``incentives.reports``) on one large generated community, each beside
one raw aggregate pass over the same events. Run: ``python -m bench.reports``.

The community is the jobs benchmark's (``bench.jobs.generate``: set-based SQL, members in
activity classes, 90 local days of events, roles and KOLs seeded), at a smaller default size so
that it runs in minutes: ``BENCH_REPORT_MEMBERS`` (100,000) and ``BENCH_REPORT_EVENTS``
(2,000,000). ``BENCH_REPORT_DB`` names the database (``bench_reports``); with
``BENCH_KEEP_DB=1`` it is kept, and a community of the same sizes found there is reused (so
``BENCH_REPORT_DB=bench_jobs BENCH_KEEP_DB=1 BENCH_REPORT_MEMBERS=1000000
BENCH_REPORT_EVENTS=20000000`` times the reports on the jobs benchmark's 1M/20M community
without generating it again). A database other than ``bench_reports`` is never created nor dropped.

Each report runs with ``now`` = the instant the generated data ends at, with its default window
(12 weeks, 12 months, 30 days), in-process through Django, its result thrown away. The raw
baseline is ``SELECT member_id, sum(points) FROM points_event WHERE community_id = … GROUP BY
member_id`` over psycopg (every row fetched), run before and after each report; the figure uses
their mean. ``BENCH_REPORT_RUNS`` (1) repeats each report and keeps its fastest run.

The generator writes no ledger entries, redemptions or payouts: ``liability`` and
``reward_spend`` read (nearly) empty tables here; their figures are the index probes' cost.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import database, jobs

DEFAULT_DB = "bench_reports"  # the only database this module creates or drops


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def measure(url: str, *, members: int, events: int, reuse: bool) -> None:
    from incentives import reports
    from points.models import Community

    data = jobs.existing(url, members, events) if reuse else None
    if data is None:
        note(f"reports data: generating {members:,} members and {events:,} events")
        data = jobs.generate(url, members=members, events=events)
        note(f"reports data: generated in {data['generated_s']:.0f} s")
    else:
        note(f"reports data: reusing community {data['community_id']}")
    community = Community.objects.get(pk=data["community_id"])
    now = data["now"]
    runs = _env_int("BENCH_REPORT_RUNS", 1)
    calls: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("activity", lambda: reports.activity_heatmap(community, now=now)),
        ("active_users", lambda: reports.active_users(community, now=now)),
        ("retention", lambda: reports.retention(community, now=now)),
        ("content_mix", lambda: reports.content_mix(community, now=now)),
        ("usual_hours", lambda: reports.usual_hours(community, now=now)),
        ("liability", lambda: reports.liability(community, now=now)),
        ("reward_spend", lambda: reports.reward_spend(community, now=now)),
    ]
    only = {r for r in os.environ.get("BENCH_REPORT_ONLY", "").split(",") if r}
    warm, groups = jobs.raw_pass(url, community.pk)
    note(f"reports: raw pass (warm-up, not counted): {warm:.2f} s, {groups:,} groups")
    size = f"{members / 1e6:g}M members, {events / 1e6:g}M events"
    for name, call in calls:
        if only and name not in only:
            continue
        raws, ours = [], []
        for _ in range(runs):
            raws.append(jobs.raw_pass(url, community.pk)[0])
            t0 = time.perf_counter()
            call()
            ours.append(time.perf_counter() - t0)
            raws.append(jobs.raw_pass(url, community.pk)[0])
        ours_s, raw_s = min(ours), sum(raws) / len(raws)
        print(
            f"reports.{name} ({size}; target ≤ 3): ours {ours_s:.2f} s, raw baseline "
            f"{raw_s:.2f} s, ratio {ours_s / raw_s:.2f}",
            flush=True,
        )


def main() -> int:
    started = time.monotonic()
    members = _env_int("BENCH_REPORT_MEMBERS", 100_000)
    events = _env_int("BENCH_REPORT_EVENTS", 2_000_000)
    dbname = os.environ.get("BENCH_REPORT_DB", DEFAULT_DB)
    keep = os.environ.get("BENCH_KEEP_DB", "") == "1"
    server_url = database.server_url()
    bench_url = database.with_dbname(server_url, dbname)
    reuse = keep and jobs.existing(bench_url, members, events) is not None
    if not reuse:
        if dbname != DEFAULT_DB:
            note(f"no community of these sizes in {dbname}: not recreating a database it owns")
            return 2
        database.recreate(server_url, dbname)
    try:
        jobs.setup_django(bench_url)
        pg = database.server_settings(bench_url)
        note(
            f"database {dbname} (PostgreSQL {pg['server_version']}, shared_buffers="
            f"{pg['shared_buffers']})"
        )
        measure(bench_url, members=members, events=events, reuse=reuse)
    finally:
        from django.db import connections

        connections.close_all()
        if not keep and not reuse:
            database.drop(server_url, dbname)
    note(f"bench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
