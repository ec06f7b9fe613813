"""Keyed by community (docs/scaling.md, "Keyed by community"): every unique key of a table that
carries ``community_id`` leads with it, so that the schema can be distributed by community
(Citus wants the distribution column in every unique constraint and unique index).

Read from the migrated test database (``pg_index``), not from the models: what counts is what
the migrations built, including keys written as SQL. Unique constraints are backed by unique
indexes, so one look at ``pg_index`` covers both. To cover more apps, add them to ``APPS``.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

APPS = ("points", "incentives", "rewards", "webhooks")

# Reference tables on Citus (copied to every node, docs/scaling.md): looked up before the
# community is known, so their unique keys may not lead with it.
REFERENCE_TABLES = ("points_communityapikey",)

# Tables that must carry a NOT NULL community_id (the ones that had to gain it).
MUST_CARRY_COMMUNITY = ("webhooks_delivery",)


def _tables(app_label: str) -> list[str]:
    """The app's tables as Django knows them (its models, with auto-created ones)."""
    config = apps.get_app_config(app_label)
    return sorted({m._meta.db_table for m in config.get_models(include_auto_created=True)})


def _community_tables(tables: list[str]) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid
            WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
              AND a.attname = 'community_id' AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY c.relname
            """,
            [tables],
        )
        return [name for (name,) in cursor.fetchall()]


def _unique_keys(tables: list[str]) -> list[tuple[str, str, str, str]]:
    """(table, index, first key column or expression, definition) of every unique index other
    than the primary key (unique constraints included: each is backed by one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid, 1, true),
                   pg_get_indexdef(x.indexrelid)
            FROM pg_index x
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE n.nspname = current_schema() AND t.relname = ANY(%s)
              AND x.indisunique AND NOT x.indisprimary
            ORDER BY t.relname, i.relname
            """,
            [tables],
        )
        return [(t, i, first, definition) for t, i, first, definition in cursor.fetchall()]


@pytest.mark.parametrize("app_label", APPS)
def test_unique_keys_lead_with_community(db: None, app_label: str) -> None:
    tables = [t for t in _community_tables(_tables(app_label)) if t not in REFERENCE_TABLES]
    assert tables, f"no table of {app_label} has a community_id column: is the app migrated?"
    keys = _unique_keys(tables)
    offenders = [
        f"{table}.{index}: {definition}"
        for table, index, first, definition in keys
        if first != "community_id"
    ]
    assert not offenders, "unique keys that do not lead with community_id:\n" + "\n".join(offenders)


def test_the_check_sees_unique_keys(db: None) -> None:
    """The query above finds unique keys at all (else the test would pass on nothing)."""
    keys = _unique_keys(_community_tables([t for app in APPS for t in _tables(app)]))
    assert {
        "delivery_unique",
        "tierchange_once_per_run",
        "variant_unique_code",
        "tally_unique_member_day_type",
        "eventkey_unique_client_id",
    } <= {index for _, index, _, _ in keys}


@pytest.mark.parametrize("table", MUST_CARRY_COMMUNITY)
def test_community_id_is_not_null(db: None, table: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.attnotnull
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relname = %s
              AND a.attname = 'community_id' AND NOT a.attisdropped
            """,
            [table],
        )
        found = cursor.fetchone()
    assert found is not None, f"{table} has no community_id column"
    assert found[0], f"{table}.community_id is nullable"
