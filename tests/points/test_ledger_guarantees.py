"""The ledger's guarantees enforced by the database itself, reconciliation, and the service
behaviour of ingestion (replays, conflicts, local days, leave and join)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from points.models import Community, DailyTally, Event, LedgerEntry, Member
from points.services import EventInput, community_create, events_ingest, ledger_reconcile

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def _post(community: Community, *events: EventInput) -> list[dict]:
    return [
        o.result or {"status": o.status} for o in events_ingest(community=community, events=events)
    ]


def test_the_database_refuses_updates_and_deletes_of_ledger_entries(community: Community) -> None:
    _post(community, EventInput(client_id="a", type="share", member="ann"))
    entry = LedgerEntry.objects.get()
    for sql in (
        "UPDATE points_ledgerentry SET points = 99 WHERE id = %s",
        "DELETE FROM points_ledgerentry WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql, [entry.pk])
    entry.refresh_from_db()
    assert entry.points == 5


def test_the_database_refuses_a_negative_balance_and_held_above_balance(
    community: Community,
) -> None:
    _post(community, EventInput(client_id="a", type="share", member="ann"))
    for sql in (
        "UPDATE points_member SET balance = -1 WHERE external_id = 'ann'",
        "UPDATE points_member SET held = 6 WHERE external_id = 'ann'",
        "UPDATE points_member SET owed = -1 WHERE external_id = 'ann'",
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)


EVENT_COPY = """
INSERT INTO points_event (id, community_id, client_id, member_id, beneficiary_id, type,
    occurred_at, received_at, local_day, target, score, "group", meta, body_hash,
    rule_version, points, scoring, content_hash)
SELECT nextval('points_event_id_seq'), community_id, 'copy', {member}, {beneficiary}, type,
    occurred_at, received_at, local_day, target, score, "group", meta, body_hash,
    rule_version, points, scoring, content_hash
FROM points_event WHERE client_id = 'a' AND member_id = {member_of}
"""

ENTRY_COPY = """
INSERT INTO points_ledgerentry (kind, points, balance_after, rule, rule_version, reason,
    created_at, community_id, event_id, member_id, actor)
SELECT kind, points, balance_after, rule, rule_version, reason, created_at, community_id,
    {event}, {member}, actor
FROM points_ledgerentry WHERE member_id = {member_of} LIMIT 1
"""


def test_the_database_refuses_events_and_entries_naming_what_is_not_of_their_community(
    community: Community,
) -> None:
    """Decision 56: checked once per statement by triggers, not by foreign keys, and more
    strictly (the member, beneficiary and event key must be of the row's own community)."""
    other = community_create(slug="other", name="Other")
    _post(other, EventInput(client_id="z", type="share", member="zed"))
    stranger = Member.objects.get(community=other, external_id="zed")
    _post(community, EventInput(client_id="a", type="share", member="ann"))
    ann = Member.objects.get(community=community, external_id="ann")
    key = Event.objects.get(community=community, client_id="a").pk
    refused = [
        EVENT_COPY.format(member=stranger.pk, beneficiary="NULL", member_of=ann.pk),
        EVENT_COPY.format(member=0, beneficiary="NULL", member_of=ann.pk),
        EVENT_COPY.format(member=ann.pk, beneficiary=stranger.pk, member_of=ann.pk),
        EVENT_COPY.format(member=ann.pk, beneficiary=0, member_of=ann.pk),
        ENTRY_COPY.format(event=key, member=stranger.pk, member_of=ann.pk),
        ENTRY_COPY.format(event=key + 10_000, member=ann.pk, member_of=ann.pk),
        ENTRY_COPY.format(event=key, member=0, member_of=ann.pk),
        ENTRY_COPY.format(event=key, member=stranger.pk, member_of=stranger.pk),
    ]
    for sql in refused:
        with pytest.raises(IntegrityError, match="community"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)
    with transaction.atomic(), connection.cursor() as cursor:  # the same rows, well named
        cursor.execute(EVENT_COPY.format(member=ann.pk, beneficiary=ann.pk, member_of=ann.pk))
        cursor.execute(ENTRY_COPY.format(event=key, member=ann.pk, member_of=ann.pk))
    assert Event.objects.filter(client_id="copy").count() == 1
    assert LedgerEntry.objects.filter(community=community).count() == 2


def test_reconcile_finds_no_drift_then_the_drift_made_behind_its_back(
    community: Community,
) -> None:
    _post(
        community,
        EventInput(client_id="a", type="share", member="ann"),
        EventInput(client_id="b", type="share", member="bob"),
    )
    assert ledger_reconcile(community=community, period="p1") == {
        "members": 2,
        "mismatched": 0,
        "sum_mismatched": 0,
        "balance_after_mismatched": 0,
        "examples": [],
    }
    Member.objects.filter(external_id="bob").update(balance=50)

    drift = ledger_reconcile(community=community, period="p2")

    assert (drift["mismatched"], drift["examples"]) == (1, ["bob"])
    # a finished period is fenced: re-running it returns the recorded result
    assert ledger_reconcile(community=community, period="p1")["mismatched"] == 0


def test_replay_returns_the_first_result_and_another_body_conflicts(community: Community) -> None:
    first = events_ingest(
        community=community, events=[EventInput(client_id="x", type="help", member="ann")]
    )[0]
    again = events_ingest(
        community=community, events=[EventInput(client_id="x", type="help", member="ann")]
    )[0]
    other = events_ingest(
        community=community, events=[EventInput(client_id="x", type="help", member="bob")]
    )[0]

    assert (first.status, again.status, other.status) == ("accepted", "replayed", "conflict")
    assert again.result == first.result
    assert other.errors[0].field == "id"
    assert LedgerEntry.objects.count() == 1


@pytest.mark.parametrize(
    ("first", "second", "second_points"),
    [
        # 23:59 and 00:01 in Shanghai are two local days: both check-ins score
        ("2026-11-23T23:59:00+08:00", "2026-11-24T00:01:00+08:00", 5),
        # 23:59 UTC and 00:01 UTC are the same Shanghai day (07:59, 08:01): the second is 0
        ("2026-11-23T23:59:00+00:00", "2026-11-24T00:01:00+00:00", 0),
    ],
)
def test_the_community_time_zone_decides_the_day(
    community: Community, first: str, second: str, second_points: int
) -> None:
    results = _post(
        community,
        EventInput("c1", "check_in", "ann", occurred_at=dt.datetime.fromisoformat(first)),
        EventInput("c2", "check_in", "ann", occurred_at=dt.datetime.fromisoformat(second)),
    )
    assert [r["points"] for r in results] == [5, second_points]


def test_a_late_event_counts_on_the_local_day_it_occurred(community: Community) -> None:
    when = dt.datetime(2026, 10, 31, 23, 30, tzinfo=SHANGHAI)
    _post(community, EventInput("late", "share", "ann", occurred_at=when))
    event = Event.objects.get(client_id="late")
    assert event.local_day == dt.date(2026, 10, 31)
    assert DailyTally.objects.get(day=dt.date(2026, 10, 31), event_type="share").points == 5


def test_a_member_who_left_earns_nothing_until_they_join_again(community: Community) -> None:
    results = _post(
        community,
        EventInput("1", "share", "ann"),
        EventInput("2", "leave", "ann"),
        EventInput("3", "share", "ann"),
        EventInput("4", "join", "ann"),
        EventInput("5", "help", "ann"),
    )
    assert [r["points"] for r in results] == [5, 0, 0, 0, 5]
    assert results[2]["awards"][0]["cap"] == "member_left"
    assert Member.objects.get(external_id="ann").status == "active"


def test_items_of_a_batch_are_independent(community: Community) -> None:
    outcomes = events_ingest(
        community=community,
        events=[
            EventInput("ok", "share", "ann"),
            EventInput("bad", "no_such_type", "ann"),
            EventInput("ok", "share", "ann"),  # a copy inside the batch: a replay
            EventInput("ok", "help", "ann"),  # same id, other body: a conflict
        ],
    )
    assert [o.status for o in outcomes] == ["accepted", "invalid", "replayed", "conflict"]
    assert outcomes[1].errors[0].field == "type"
    assert Member.objects.get(external_id="ann").balance == 5
