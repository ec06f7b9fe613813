"""``EventInputSerializer.plain_validation``, the shortcut for events in the plain shape, against
``run_validation`` (DRF, which decides everything else and words every error): on any input,
the shortcut either declines (None) or answers exactly what ``run_validation`` answers, and it
takes the shape the bots and the benchmarks send."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from api.serializers import PLAIN_EVENT_FIELDS, ContentInputSerializer, EventInputSerializer

ODD = st.text(alphabet="ab _\t\n\x00\ud800\udfff\u200b\u3164/.", max_size=6)
TEXT = st.one_of(
    st.sampled_from(["a", "share", "wxid_alice", "张三", " pad", "pad ", "", ".", "..", "a/b"]),
    st.text(max_size=12),
    ODD,
    st.text(min_size=126, max_size=130, alphabet="x"),
    st.text(min_size=38, max_size=42, alphabet="a"),
)
ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 7), st.floats(allow_nan=False), TEXT
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """Valid values most of the time, so that whole events take the shortcut often."""
    return st.one_of(valid, valid, valid, other)


IDS = mostly(st.sampled_from(["e-1", "wx-msg-20261123-0001", "事件-1"]), TEXT)
TYPES = mostly(st.sampled_from(["check_in", "share", "peer_score", "custom_type"]), TEXT)
MEMBERS = mostly(st.sampled_from(["wxid_alice", "张三", "m0001"]), TEXT)
TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-11-23T08:01:00+08:00",
            "2026-11-23T00:01:00Z",
            "2026-11-23T08:01:00.123456+08:00",
            "2026-11-23T08:01:00",  # naive: refused
            "2026-11-23",
            "20261123T080100Z",
            "2026-11-23 08:01+08:00",
            "not a time",
            "",
        ]
    ),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()),
    ANY_SCALAR,
)
CONTENT = st.one_of(
    ANY_SCALAR,
    st.dictionaries(
        st.sampled_from(["id", "author", "kind", "url", "hash", "length", "other"]),
        st.one_of(ANY_SCALAR, st.sampled_from(["kol", "official", "ugc", "KOL", "post-9", "张三"])),
        max_size=7,
    ),
)
META = st.one_of(
    ANY_SCALAR,
    st.dictionaries(
        st.text(max_size=5), st.one_of(ANY_SCALAR, st.lists(st.integers())), max_size=4
    ),
    st.just({"blob": "x" * 5000}),
)
VALID_CONTENT = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["post-9", "帖子-1"]),
        "author": MEMBERS,
        "kind": st.sampled_from(["kol", "official", "ugc"]),
        "url": st.just("https://example.com/a"),
        "hash": st.just("ab12"),
        "length": st.integers(-1, 3),
    },
)
OPTIONAL: dict[str, Any] = {
    "occurred_at": mostly(
        st.sampled_from(["2026-11-23T08:01:00+08:00", "2026-11-23T00:01Z"]), TIMES
    ),
    "target": mostly(st.sampled_from(["carol", "post-1"]), TEXT),
    "content": mostly(VALID_CONTENT, CONTENT),
    "score": mostly(st.integers(-1, 7), st.one_of(ANY_SCALAR, st.sampled_from(["3", 3.0]))),
    "group": mostly(st.sampled_from(["group-42"]), TEXT),
    "meta": mostly(st.dictionaries(st.sampled_from(["display_name", "x"]), TEXT, max_size=2), META),
    "extra": ANY_SCALAR,
}
EVENTS = st.one_of(
    st.fixed_dictionaries({"id": IDS, "type": TYPES, "member": MEMBERS}, optional=OPTIONAL),
    st.fixed_dictionaries({"id": IDS, "type": TYPES, "member": MEMBERS}, optional=OPTIONAL),
    st.dictionaries(st.sampled_from(["id", "type", "member", *OPTIONAL]), ANY_SCALAR, max_size=5),
    ANY_SCALAR,
    st.lists(ANY_SCALAR, max_size=2),
)


# The same examples on every run, so that CI answers for the change (as the differential test);
# DIFF_RANDOM=1 (`make fuzz`) explores new ones.
SETTINGS: dict[str, Any] = {
    "max_examples": 2000,
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "derandomize": os.environ.get("DIFF_RANDOM") != "1",
}


def _drf(validator: EventInputSerializer, data: Any) -> Any:
    try:
        return dict(validator.run_validation(data))
    except ValidationError:
        return "refused"


def _check(event: Any) -> bool:
    """The shortcut's answer equals DRF's, or it declines; whether it answered."""
    validator = EventInputSerializer()
    plain = validator.plain_validation(event)
    if plain is None:
        return False
    expected = _drf(validator, event)
    assert expected != "refused", f"the shortcut accepted what DRF refuses: {event!r}"
    if "content" in expected:
        expected["content"] = dict(expected["content"])
        assert list(plain["content"]) == list(expected["content"])  # the declared order
    assert plain == expected
    assert [type(v) for v in plain.values()] == [type(v) for v in expected.values()]
    return True


@settings(**SETTINGS)
@given(event=EVENTS)
def test_the_shortcut_answers_as_drf_or_declines(event: Any) -> None:
    _check(event)


BASE = {"id": "e-1", "type": "share", "member": "wxid_alice"}
BASE_CONTENT = {"id": "post-9", "kind": "ugc"}
ONE_FIELD = {
    "id": TEXT,
    "type": TEXT,
    "member": TEXT,
    "occurred_at": TIMES,
    "target": TEXT,
    "score": st.one_of(st.integers(-1, 7), ANY_SCALAR, st.sampled_from(["3", 3.0])),
    "group": TEXT,
    "meta": META,
}
ONE_CONTENT_FIELD = {
    "id": TEXT,
    "author": TEXT,
    "kind": st.one_of(ANY_SCALAR, st.sampled_from(["kol", "official", "ugc", "KOL"])),
    "url": st.one_of(TEXT, st.text(min_size=998, max_size=1002, alphabet="u")),
    "hash": TEXT,
    "length": st.one_of(st.integers(-2, 3), ANY_SCALAR),
    "other": ANY_SCALAR,
}


@settings(**SETTINGS)
@given(data=st.data())
def test_one_field_at_a_time_of_a_plain_event(data: st.DataObject) -> None:
    """A plain event with one field (or one content field) drawn from odd values: every
    value the shortcut takes, DRF takes the same way."""
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(ONE_FIELD)))
        event = {**BASE, name: data.draw(ONE_FIELD[name])}
    else:
        name = data.draw(st.sampled_from(sorted(ONE_CONTENT_FIELD)))
        event = {**BASE, "content": {**BASE_CONTENT, name: data.draw(ONE_CONTENT_FIELD[name])}}
    _check(event)


@pytest.mark.parametrize(
    "event",
    [
        {"id": "e-1", "type": "check_in", "member": "wxid_alice"},
        {
            "id": "wx-msg-20261123-0001",
            "type": "check_in",
            "member": "wxid_alice",
            "occurred_at": "2026-11-23T08:01:00+08:00",
            "group": "group-42",
            "meta": {"display_name": "Alice"},
        },
        {
            "id": "e-2",
            "type": "share",
            "member": "张三",
            "content": {"id": "post-9", "url": "https://example.com/a", "kind": "ugc", "length": 5},
        },
        {"id": "e-3", "type": "peer_score", "member": "bob", "target": "carol", "score": 5},
    ],
)
def test_the_shape_bots_send_takes_the_shortcut(event: dict[str, Any]) -> None:
    assert _check(event), "the shortcut declined it"


@pytest.mark.parametrize(
    "event",
    [
        {"id": " e-1", "type": "check_in", "member": "m"},  # DRF trims it: DRF answers
        {"id": "e-1", "type": "check_in", "member": "m", "score": "3"},  # text for a number
        {"id": "e-1", "type": "check_in", "member": "m", "occurred_at": "2026-11-23T08:01"},
        {"id": "e-1", "type": "check_in", "member": "m", "meta": None},
        {"id": "e-1", "type": "check_in"},
        {"id": "e-1", "type": "check_in", "member": "m", "content": {"id": "c", "extra": 1}},
        {"id": "e-1", "type": "check_in", "member": "m", "extra": 1},  # a key it does not know
    ],
)
def test_anything_else_goes_to_drf(event: dict[str, Any]) -> None:
    assert EventInputSerializer().plain_validation(event) is None


def test_the_shortcut_knows_every_field_of_the_serializer() -> None:
    """A field added to the serializer and not to the shortcut would be dropped from plain
    events: the shortcut handles exactly the declared fields (and declines any other key)."""
    assert set(EventInputSerializer().fields) == PLAIN_EVENT_FIELDS
    assert tuple(ContentInputSerializer().fields) == ContentInputSerializer.FIELDS_ORDER
