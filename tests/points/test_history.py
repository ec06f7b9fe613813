"""The partitioned history (points.history, migration 0015, decision 49): events and the ledger
by month, exactly-once through the key table whatever the writer, jobs that read a period
touch only its months (their real SQL, EXPLAINed), months made ahead, and an old month
archived (detached, copied, dropped) with every total still right."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incentives.honors import honor_roll_publish
from incentives.koc import koc_detect
from points import history
from points.expiry import points_expire
from points.models import (
    Community,
    EntryKind,
    Event,
    EventKey,
    HistoryArchive,
    LedgerCheckpoint,
    LedgerEntry,
    Member,
)
from points.rules import DEFAULT_RULES
from points.services import EventInput, events_ingest, ledger_reconcile, rule_set_publish


def _month(day: dt.date, add: int = 0) -> dt.date:
    return history.month_start(day, add)


def _now_month() -> dt.date:
    return _month(timezone.now().astimezone(dt.UTC).date())


def _at(month: dt.date, day: int = 10) -> dt.datetime:
    return dt.datetime(month.year, month.month, day, 12, tzinfo=dt.UTC)


def _partition_of(table: str, key: str, row_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [row_id])  # noqa: S608
        return cursor.fetchone()[0]


def test_both_tables_are_partitioned_by_month_from_the_floor_to_three_months_ahead(
    db: None,
) -> None:
    floor = history.online_floor().date()
    ahead = _month(_now_month(), history.MONTHS_AHEAD)
    for table, key in history.TABLES.items():
        months = [p.month for p in history.partitions(table)]
        assert months[0] <= floor
        assert months[-1] == ahead
        assert months == sorted(set(months))
        assert all(_month(a, 1) == b for a, b in zip(months, months[1:], strict=False))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_get_partkeydef(%s::regclass), "
                "pg_get_constraintdef((SELECT oid FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'p'))",
                [table, table],
            )
            partkey, primary = cursor.fetchone()
        assert partkey == f"RANGE ({key})"
        assert primary == f"PRIMARY KEY (id, {key})"


def test_an_event_lands_in_its_months_partition_and_its_entries_in_todays(
    community: Community,
) -> None:
    occurred = timezone.now() - dt.timedelta(days=62)
    [outcome] = events_ingest(
        community=community,
        events=[EventInput(client_id="old-1", type="share", member="ann", occurred_at=occurred)],
    )
    assert outcome.status == "accepted"
    event = Event.objects.by_client_id(community, "old-1").get()
    assert _partition_of("points_event", "occurred_at", event.pk) == history.partition_name(
        "points_event", _month(occurred.astimezone(dt.UTC).date())
    )
    entry = LedgerEntry.objects.get(event=event)
    assert _partition_of("points_ledgerentry", "created_at", entry.pk) == (
        history.partition_name("points_ledgerentry", _now_month())
    )
    key = EventKey.objects.get(community=community, client_id="old-1")
    assert (key.pk, key.occurred_at) == (event.pk, event.occurred_at)


def test_a_replay_dated_in_another_month_is_a_conflict_not_a_second_event(
    community: Community,
) -> None:
    now = timezone.now()
    first = EventInput(client_id="e-1", type="share", member="ann", occurred_at=now)
    moved = EventInput(
        client_id="e-1", type="share", member="ann", occurred_at=now - dt.timedelta(days=40)
    )
    assert events_ingest(community=community, events=[first])[0].status == "accepted"
    assert events_ingest(community=community, events=[moved])[0].status == "conflict"
    assert events_ingest(community=community, events=[first])[0].status == "replayed"
    assert Event.objects.filter(community=community, client_id="e-1").count() == 1


def test_any_writer_gets_exactly_once_from_the_key_table(community: Community) -> None:
    """Not only ingestion: an event written by the ORM gets its key from the trigger, and a
    second event with the same id in another month's partition is refused."""
    member = Member.objects.create(community=community, external_id="ann", joined_at=timezone.now())
    fields = {
        "community": community,
        "member": member,
        "type": "share",
        "received_at": timezone.now(),
        "local_day": timezone.now().date(),
        "body_hash": "x",
        "rule_version": 1,
        "scoring": {},
    }
    now = timezone.now()
    event = Event.objects.create(client_id="orm-1", occurred_at=now, **fields)
    assert EventKey.objects.get(community=community, client_id="orm-1").pk == event.pk
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.create(client_id="orm-1", occurred_at=now - dt.timedelta(days=45), **fields)
    assert Event.objects.filter(client_id="orm-1").count() == 1


_PARTITION = re.compile(r"points_event_p(\d{4})_(\d{2})")


_CREATE_AS = re.compile(r"^\s*CREATE\s+TEMP\w*\s+TABLE\s+\w+\s+(ON COMMIT DROP\s+)?AS\s+", re.I)


def _event_partitions_read(sql: str) -> set[dt.date]:
    sql = _CREATE_AS.sub("", sql)  # a temporary table filled from the events: its query
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        plan = json.dumps(cursor.fetchone()[0])
    return {dt.date(int(y), int(m), 1) for y, m in _PARTITION.findall(plan)}


def _explained(queries: list[dict[str, str]]) -> list[set[dt.date]]:
    return [
        _event_partitions_read(q["sql"])
        for q in queries
        if "points_event " in q["sql"] or "points_event\n" in q["sql"]
    ]


def test_the_honor_roll_reads_only_its_months_partitions(community: Community) -> None:
    """The job's own SQL, captured as it ran and EXPLAINed: each read of the events touches
    the partitions of the month it publishes (and its neighbour at a time-zone edge), not the
    28 months attached."""
    last_month = _month(_now_month(), -1)
    events_ingest(
        community=community,
        events=[
            EventInput(
                client_id=f"h-{n}", type="share", member=f"m{n}", occurred_at=_at(last_month)
            )
            for n in range(3)
        ],
    )
    with CaptureQueriesContext(connection) as captured:
        honor_roll_publish(community=community, month=f"{last_month:%Y-%m}")
    reads = _explained(captured.captured_queries)
    assert reads, "the honor roll reads the events"
    allowed = {_month(last_month, -1), last_month, _month(last_month, 1)}
    for months in reads:
        assert months, "each read names at least one partition"
        assert months <= allowed, sorted(months)
    assert len(history.partitions("points_event")) > 20


def test_koc_detection_reads_only_the_months_of_its_window(community: Community) -> None:
    events_ingest(
        community=community,
        events=[EventInput(client_id=f"k-{n}", type="share", member=f"m{n}") for n in range(3)],
    )
    with CaptureQueriesContext(connection) as captured:
        koc_detect(community=community)
    reads = _explained(captured.captured_queries)
    assert reads, "KOC detection reads the events"
    this = _now_month()
    allowed = {_month(this, -2), _month(this, -1), this}  # a 30-day window spans two or three
    for months in reads:
        assert months, "each read names at least one partition"
        assert months <= allowed, sorted(months)


def test_ensure_makes_missing_months_and_is_idempotent(db: None) -> None:
    history.partitions_ensure()  # whatever a new month since the migration needs
    ahead = _month(_now_month(), history.MONTHS_AHEAD)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {history.partition_name('points_event', ahead)}")  # noqa: S608
    created = history.partitions_ensure()
    assert created == [history.partition_name("points_event", ahead)]
    assert history.partitions_ensure() == []
    later = timezone.now() + dt.timedelta(days=40)  # one or two months later
    later_ahead = _month(later.astimezone(dt.UTC).date(), history.MONTHS_AHEAD)
    months = []
    month = _month(ahead, 1)
    while month <= later_ahead:
        months.append(month)
        month = _month(month, 1)
    assert months
    assert history.partitions_ensure(later) == [
        history.partition_name(table, m) for table in history.TABLES for m in months
    ]


def test_an_event_before_the_online_floor_is_refused_by_name(
    community: Community, settings
) -> None:
    settings.HISTORY_ONLINE_MONTHS = 1
    Community.objects.filter(pk=community.pk).update(
        created_at=timezone.now() - dt.timedelta(days=400)
    )
    community.refresh_from_db()
    too_old = history.online_floor() - dt.timedelta(hours=1)
    [outcome] = events_ingest(
        community=community,
        events=[EventInput(client_id="x", type="share", member="ann", occurred_at=too_old)],
    )
    assert outcome.status == "invalid"
    assert [(e.field, e.code) for e in outcome.errors] == [("occurred_at", "before_backfill_limit")]


def test_a_month_is_archived_and_every_total_still_agrees(
    community: Community, settings, tmp_path: Path
) -> None:
    """Events and entries in an old month; the month is archived (oldest months first);
    the rest of the history is untouched, the file holds the rows, the checkpoint keeps
    reconcile and expiry right, and the archived id is still known."""
    Community.objects.filter(pk=community.pk).update(
        created_at=timezone.now() - dt.timedelta(days=300)
    )
    community.refresh_from_db()
    old = _month(_now_month(), -5)
    old_time = _at(old)
    events_ingest(
        community=community,
        events=[
            EventInput(client_id="old-a", type="share", member="ann", occurred_at=old_time),
            EventInput(client_id="old-b", type="share", member="bob", occurred_at=old_time),
        ],
        now=old_time + dt.timedelta(minutes=1),  # as if received then: its entries are old too
    )
    events_ingest(
        community=community,
        events=[EventInput(client_id="new-a", type="share", member="ann")],
    )
    ann = Member.objects.get(community=community, external_id="ann")
    assert ann.balance > 0
    balances = dict(
        Member.objects.filter(community=community).values_list("external_id", "balance")
    )
    before = Event.objects.filter(community=community).count()

    settings.HISTORY_ONLINE_MONTHS = 2  # the old month is now below the floor
    _fire_deferred_checks()
    with pytest.raises(history.HistoryError, match="first"):
        history.month_archive("points_event", old, tmp_path)  # older months first
    for table in history.TABLES:
        for month in [p.month for p in history.partitions(table) if p.month <= old]:
            with CaptureQueriesContext(connection) as captured:
                record = history.month_archive(table, month, tmp_path)
            assert record.state == HistoryArchive.State.ARCHIVED
            if table == "points_ledgerentry":
                _assert_summed_before_the_detach(captured.captured_queries)
    with pytest.raises(history.HistoryError, match="still online"):
        history.month_archive("points_event", _month(_now_month(), -1), tmp_path)

    assert old not in {p.month for p in history.partitions("points_event")}
    assert Event.objects.filter(community=community).count() == before - 2
    record = HistoryArchive.objects.get(table="points_event", month=old)
    data = Path(record.path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record.sha256
    rows = list(csv.DictReader(gzip.decompress(data).decode().splitlines()))
    assert record.rows == len(rows) == 2
    assert {r["client_id"] for r in rows} == {"old-a", "old-b"}

    checkpoint = LedgerCheckpoint.objects.get(community=community, member=ann)
    assert checkpoint.net > 0
    assert checkpoint.through == _month(old, 1)
    result = ledger_reconcile(community=community, period="after-archive")
    assert result["mismatched"] == 0, result
    assert (
        dict(Member.objects.filter(community=community).values_list("external_id", "balance"))
        == balances
    )

    [replay] = events_ingest(
        community=community,
        events=[EventInput(client_id="old-a", type="share", member="ann", occurred_at=old_time)],
    )
    assert replay.status == "invalid"
    assert [e.code for e in replay.errors] == ["archived"]
    assert history.partitions_ensure() == []  # archived months are not made again


def _assert_summed_before_the_detach(queries: list[dict[str, str]]) -> None:
    """A ledger month is summed while only the month itself is held against writers; the
    parent's exclusive lock (the detach, which stops every ledger write) comes last, just
    before the commit."""
    sql = [" ".join(q["sql"].split()) for q in queries]
    lock = next(i for i, q in enumerate(sql) if q.startswith("LOCK TABLE points_ledgerentry_p"))
    checkpoint = next(i for i, q in enumerate(sql) if "INTO points_ledgercheckpoint" in q)
    detach = next(i for i, q in enumerate(sql) if "DETACH PARTITION" in q)
    assert "IN SHARE MODE" in sql[lock]
    assert lock < checkpoint < detach


def test_expiry_counts_the_archived_credits(community: Community, settings, tmp_path) -> None:
    """Points credited in an archived month still expire, once: the checkpoint's credits are
    the oldest lot."""
    Community.objects.filter(pk=community.pk).update(
        created_at=timezone.now() - dt.timedelta(days=300)
    )
    community.refresh_from_db()
    old = _month(_now_month(), -5)
    events_ingest(
        community=community,
        events=[EventInput(client_id="old", type="share", member="ann", occurred_at=_at(old))],
        now=_at(old) + dt.timedelta(minutes=1),
    )
    settings.HISTORY_ONLINE_MONTHS = 2
    _fire_deferred_checks()
    rule_set_publish(
        community=community,
        rules={**DEFAULT_RULES, "expiry_days": 400, "streak": None, "monthly_quota": None},
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(history.HistoryError, match="expiry_days is 400"):
        history.month_archive("points_ledgerentry", old, tmp_path)  # its credits may not expire yet
    first = history.partitions("points_ledgerentry")[0].month  # two years back: may go
    history.month_archive("points_ledgerentry", first, tmp_path)
    assert history.partitions("points_ledgerentry")[0].month == history.month_start(first, 1)
    rule_set_publish(
        community=community,
        rules={**DEFAULT_RULES, "expiry_days": 30, "streak": None, "monthly_quota": None},
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    for month in [p.month for p in history.partitions("points_ledgerentry") if p.month <= old]:
        history.month_archive("points_ledgerentry", month, tmp_path)
    assert not LedgerEntry.objects.filter(community=community).exists()
    result = points_expire(community=community)
    assert result["members"] == 1
    assert result["points"] > 0
    ann = Member.objects.get(community=community, external_id="ann")
    assert ann.balance == 0
    assert LedgerEntry.objects.filter(member=ann, kind=EntryKind.EXPIRY).count() == 1
    assert ledger_reconcile(community=community, period="p")["mismatched"] == 0
    assert points_expire(community=community)["members"] == 0  # nothing left to expire


def _fire_deferred_checks() -> None:
    """The test's rows were written in the test's transaction: their deferred foreign-key
    checks are still pending, and a table with pending checks cannot be dropped. (The job
    runs outside any transaction in production, where nothing is pending.)"""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
