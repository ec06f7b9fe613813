"""Ingestion's rows travel to PostgreSQL as one JSON array (``statements._recordset``),
written by orjson; what orjson refuses takes the standard encoder."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from points.ingest.records import EventInput
from points.ingest.statements import _recordset
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
