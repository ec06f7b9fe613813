"""Ranking rules at the service and selector level: competition ranks with a stable display
order, left members, local month and week boundaries, past months, percentile and neighbours,
live points beside a snapshot that is rebuilt at most a minute behind."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from pytest_django import DjangoAssertNumQueries

from points import services
from points.exceptions import InvalidPeriod, MemberNotFound
from points.models import Community, Member, PeriodKind, PeriodTotal, RankBuild
from points.selectors import (
    Period,
    leaderboard_page,
    member_rank,
    member_rank_lookup,
    period_resolve,
    snapshot_info,
)
from points.services import (
    EventInput,
    community_create,
    events_ingest,
    rank_snapshot_build,
    rank_snapshot_ensure,
    rank_snapshots_refresh,
)

pytestmark = pytest.mark.django_db

_ids = itertools.count()
SH = dt.timezone(dt.timedelta(hours=8))
ALL_TIME = Period(PeriodKind.ALL_TIME.value, PeriodTotal.ALL_TIME_START)


def _post(
    community: Community,
    member: str,
    count: int,
    kind: str = "message",
    occurred_at: dt.datetime | None = None,
) -> None:
    """``count`` scoring events (message = 1 point, share = 5) for ``member``."""
    events = [
        EventInput(f"e{next(_ids)}", kind, member, occurred_at=occurred_at) for _ in range(count)
    ]
    outcomes = events_ingest(community=community, events=events)
    assert [o.status for o in outcomes] == ["accepted"] * count


def _build(community: Community, period: Period = ALL_TIME) -> None:
    rank_snapshot_build(community=community, kind=period.kind, start=period.start, force=True)


def _board(community: Community, period: Period = ALL_TIME) -> list[tuple[str, int, int]]:
    return [(r.member, r.rank, r.points) for r in leaderboard_page(community, period, 0, 100)]


def _member(community: Community, external_id: str) -> Member:
    return Member.objects.get(community=community, external_id=external_id)


# --- competition ranking ------------------------------------------------------------------------


def test_ties_share_a_rank_and_the_next_rank_skips(community: Community) -> None:
    for member, count in [("dave", 1), ("carol", 3), ("bob", 3), ("alice", 4)]:
        _post(community, member, count)
    _build(community)

    assert _board(community) == [("alice", 1, 4), ("carol", 2, 3), ("bob", 2, 3), ("dave", 4, 1)]


def test_tied_members_keep_their_display_order_across_rebuilds(community: Community) -> None:
    for member in ["zoe", "amy", "kim", "bo"]:
        _post(community, member, 2)
    _build(community)
    first = leaderboard_page(community, ALL_TIME, 0, 10)
    _build(community)
    again = leaderboard_page(community, ALL_TIME, 0, 10)

    assert [r.rank for r in first] == [1, 1, 1, 1]
    # ties are shown by who joined first (member id), not by name or chance
    assert [r.member for r in first] == [r.member for r in again] == ["zoe", "amy", "kim", "bo"]
    assert [r.position for r in first] == [1, 2, 3, 4]


def test_the_board_pages_by_position_without_gaps_or_repeats(community: Community) -> None:
    for i in range(7):
        _post(community, f"m{i}", 1 + i % 3)
    _build(community)

    seen: list[str] = []
    after = 0
    while page := leaderboard_page(community, ALL_TIME, after, 3):
        seen += [r.member for r in page]
        after = page[-1].position
    assert sorted(seen) == [f"m{i}" for i in range(7)]
    assert len(seen) == len(set(seen))


def test_members_without_points_in_a_period_are_not_ranked(community: Community) -> None:
    _post(community, "talker", 2)
    events_ingest(community=community, events=[EventInput("j1", "join", "newcomer")])
    _build(community)

    assert _board(community) == [("talker", 1, 2)]
    newcomer = member_rank(community, _member(community, "newcomer"), ALL_TIME)
    assert (newcomer.rank, newcomer.percentile, newcomer.total) == (None, None, 1)


# --- members who left -------------------------------------------------------------------------


def test_a_member_who_left_is_not_ranked_and_ranks_again_after_rejoining(
    community: Community,
) -> None:
    _post(community, "ann", 3)
    _post(community, "bob", 1)
    events_ingest(community=community, events=[EventInput("ann-leaves", "leave", "ann")])
    _build(community)

    assert _board(community) == [("bob", 1, 1)]
    gone = member_rank(community, _member(community, "ann"), ALL_TIME)
    assert (gone.rank, gone.points, gone.total) == (None, 3, 1)  # points kept, not ranked

    events_ingest(community=community, events=[EventInput("ann-back", "join", "ann")])
    _build(community)
    assert _board(community) == [("ann", 1, 3), ("bob", 2, 1)]


def test_leaving_takes_the_member_off_every_period_board(community: Community) -> None:
    _post(community, "ann", 2)
    events_ingest(community=community, events=[EventInput("bye", "leave", "ann")])

    rows = PeriodTotal.objects.filter(member__external_id="ann").values_list("kind", "active")
    assert sorted(rows) == [("month", False), ("week", False)]  # all time: the member's status
    _build(community)
    assert _board(community) == []


# --- periods in the community's time zone -------------------------------------------------------


def test_month_boundary_is_midnight_in_asia_shanghai(community: Community) -> None:
    _post(community, "late", 2, occurred_at=dt.datetime(2026, 10, 31, 23, 59, tzinfo=SH))
    _post(community, "early", 3, occurred_at=dt.datetime(2026, 11, 1, 0, 1, tzinfo=SH))

    october = period_resolve(community, "month", "2026-10")
    november = period_resolve(community, "month", "2026-11")
    for period in (october, november):
        _build(community, period)
    assert _board(community, october) == [("late", 1, 2)]
    assert _board(community, november) == [("early", 1, 3)]


def test_the_same_instants_fall_in_one_utc_month_for_a_utc_community(db: None) -> None:
    utc = community_create(slug="utc", name="UTC", timezone_name="UTC")
    # 15:59 and 16:01 UTC on 31 October: both October in UTC
    _post(utc, "late", 2, occurred_at=dt.datetime(2026, 10, 31, 23, 59, tzinfo=SH))
    _post(utc, "early", 3, occurred_at=dt.datetime(2026, 11, 1, 0, 1, tzinfo=SH))

    october = period_resolve(utc, "month", "2026-10")
    _build(utc, october)
    assert _board(utc, october) == [("early", 1, 3), ("late", 2, 2)]


def test_weeks_start_on_monday_in_the_community_time_zone(community: Community) -> None:
    sunday_night = dt.datetime(2026, 11, 1, 23, 59, tzinfo=SH)  # a Sunday
    monday_morning = dt.datetime(2026, 11, 2, 0, 1, tzinfo=SH)
    _post(community, "sun", 1, occurred_at=sunday_night)
    _post(community, "mon", 1, occurred_at=monday_morning)

    weeks = dict(
        PeriodTotal.objects.filter(kind="week").values_list("member__external_id", "start")
    )
    assert weeks == {"sun": dt.date(2026, 10, 26), "mon": dt.date(2026, 11, 2)}
    assert period_resolve(community, "week", now=monday_morning).start == dt.date(2026, 11, 2)
    assert period_resolve(community, "week", now=sunday_night).start == dt.date(2026, 10, 26)


def test_this_month_turns_at_local_midnight(community: Community) -> None:
    before = dt.datetime(2026, 10, 31, 15, 59, tzinfo=dt.UTC)  # 23:59 in Shanghai
    after = dt.datetime(2026, 10, 31, 16, 1, tzinfo=dt.UTC)  # 00:01 on 1 November there

    assert period_resolve(community, "month", now=before).label == "2026-10"
    assert period_resolve(community, "month", now=after).label == "2026-11"
    assert period_resolve(community, "all_time", now=after).start == dt.date(2000, 1, 1)


def test_past_months_keep_their_own_totals(community: Community, eager_celery: None) -> None:
    _post(community, "sep", 1, kind="share", occurred_at=dt.datetime(2026, 9, 15, 12, tzinfo=SH))
    _post(community, "oct", 2, kind="share", occurred_at=dt.datetime(2026, 10, 15, 12, tzinfo=SH))

    september = period_resolve(community, "month", "2026-09")
    assert rank_snapshot_ensure(community=community, kind="month", start=september.start)
    assert _board(community, september) == [("sep", 1, 5)]
    assert snapshot_info(community, september).total == 1


@pytest.mark.parametrize(
    ("kind", "month", "field"),
    [("year", None, "period"), ("month", "2026-13", "month"), ("month", "Oct 2026", "month")],
)
def test_an_invalid_period_names_the_field(
    community: Community, kind: str, month: str | None, field: str
) -> None:
    with pytest.raises(InvalidPeriod) as caught:
        period_resolve(community, kind, month)
    assert [e.field for e in caught.value.errors] == [field]


# --- a member's rank ---------------------------------------------------------------------------


def test_percentile_and_three_neighbours_each_side(community: Community) -> None:
    for i, count in enumerate([9, 8, 7, 6, 5, 4, 3, 2]):
        _post(community, f"m{i}", count)
    _build(community)

    def rank(name: str) -> tuple[int | None, float | None, list[str], list[str]]:
        r = member_rank(community, _member(community, name), ALL_TIME)
        return r.rank, r.percentile, [a.member for a in r.above], [b.member for b in r.below]

    assert rank("m0") == (1, 100.0, [], ["m1", "m2", "m3"])
    assert rank("m4") == (5, 50.0, ["m1", "m2", "m3"], ["m5", "m6", "m7"])
    assert rank("m6") == (7, 25.0, ["m3", "m4", "m5"], ["m7"])
    assert rank("m7") == (8, 12.5, ["m4", "m5", "m6"], [])


def test_neighbours_of_a_tied_member_follow_the_display_order(community: Community) -> None:
    for member, count in [("a", 3), ("b", 2), ("c", 2), ("d", 2), ("e", 1)]:
        _post(community, member, count)
    _build(community)

    c = member_rank(community, _member(community, "c"), ALL_TIME, neighbours=1)
    assert c.rank == 2
    assert [(r.member, r.rank) for r in c.above] == [("b", 2)]
    assert [(r.member, r.rank) for r in c.below] == [("d", 2)]


def test_a_rank_lookup_is_one_query_whatever_the_position(
    community: Community, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    for i in range(30):
        _post(community, f"m{i:02}", 1 + i % 5)
    _build(community)

    for name in ("m04", "m29"):
        with django_assert_num_queries(1):
            assert member_rank_lookup(community, name, ALL_TIME) is not None


def test_an_unknown_member_has_no_rank(community: Community) -> None:
    assert member_rank_lookup(community, "nobody", ALL_TIME) is None
    with pytest.raises(MemberNotFound):
        member_rank(community, Member(community=community, external_id="nobody"), ALL_TIME)


# --- the snapshot: at most a minute behind, live points beside it --------------------------------


def test_live_points_are_shown_beside_the_snapshot_rank(community: Community) -> None:
    _post(community, "ann", 3)
    _post(community, "bob", 2)
    _build(community)
    _post(community, "bob", 2, kind="share")  # +10, not in the snapshot yet

    bob = member_rank(community, _member(community, "bob"), ALL_TIME)
    assert (bob.rank, bob.ranked_points, bob.points) == (2, 2, 12)

    assert rank_snapshots_refresh(community=community) >= 1  # what the 30 s beat job runs
    bob = member_rank(community, _member(community, "bob"), ALL_TIME)
    assert (bob.rank, bob.ranked_points, bob.points) == (1, 12, 12)


def test_an_unchanged_period_is_not_rebuilt_but_marked_current(community: Community) -> None:
    _post(community, "ann", 1)
    _build(community)
    RankBuild.objects.update(built_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    assert not rank_snapshot_build(community=community, kind="all_time", start=ALL_TIME.start)
    built_at = snapshot_info(community, ALL_TIME).built_at
    assert built_at is not None
    assert dt.datetime.now(tz=dt.UTC) - built_at < dt.timedelta(seconds=5)

    _post(community, "ann", 1)
    assert rank_snapshot_build(community=community, kind="all_time", start=ALL_TIME.start)


@pytest.fixture
def eager_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run queued tasks in this process (unit level; the worker has its own tests)."""
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", True)
    monkeypatch.setattr(services, "_rebuild_queued_at", {})


def _age_snapshot(community: Community, seconds: float) -> None:
    RankBuild.objects.filter(community=community).update(
        built_at=dt.datetime.now(tz=dt.UTC) - dt.timedelta(seconds=seconds)
    )


@pytest.mark.parametrize(
    ("age", "board", "rebuilt"),
    [
        (61, [("bob", 1, 2), ("ann", 2, 1)], True),  # older than a minute: rebuilt
        (50, [("ann", 1, 1)], False),  # younger: served as it is (beat refreshes it)
    ],
)
def test_a_read_rebuilds_a_snapshot_only_once_it_is_older_than_a_minute(
    community: Community,
    eager_celery: None,
    age: int,
    board: list[tuple[str, int, int]],
    rebuilt: bool,
) -> None:
    _post(community, "ann", 1)
    _build(community)
    _post(community, "bob", 2)
    RankBuild.objects.filter(community=community).update(
        built_at=dt.datetime.now(tz=dt.UTC) - dt.timedelta(seconds=age)
    )

    # the read is served from the snapshot there; a stale one queues a rebuild (run at once
    # here: eager), a young one does not
    queued = rank_snapshot_ensure(community=community, kind="all_time", start=ALL_TIME.start)
    assert queued is rebuilt
    assert _board(community) == board
    built_at = snapshot_info(community, ALL_TIME).built_at
    assert built_at is not None
    fresh = dt.datetime.now(tz=dt.UTC) - built_at < dt.timedelta(seconds=5)
    assert fresh is rebuilt


def test_the_first_read_of_a_period_queues_its_snapshot_and_writes_nothing(
    community: Community,
) -> None:
    from points.models import RankSnapshot

    _post(community, "ann", 1)
    assert snapshot_info(community, ALL_TIME).built_at is None
    services._rebuild_queued_at.clear()

    # reads never write: the build is queued for a worker (the test's broker has none)
    assert rank_snapshot_ensure(community=community, kind="all_time", start=ALL_TIME.start)
    assert not RankBuild.objects.exists()
    assert not RankSnapshot.objects.exists()
    # queued once per process and period, not once per read
    assert not rank_snapshot_ensure(community=community, kind="all_time", start=ALL_TIME.start)
    # a future month has nothing to build
    assert not rank_snapshot_ensure(community=community, kind="month", start=dt.date(2099, 1, 1))


def test_the_queued_build_makes_the_first_snapshot(
    community: Community, eager_celery: None
) -> None:
    _post(community, "ann", 1)
    assert rank_snapshot_ensure(community=community, kind="all_time", start=ALL_TIME.start)
    assert _board(community) == [("ann", 1, 1)]


@pytest.mark.django_db(transaction=True)
def test_points_committed_queue_a_refresh_so_the_board_follows_within_seconds(
    community: Community, eager_celery: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_refresh_due", {})
    _post(community, "ann", 2)  # commits; its on-commit hook queues the refresh (eager: runs)
    assert _board(community) == [("ann", 1, 2)]
    # a burst inside the debounce window shares that refresh: the next one is not queued
    assert not services.rank_refresh_soon(community.pk)


@pytest.mark.django_db(transaction=True)
def test_one_process_of_the_fleet_queues_each_refresh(
    community: Community, eager_celery: None, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """Every process debounces its own refreshes; across processes a Redis claim keeps the
    fleet to one queued refresh per community per delay (``make loadtest`` found the queue
    growing with processes × communities without it)."""
    import redis

    url = "redis://127.0.0.1:6379/14"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).delete(f"rank-refresh:{community.pk}")
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    settings.REDIS_URL = url
    queued = []
    for _process in range(3):  # three processes: each has its own debounce state
        monkeypatch.setattr(services, "_refresh_due", {})
        queued.append(services.rank_refresh_soon(community.pk))  # eager: queued runs now
    assert queued == [True, False, False]
    settings.REDIS_URL = ""  # without Redis, each process queues its own
    monkeypatch.setattr(services, "_refresh_due", {})
    assert services.rank_refresh_soon(community.pk)
