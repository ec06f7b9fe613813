"""What one event costs on disk, all tables together, beside the event row alone.

``python -m bench.storage`` (``BENCH_ONLY=storage make bench``) sets up one community with the
default rules in its own database (``BENCH_STORAGE_DB``, default ``bench_storage``, recreated),
then ingests ``BENCH_STORAGE_EVENTS`` (50,000) events from 3,000 members over 30 days through
the service's batch ingestion (``points.ingest.events_ingest``, batches of 500), in the mix of
docs/scaling.md's capacity model (messages, reactions with an author, check-ins, shares and
posts with content hashes, help, invites, joins, peer scores, featured content, leaves). Then
``VACUUM ANALYZE`` and, per table, the heap and index bytes summed over its partitions
(``pg_partition_tree``), divided by the events ingested.

The raw baseline is the event row alone: the same events copied into a plain table with
``points_event``'s columns and no index (``CREATE TABLE … (LIKE points_event)``), its heap per
event. The figure is the ratio: how many times its own row an event costs once the ledger,
tallies, totals, keys and every index are counted. The capacity model (docs/scaling.md)
uses the per-table lines printed as notes.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import time
import uuid
from typing import Any

import psycopg

from bench import database
from bench.run import close_django, figure, note, setup_django

BATCH = 500
MEMBERS = 3000
DAYS = 30
MIX = (
    ("message", 35),
    ("reaction", 25),
    ("check_in", 10),
    ("share", 8),
    ("ugc_post", 8),
    ("help", 4),
    ("invite", 2),
    ("join", 2),
    ("peer_score", 2),
    ("content_featured", 1),
)
TABLES = (
    "points_event",
    "points_eventkey",
    "points_ledgerentry",
    "points_dailytally",
    "points_periodtotal",
    "points_awardonce",
    "points_member",
)


def _events(count: int, now: dt.datetime, rng: random.Random) -> list[Any]:
    from points.ingest import EventInput

    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    start = now - dt.timedelta(days=DAYS)
    step = dt.timedelta(days=DAYS) / count
    out = []
    for i in range(count):
        kind = rng.choices(kinds, weights)[0]
        member = f"u{rng.randrange(MEMBERS):05d}"
        other = f"u{rng.randrange(MEMBERS):05d}"
        fields: dict[str, Any] = {}
        if kind == "reaction":
            fields = {"target": f"post-{rng.randrange(20_000)}", "content": {"author": other}}
        elif kind in ("share", "ugc_post"):
            fields = {"content": {"hash": uuid.uuid4().hex, "length": rng.randrange(20, 400)}}
        elif kind in ("invite", "peer_score"):
            fields = {"target": other if other != member else f"{other}x"}
            if kind == "peer_score":
                fields["score"] = rng.randint(1, 5)
        out.append(
            EventInput(
                client_id=str(uuid.uuid4()),
                type=kind,
                member=member,
                occurred_at=start + step * i,
                meta={"channel": "wechat"},
                **fields,
            )
        )
    return out


def _sizes(cursor: Any, table: str) -> tuple[int, int, int]:
    """(rows, heap bytes, index bytes), summed over the table's partitions if it has any
    (``pg_partition_tree`` lists no row for a plain table: then the table itself)."""
    cursor.execute(
        "SELECT COALESCE(sum(pg_table_size(r)), 0), COALESCE(sum(pg_indexes_size(r)), 0) "
        "FROM (SELECT relid AS r FROM pg_partition_tree(%s::regclass) WHERE isleaf "
        "      UNION ALL SELECT %s::regclass WHERE NOT EXISTS "
        "      (SELECT 1 FROM pg_partition_tree(%s::regclass) WHERE isleaf)) t",
        [table, table, table],
    )
    heap, indexes = cursor.fetchone()
    cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 (our own table names)
    return cursor.fetchone()[0], int(heap), int(indexes)


def main() -> int:
    count = int(os.environ.get("BENCH_STORAGE_EVENTS", 50_000))
    dbname = os.environ.get("BENCH_STORAGE_DB", "bench_storage")
    keep_db = os.environ.get("BENCH_KEEP_DB") == "1"
    os.environ.setdefault("CELERY_BROKER_URL", "memory://localhost/")
    started = time.monotonic()
    server_url = database.server_url()
    bench_url = database.recreate(server_url, dbname)
    try:
        slug, _key = setup_django(bench_url)
        from django.db import connection
        from django.utils import timezone

        from points.ingest import events_ingest
        from points.models import Community

        community = Community.objects.filter(slug=slug).get()
        Community.objects.filter(pk=community.pk).update(
            created_at=timezone.now() - dt.timedelta(days=DAYS + 1)
        )
        community.refresh_from_db()
        now = timezone.now()
        events = _events(count, now, random.Random(20_261_202))
        t0 = time.monotonic()
        accepted = 0
        for i in range(0, count, BATCH):
            outcomes = events_ingest(community=community, events=events[i : i + BATCH], now=now)
            accepted += sum(o.status == "accepted" for o in outcomes)
        note(f"{accepted:,} of {count:,} events accepted in {time.monotonic() - t0:.0f} s")
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_event_rows (LIKE points_event)")
            cursor.execute("INSERT INTO bench_event_rows SELECT * FROM points_event")
        connection.close()
        with psycopg.connect(bench_url, autocommit=True) as raw:
            raw.execute("VACUUM ANALYZE")
        total = 0
        with connection.cursor() as cursor:
            for table in TABLES:
                rows, heap, indexes = _sizes(cursor, table)
                total += heap + indexes
                per_row = (heap + indexes) / rows if rows else 0
                note(
                    f"{table}: {rows:,} rows, heap {heap / 1e6:.1f} MB, indexes "
                    f"{indexes / 1e6:.1f} MB, {per_row:.0f} bytes per row, "
                    f"{(heap + indexes) / accepted:.0f} bytes per event"
                )
            _rows, raw_heap, _none = _sizes(cursor, "bench_event_rows")
        figure(
            f"bytes stored per event, every table and index ({accepted:,} events, default "
            "rules) vs the event row alone in a plain table (its heap, no index)",
            total / accepted,
            raw_heap / accepted,
            "bytes",
        )
    finally:
        close_django()
        if not keep_db:
            database.drop(server_url, dbname)
    note(f"bench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
