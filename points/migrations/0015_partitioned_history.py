"""Monthly partitions for the two tables that grow with every event (issue 14, decision 49).

``points_event`` is partitioned by ``occurred_at`` and ``points_ledgerentry`` by
``created_at``, one partition per UTC month. A unique key of a partitioned table must contain
the partition key, so:

- exactly-once moves to ``points_eventkey`` (unpartitioned, ``UNIQUE (community_id,
  client_id)``), filled here from the existing events and from then on by ingestion, in the
  same statement as the event, and by a statement trigger on ``points_event`` for any other
  writer (``ON CONFLICT (id) DO NOTHING``: a second event with a used client id still fails);
- the primary keys become ``(id, occurred_at)`` and ``(id, created_at)``; ids still come from
  one sequence per table, so ``id`` alone stays unique;
- ledger entries and once-only keys reference ``points_eventkey (id)``: a foreign key into a
  partitioned table would need the partition key too, and the key table outlives archived
  months.

The tables are converted by copy (rename, create the partitioned table with the same columns,
constraints and index names, copy, drop the old one): simple and exact for this deployment's
size. A very large existing table would instead be attached whole as one partition for its
past; docs/scaling.md says how.
"""

from __future__ import annotations

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models

# How far back partitions are made at first; ``points.history.partitions_ensure`` keeps the
# same span (``HISTORY_ONLINE_MONTHS``) afterwards and the months ahead.
ONLINE_MONTHS = 24
MONTHS_AHEAD = 3

KEY_TRIGGER = """
CREATE FUNCTION points_event_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Ingestion has written these keys in the same statement; any other writer has not.
    -- A used (community_id, client_id) under another id fails here: exactly-once holds for
    -- every writer, not only for ingestion.
    INSERT INTO points_eventkey (id, community_id, client_id, occurred_at)
    SELECT id, community_id, client_id, occurred_at FROM inserted_events
    ON CONFLICT (id) DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER points_event_keys AFTER INSERT ON points_event
    REFERENCING NEW TABLE AS inserted_events
    FOR EACH STATEMENT EXECUTE FUNCTION points_event_keys();
"""

LEDGER_APPEND_ONLY = """
CREATE TRIGGER points_ledgerentry_append_only
    BEFORE UPDATE OR DELETE ON points_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION points_ledger_append_only();
"""


def _month(day: dt.date, add: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 + add
    return dt.date(index // 12, index % 12 + 1, 1)


def _partition(cursor, table: str, key: str, skip_indexes: set[str]) -> None:
    """Replace ``table`` by a table partitioned by month of ``key`` holding the same rows."""
    old = f"{table}_unpartitioned"
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = %s",
        [table],
    )
    indexes = [(n, d) for n, d in cursor.fetchall() if n != f"{table}_pkey"]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' AND confrelid <> 'points_event'::regclass",
        [table],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    for name, _ in [(f"{table}_pkey", ""), *indexes]:
        cursor.execute(f"ALTER INDEX {name} RENAME TO {name[:50]}_old")
    cursor.execute(f"ALTER TABLE {old} ALTER COLUMN id DROP IDENTITY IF EXISTS")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f"INCLUDING STORAGE) PARTITION BY RANGE ({key})"
    )
    cursor.execute(f"CREATE SEQUENCE {table}_id_seq OWNED BY {table}.id")
    cursor.execute(f"SELECT setval('{table}_id_seq', COALESCE(max(id), 0) + 1, false) FROM {old}")
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, {key})")
    for name, definition in indexes:
        if name in skip_indexes:
            continue
        cursor.execute(definition)  # read before the rename: it names the new table
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")

    today = dt.datetime.now(dt.UTC).date()
    cursor.execute(f"SELECT min({key}), max({key}) FROM {old}")
    first, last = cursor.fetchone()
    month = _month(today, -ONLINE_MONTHS)
    if first is not None:
        month = min(month, _month(first.astimezone(dt.UTC).date()))
    stop = _month(today, MONTHS_AHEAD + 1)
    if last is not None:
        stop = max(stop, _month(last.astimezone(dt.UTC).date(), 1))
    while month < stop:
        after = _month(month, 1)
        cursor.execute(
            f"CREATE TABLE {table}_p{month:%Y_%m} PARTITION OF {table} "
            f"FOR VALUES FROM ('{month.isoformat()} 00:00+00') TO ('{after.isoformat()} 00:00+00')"
        )
        month = after
    cursor.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    cursor.execute(f"DROP TABLE {old}")


def forward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        # Check foreign keys as each copy runs: a table with deferred checks still pending
        # cannot be altered later in the same transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "INSERT INTO points_eventkey (id, community_id, client_id, occurred_at) "
            "SELECT id, community_id, client_id, occurred_at FROM points_event"
        )
        cursor.execute(
            "SELECT conrelid::regclass::text, conname FROM pg_constraint "
            "WHERE confrelid = 'points_event'::regclass AND contype = 'f'"
        )
        for table, name in cursor.fetchall():
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        cursor.execute("DROP TRIGGER IF EXISTS points_ledgerentry_append_only ON points_ledgerentry")
        _partition(cursor, "points_event", "occurred_at", {"event_unique_client_id"})
        _partition(cursor, "points_ledgerentry", "created_at", set())
        for table in ("points_ledgerentry", "points_awardonce"):
            cursor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {table}_event_id_fk_points_eventkey "
                "FOREIGN KEY (event_id) REFERENCES points_eventkey (id) "
                "DEFERRABLE INITIALLY DEFERRED"
            )
        cursor.execute(KEY_TRIGGER)
        cursor.execute(LEDGER_APPEND_ONLY)
        # Statistics for what was copied. Not for empty tables: "analyzed and empty" makes the
        # planner trust a size of 0 and plan the foreign-key checks on the keys as sequential
        # scans, cached for the session, until the next ANALYZE (never, where autovacuum is
        # off); a never-analyzed table is sized from its pages instead.
        cursor.execute("SELECT EXISTS (SELECT 1 FROM points_eventkey)")
        if cursor.fetchone()[0]:
            cursor.execute("ANALYZE points_event, points_ledgerentry, points_eventkey")


class Migration(migrations.Migration):
    # DDL across several tables and a copy: one transaction, all or nothing.
    atomic = True

    dependencies = [("points", "0014_all_time_total_is_lifetime_points")]

    operations = [
        migrations.CreateModel(
            name="EventKey",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("client_id", models.CharField(max_length=128)),
                ("occurred_at", models.DateTimeField()),
                (
                    "community",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="points.community",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("community", "client_id"), name="eventkey_unique_client_id"
                    )
                ]
            },
        ),
        migrations.CreateModel(
            name="HistoryArchive",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("table", models.CharField(max_length=64)),
                ("month", models.DateField()),
                (
                    "state",
                    models.CharField(
                        choices=[("detached", "Detached"), ("archived", "Archived")],
                        max_length=16,
                    ),
                ),
                ("rows", models.BigIntegerField(default=0)),
                ("path", models.CharField(blank=True, max_length=500)),
                ("sha256", models.CharField(blank=True, max_length=64)),
                ("detached_at", models.DateTimeField()),
                ("archived_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("table", "month"), name="historyarchive_unique_month"
                    )
                ]
            },
        ),
        migrations.CreateModel(
            name="LedgerCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("through", models.DateField()),
                ("net", models.BigIntegerField(default=0)),
                ("credits", models.BigIntegerField(default=0)),
                ("debits", models.BigIntegerField(default=0)),
                ("balance_after", models.BigIntegerField(default=0)),
                (
                    "community",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="points.community",
                    ),
                ),
                (
                    "member",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="points.member",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("community", "member"), name="ledgercheckpoint_unique_member"
                    )
                ]
            },
        ),
        # What Django believes after the conversion below (the database side is in forward).
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="event", name="event_unique_client_id"),
                migrations.AlterField(
                    model_name="awardonce",
                    name="event",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="points.event",
                    ),
                ),
                migrations.AlterField(
                    model_name="ledgerentry",
                    name="event",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="points.event",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forward, migrations.RunPython.noop)],
        ),
    ]
