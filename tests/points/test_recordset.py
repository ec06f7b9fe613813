"""Ingestion's rows travel to PostgreSQL as one JSON array (``statements._recordset``),
written by orjson; what orjson refuses takes the standard encoder. Its key arrays travel as
array literals (``statements._array``)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from points.ingest.records import EventInput
from points.ingest.statements import _array, _recordset
from points.models import Community, Event
from points.services import events_ingest

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def test_dates_times_and_nested_values_read_back_as_sent() -> None:
    at = dt.datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=SHANGHAI)
    rows = [(1, at, at.date(), {"a": [1, "二", None, 2.5]}, None, True)]
    [record] = json.loads(_recordset(("id", "at", "day", "meta", "none", "yes"), rows))
    assert dt.datetime.fromisoformat(record["at"]) == at
    assert record["day"] == "2026-12-03"
    assert record["meta"] == {"a": [1, "二", None, 2.5]}
    assert (record["none"], record["yes"]) == (None, True)


def test_an_integer_beyond_64_bits_takes_the_standard_encoder() -> None:
    [record] = json.loads(_recordset(("meta",), [({"n": 2**70},)]))
    assert record["meta"] == {"n": 2**70}


@pytest.mark.django_db
def test_an_event_whose_meta_holds_a_huge_integer_is_stored(community: Community) -> None:
    [outcome] = events_ingest(
        community=community,
        events=[EventInput("huge", "message", "m1", meta={"n": 2**70, "名": "值"})],
    )
    assert outcome.status == "accepted"
    assert Event.objects.get(client_id="huge").meta == {"n": 2**70, "名": "值"}


ARRAYS: dict[str, st.SearchStrategy[list[Any]]] = {
    "text": st.lists(
        st.one_of(
            st.none(),
            st.text(alphabet='ab"\\,{} NUL\t'),
            # No U+0000 and no lone surrogates: neither reaches a statement (api.parsers refuses
            # both) and neither can be sent as UTF-8 text at all.
            st.text(st.characters(exclude_characters="\x00", codec="utf-8")),
        )
    ),
    "bigint": st.lists(st.integers(-(2**63), 2**63 - 1)),
    "boolean": st.lists(st.one_of(st.none(), st.booleans())),
    "date": st.lists(st.dates()),
    "timestamptz": st.lists(
        st.datetimes(
            min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
            max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
            timezones=st.sampled_from([dt.UTC, SHANGHAI, dt.timezone(-dt.timedelta(hours=3.5))]),
        )
    ),
}


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_array_literal_reads_back_as_psycopg_would_send_the_list(data: st.DataObject) -> None:
    """``statements._array`` writes lists as literals; PostgreSQL must read each one as the
    array psycopg's own adaptation of the list gives: quotes, backslashes, commas, braces,
    ``NULL`` as text and as a value, empty strings, offsets."""
    kind = data.draw(st.sampled_from(sorted(ARRAYS)))
    items = data.draw(ARRAYS[kind])
    literal = _array(items)
    assert isinstance(literal, str)
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:  # type: ignore[union-attr]
        ours = cursor.execute(f"SELECT %s::{kind}[]", [literal]).fetchone()
        theirs = cursor.execute(f"SELECT %s::{kind}[]", [items]).fetchone()
    assert ours == theirs == (items,)


def test_a_list_of_anything_else_is_left_to_psycopg() -> None:
    items = [1.5, 2.5]
    assert _array(items) is items
