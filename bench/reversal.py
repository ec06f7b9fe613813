"""What a reversal costs on a member's busy day beside a quiet one.

``python -m bench.reversal`` (with ``DB_PREFER_LOCAL=1``, as ``make bench``) sets up one
community with the default rules in its own database (``BENCH_REVERSAL_DB``, default
``bench_reversal``, recreated), through the service's batch ingestion
(``points.ingest.events_ingest``, batches of 500):

* member A (``busy``) with ``BENCH_REVERSAL_BUSY`` (2,500) scoring events on one local day
  (yesterday in the community's zone), a mix of messages, shares, ugc posts and check-ins, so
  that the daily caps and the daily total cap bite: most of them are cut to 0 points;
* ``BENCH_REVERSAL_SAMPLES`` / 10 quiet members with 10 events each on the same day;
* a warm-up member (one reversal first, not counted) and a ``floor`` member credited through
  ``adjustment_create`` for the raw baseline.

Then it times ``points.corrections.event_reverse`` in-process (one transaction each, the
commit included) for ``BENCH_REVERSAL_SAMPLES`` (60) random events of A's day and as many of
the quiet days (every event of every quiet member), interleaved busy/quiet so that drift
cancels out, with ``BENCH_REVERSAL_RAW`` (10) raw samples after each pair: one psycopg
``UPDATE points_member SET balance = balance - 1 WHERE id = %s`` and its COMMIT on the floor
member (the least any reversal can cost). Prints, as ``bench.run.figure`` lines:

1. reversal p99 on the busy day (ours) beside p99 on a quiet day (raw baseline column);
2. reversal p99 on the busy day beside the raw floor's p99.

The p50s go to stderr as notes. Percentiles as ``bench.load`` takes them: the value at index
``int(q * n)`` of the sorted samples (with 60 samples the p99 is the slowest one).

Only the public ``events_ingest(community=, events=, now=)`` and
``event_reverse(community=, client_id=, now=)`` are called, so the bench keeps working while
``points.corrections`` changes inside. Knobs: BENCH_REVERSAL_DB, BENCH_REVERSAL_BUSY (2500),
BENCH_REVERSAL_SAMPLES (60), BENCH_REVERSAL_RAW (10 per pair), BENCH_KEEP_DB (0).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import sys
import time
from typing import Any

import psycopg

from bench import database
from bench.run import close_django, figure, note, setup_django

BATCH = 500
QUIET_EVENTS = 10
# Weights of the busy day's mix: 20 messages, 4 shares and 5 ugc posts pay before their daily
# caps (20, 20, 50 points), one check-in a day pays; everything after is cut.
MIX = (("message", 50), ("share", 20), ("ugc_post", 25), ("check_in", 5))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def quantile_ms(samples: list[float], q: float) -> float:
    """Seconds in, milliseconds out; the median, or the value at ``int(q * n)`` (bench.load)."""
    if q == 0.5:
        return 1000 * statistics.median(samples)
    ordered = sorted(samples)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def day_events(member: str, count: int, start: dt.datetime, rng: random.Random) -> list[Any]:
    """``count`` events of ``member`` spread in order over the 24 hours from ``start``."""
    from points.ingest import EventInput

    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    step = dt.timedelta(seconds=86_000 / count)
    out = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        out.append(
            EventInput(
                client_id=f"{member}-{i:05d}",
                type=kind,
                member=member,
                occurred_at=start + dt.timedelta(seconds=60) + i * step,
                target=f"{member}-t{i}" if kind in ("share", "ugc_post") else "",
                group=f"g{i % 7}",
            )
        )
    return out


def ingest(community: Any, events: list[Any], now: dt.datetime) -> dict[str, int]:
    from points.ingest import events_ingest

    paid = cut = 0
    for start in range(0, len(events), BATCH):
        outcomes = events_ingest(community=community, events=events[start : start + BATCH], now=now)
        for outcome in outcomes:
            if outcome.status != "accepted":
                raise RuntimeError(f"{outcome.client_id}: {outcome.status} {outcome.errors}")
            if (outcome.result or {}).get("points"):
                paid += 1
            else:
                cut += 1
    return {"paid": paid, "cut": cut}


def reverse(community: Any, client_id: str) -> tuple[float, dict[str, Any]]:
    from django.utils import timezone

    from points.corrections import event_reverse

    now = timezone.now()
    started = time.perf_counter()
    result = event_reverse(community=community, client_id=client_id, now=now)
    elapsed = time.perf_counter() - started
    if result.get("status") != "reversed":
        raise RuntimeError(f"reversal of {client_id}: {result}")
    return elapsed, result


def main() -> int:
    busy_count = _env_int("BENCH_REVERSAL_BUSY", 2500)
    samples = _env_int("BENCH_REVERSAL_SAMPLES", 60)
    raw_per_pair = _env_int("BENCH_REVERSAL_RAW", 10)
    dbname = os.environ.get("BENCH_REVERSAL_DB", "bench_reversal")
    keep_db = os.environ.get("BENCH_KEEP_DB") == "1"
    # Rank refreshes that ingestion queues stay in this process, not in the shared queue
    # folder that a later `make run` worker would drain (against another database).
    os.environ.setdefault("CELERY_BROKER_URL", "memory://localhost/")
    started = time.monotonic()
    quiet_members = max(1, -(-samples // QUIET_EVENTS))

    server_url = database.server_url()
    bench_url = database.recreate(server_url, dbname)
    try:
        slug, _key = setup_django(bench_url)
        from django.utils import timezone

        from points.adjustments import AdjustmentInput, adjustment_create
        from points.models import Community, Member
        from points.timeutils import community_zone

        community = Community.objects.get(slug=slug)
        now = timezone.now()
        zone = community_zone(community.timezone)
        local_now = now.astimezone(zone)
        day = local_now.date() - dt.timedelta(days=1)
        day_start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
        rng = random.Random(20_240_601)

        t0 = time.monotonic()
        busy = day_events("busy", busy_count, day_start, rng)
        busy_outcome = ingest(community, busy, now)
        busy_seconds = time.monotonic() - t0
        quiet: list[Any] = []
        for q in range(quiet_members):
            quiet += day_events(f"quiet{q:02d}", QUIET_EVENTS, day_start, rng)
        warm = day_events("warmup", QUIET_EVENTS, day_start, rng)
        quiet_outcome = ingest(community, quiet + warm, now)
        adjustment_create(
            community=community,
            item=AdjustmentInput(member="floor", points=1_000_000, reason="bench: raw floor"),
            actor="bench",
            create_member=True,
            now=now,
        )
        floor_id = Member.objects.get(community=community, external_id="floor").pk
        note(
            f"database {dbname}; day {day} ({community.timezone}): busy member {busy_count} "
            f"events ingested in batches of {BATCH} in {busy_seconds:.1f} s "
            f"({busy_outcome['paid']} paid, {busy_outcome['cut']} paid nothing); "
            f"{quiet_members} quiet members x {QUIET_EVENTS} events ({quiet_outcome['paid']} "
            f"paid, {quiet_outcome['cut']} paid nothing, warm-up member included)"
        )

        reverse(community, warm[0].client_id)  # warm-up: caches, plans; not counted
        busy_ids = [e.client_id for e in rng.sample(busy, min(samples, len(busy)))]
        quiet_ids = [e.client_id for e in quiet]
        rng.shuffle(quiet_ids)
        pairs = min(len(busy_ids), len(quiet_ids))
        busy_s: list[float] = []
        quiet_s: list[float] = []
        raw_s: list[float] = []
        busy_rescored = quiet_rescored = busy_paid = 0
        raw = psycopg.connect(bench_url)
        try:
            for i in range(pairs):
                elapsed, result = reverse(community, busy_ids[i])
                busy_s.append(elapsed)
                busy_rescored += len(result.get("rescored") or [])
                busy_paid += bool(result.get("reversed"))
                elapsed, result = reverse(community, quiet_ids[i])
                quiet_s.append(elapsed)
                quiet_rescored += len(result.get("rescored") or [])
                for _ in range(raw_per_pair):
                    t = time.perf_counter()
                    raw.execute(
                        "UPDATE points_member SET balance = balance - 1 WHERE id = %s",
                        (floor_id,),
                    )
                    raw.commit()
                    raw_s.append(time.perf_counter() - t)
        finally:
            raw.close()

        note(
            f"event_reverse in-process, {pairs} on the busy day (random events of "
            f"{busy_count}) and {pairs} on quiet days ({QUIET_EVENTS} events each), "
            f"interleaved: busy p50 {quantile_ms(busy_s, 0.5):.1f} ms, p99 "
            f"{quantile_ms(busy_s, 0.99):.1f} ms, max {1000 * max(busy_s):.1f} ms, "
            f"{busy_paid} of them took points back, {busy_rescored} re-scored awards; "
            f"quiet p50 {quantile_ms(quiet_s, 0.5):.1f} ms, "
            f"p99 {quantile_ms(quiet_s, 0.99):.1f} ms, max {1000 * max(quiet_s):.1f} ms, "
            f"{quiet_rescored} re-scored awards"
        )
        note(
            f"raw floor ({len(raw_s)} samples): one UPDATE points_member SET balance = "
            f"balance - 1 + COMMIT via psycopg: p50 {quantile_ms(raw_s, 0.5):.2f} ms, p99 "
            f"{quantile_ms(raw_s, 0.99):.2f} ms"
        )
        figure(
            f"reversal p99 on a day of {busy_count:,} events vs on a day of {QUIET_EVENTS} "
            "events (target: within a few times)",
            quantile_ms(busy_s, 0.99),
            quantile_ms(quiet_s, 0.99),
            "ms",
        )
        figure(
            f"reversal p99 on a day of {busy_count:,} events vs a plain reversal floor (one "
            "raw UPDATE of the balance + COMMIT)",
            quantile_ms(busy_s, 0.99),
            quantile_ms(raw_s, 0.99),
            "ms",
        )
    finally:
        close_django()
        if not keep_db:
            database.drop(server_url, dbname)
    note(f"bench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
