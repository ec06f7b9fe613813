"""The partitioned history: ``points_event`` by month of ``occurred_at``, ``points_ledgerentry``
by month of ``created_at`` (migration 0015, decision 49, docs/scaling.md).

Two jobs keep it:

- ``partitions_ensure`` (beat, daily, and ``manage.py history ensure``) creates every month
  from ``online_floor`` up to ``MONTHS_AHEAD`` months ahead, so a row never lacks a partition:
  events may not be dated before the floor (``points.ingest.validate.occurred_at_window``) and
  nothing is dated after now plus a few minutes;
- ``month_archive`` (``manage.py history archive``, an operator's decision) takes one month
  below the floor off the primary: detach, copy to a file (SHA-256 and row count kept in
  ``HistoryArchive``), drop. A ledger month leaves its sums behind in ``LedgerCheckpoint`` in
  the same transaction as the detach, so reconcile and expiry still count every point. Event
  keys stay: an archived id is still known (``points_eventkey``).

Months are UTC months, named ``<table>_pYYYY_MM``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from points.models import HistoryArchive
from points.timeutils import month_start

TABLES = {"points_event": "occurred_at", "points_ledgerentry": "created_at"}
MONTHS_AHEAD = 3
DEFAULT_ONLINE_MONTHS = 24


class HistoryError(Exception):
    """A month that may not be archived (still online, already gone, or not a month)."""


def online_months() -> int:
    return int(getattr(settings, "HISTORY_ONLINE_MONTHS", DEFAULT_ONLINE_MONTHS))


def online_floor(now: dt.datetime | None = None) -> dt.datetime:
    """The oldest time history is kept online for: the first instant of the UTC month
    ``HISTORY_ONLINE_MONTHS`` before this one. Events older than that are refused, and only
    months before it may be archived."""
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    return dt.datetime.combine(month_start(today, -online_months()), dt.time(), tzinfo=dt.UTC)


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month:%Y_%m}"


@dataclass(frozen=True)
class Partition:
    table: str
    name: str
    month: dt.date


def partitions(table: str) -> list[Partition]:
    """The table's attached monthly partitions, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    prefix = f"{table}_p"
    return [
        Partition(table, name, dt.date(int(name[-7:-3]), int(name[-2:]), 1))
        for name in names
        if name.startswith(prefix)
    ]


def partitions_ensure(now: dt.datetime | None = None) -> list[str]:
    """Create the missing months from the online floor to ``MONTHS_AHEAD`` ahead, for both
    tables; returns the partitions created. Idempotent; an archived month is not re-created.

    ``CREATE TABLE … PARTITION OF`` takes a short exclusive lock on the parent; a lock
    timeout keeps it from queueing behind a long query (the job runs again tomorrow, and the
    months are made three ahead)."""
    now = now or timezone.now()
    first = online_floor(now).date()
    last = month_start(now.astimezone(dt.UTC).date(), MONTHS_AHEAD)
    archived = set(HistoryArchive.objects.values_list("table", "month"))
    created: list[str] = []
    for table in TABLES:
        have = {p.month for p in partitions(table)}
        month = first
        while month <= last:
            if month not in have and (table, month) not in archived:
                after = month_start(month, 1)
                name = partition_name(table, month)
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '5s'")
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                        f"FOR VALUES FROM ('{_utc(month).isoformat()}') "
                        f"TO ('{_utc(after).isoformat()}')"  # DDL takes no parameters
                    )
                created.append(name)
            month = month_start(month, 1)
    return created


def month_archive(
    table: str, month: dt.date, directory: Path, now: dt.datetime | None = None
) -> HistoryArchive:
    """Take one month of ``table`` off the primary: detach (a ledger month first leaves its
    sums in ``LedgerCheckpoint``, in the same transaction), copy it to
    ``<directory>/<partition>.csv.gz``, record the file's SHA-256 and row count, drop it.

    Only a month wholly before the online floor may go: no event can be dated in it any more
    and no job window reaches it. Months leave oldest first. Resumable: a month left detached
    by a failed copy is copied and dropped by the next call."""
    if table not in TABLES:
        raise HistoryError(f"{table} is not a partitioned history table")
    now = now or timezone.now()
    month = month_start(month)
    if month_start(month, 1) > online_floor(now).date():
        raise HistoryError(
            f"{month:%Y-%m} is still online: months before {online_floor(now):%Y-%m} may go "
            "(HISTORY_ONLINE_MONTHS)"
        )
    if table == "points_ledgerentry" and (days := _longest_expiry_days(now)):
        cutoff = (now - dt.timedelta(days=days)).astimezone(dt.UTC).date()
        if month_start(month, 1) > cutoff:
            # Its credits could still be expiring: expiry counts archived credits as expired.
            raise HistoryError(
                f"{month:%Y-%m} may still hold credits that have not expired (a community's "
                f"expiry_days is {days}): months before {cutoff:%Y-%m-%d} may go"
            )
    name = partition_name(table, month)
    record = HistoryArchive.objects.filter(table=table, month=month).first()
    if record is not None and record.state == HistoryArchive.State.ARCHIVED:
        return record
    if record is None:
        attached = [p.month for p in partitions(table)]
        if month not in attached:
            raise HistoryError(f"{name} is not attached")
        if attached[0] != month:
            # Oldest first: a checkpoint's last balance must come from its latest month.
            raise HistoryError(f"archive {partition_name(table, attached[0])} first")
        with transaction.atomic(), connection.cursor() as cursor:
            if table == "points_ledgerentry":
                # Sum the month first, holding it against writers only (reads go on), then
                # detach: the parent's exclusive lock, which stops every write of the
                # ledger, is held from the detach to the commit, not while the month is
                # summed. Both in one transaction: no reader sees the month in both places.
                cursor.execute(f"LOCK TABLE {name} IN SHARE MODE")
                _checkpoint(cursor, name, month_start(month, 1))
            cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
            record = HistoryArchive.objects.create(
                table=table, month=month, state=HistoryArchive.State.DETACHED, detached_at=now
            )
    path, digest, rows = _copy_out(name, directory)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {name}")
        record.state = HistoryArchive.State.ARCHIVED
        record.path, record.sha256, record.rows = str(path), digest, rows
        record.archived_at = timezone.now()
        record.save()
    return record


def _longest_expiry_days(now: dt.datetime) -> int:
    """The longest ``expiry_days`` in force in any community (0: none expires points)."""
    from points.models import Community
    from points.selectors import rules_in_force

    return max(
        (rules_in_force(c, now).rules.expiry_days or 0 for c in Community.objects.all()),
        default=0,
    )


def _checkpoint(cursor, partition: str, through: dt.date) -> None:
    """Add a detached ledger month's sums to each member's checkpoint."""
    from points.expiry import CREDIT_KINDS

    cursor.execute(
        f"""
        INSERT INTO points_ledgercheckpoint AS c
            (community_id, member_id, through, net, credits, debits, balance_after)
        SELECT community_id, member_id, %s, sum(points),
               COALESCE(sum(points) FILTER (WHERE points > 0 AND kind = ANY(%s)), 0),
               COALESCE(-sum(points) FILTER (WHERE points < 0), 0),
               (array_agg(balance_after ORDER BY id DESC))[1]
        FROM {partition}
        GROUP BY community_id, member_id
        ON CONFLICT (community_id, member_id) DO UPDATE
            SET through = EXCLUDED.through, net = c.net + EXCLUDED.net,
                credits = c.credits + EXCLUDED.credits, debits = c.debits + EXCLUDED.debits,
                balance_after = EXCLUDED.balance_after
        """,  # noqa: S608 (the partition name is ours, not input)
        [through, list(CREDIT_KINDS)],
    )


def _copy_out(name: str, directory: Path) -> tuple[Path, str, int]:
    """COPY the table to a gzipped CSV with a header; its SHA-256 and row count."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.csv.gz"
    digest = hashlib.sha256()
    with connection.cursor() as django_cursor:
        django_cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608
        rows = django_cursor.fetchone()[0]
        cursor = django_cursor.cursor  # psycopg's own cursor: COPY streams
        with (
            gzip.open(path, "wb") as out,
            cursor.copy(f"COPY {name} TO STDOUT WITH (FORMAT csv, HEADER true)") as copy,
        ):
            for chunk in copy:
                out.write(bytes(chunk))
    with path.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
    return path, digest.hexdigest(), rows


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
