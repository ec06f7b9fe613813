"""The operator's reports on small hand-built communities whose answers are worked out by hand
in the comments. Events go through the real ingestion with a fixed ``now`` (November 2026:
Sunday the 1st, Monday the 2nd, 9th and 16th); Shanghai is UTC+8 all year."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from scipy.stats import circmean

from incentives.models import Role
from incentives.reports import (
    ReportNotFound,
    StageRule,
    active_users,
    activity_heatmap,
    content_mix,
    liability,
    report_run,
    retention,
    reward_spend,
    usual_hours,
)
from incentives.roles import member_role_set
from points.corrections import event_reverse
from points.ledger import ledger_post, member_lock
from points.models import Community, EntryKind, Member
from points.rules import DEFAULT_RULES
from points.services import EventInput, community_create, events_ingest
from points.services import rule_set_publish as publish
from rewards.models import Allocation, Campaign, Payout, Redemption, Reward

SH = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 18, 12, 0, tzinfo=SH)  # a Wednesday
_ids = itertools.count(1)


def at(month: int, day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=SH)


def post(community: Community, *events: tuple[str, str, dt.datetime]) -> None:
    """(member, type, when) triples, all accepted, ingested as of NOW."""
    inputs = [
        EventInput(
            client_id=f"r-{next(_ids)}",
            type=kind,
            member=member,
            occurred_at=when,
            target=f"c-{next(_ids)}" if kind in ("content_featured", "ugc_post") else "",
            content={"text": f"post number {next(_ids)} with something useful in it"}
            if kind == "ugc_post"
            else None,
        )
        for member, kind, when in events
    ]
    outcomes = events_ingest(community=community, events=inputs, now=NOW)
    assert all(o.status == "accepted" for o in outcomes), [o.errors for o in outcomes]


def member(external_id: str) -> Member:
    return Member.objects.get(external_id=external_id)


# --- activity ------------------------------------------------------------------------------------


def test_activity_buckets_events_by_local_hour_and_weekday_across_the_utc_date_line(community):
    post(
        community,
        ("ann", "message", at(11, 15, 23, 30)),  # Sun 23:30 Shanghai = Sun 15:30 UTC
        ("bob", "message", at(11, 16, 0, 30)),  # Mon 00:30 Shanghai = Sun 16:30 UTC
        ("ann", "share", at(11, 17, 9, 10)),  # Tue 09:10
        ("bob", "check_in", at(11, 17, 9, 50)),  # Tue 09:50
        ("ann", "message", at(11, 8, 12)),  # Sun of the week before the window: out
    )
    # after the report's now (posted later): out
    later = EventInput("r-later", "message", "ann", occurred_at=at(11, 18, 13))
    assert events_ingest(community=community, events=[later], now=at(11, 18, 13))[0].result
    utc = community_create(slug="utc", name="UTC", timezone_name="UTC")
    post(
        utc,
        ("ann", "message", at(11, 15, 23, 30)),
        ("bob", "message", at(11, 16, 0, 30)),
        ("ann", "share", at(11, 17, 9, 10)),
    )

    report = activity_heatmap(community, weeks=2, now=NOW)

    assert report["from"] == dt.date(2026, 11, 9)
    assert report["total"] == 4
    assert report["cells"][6][23] == 1  # ISO day 7 (Sunday), hour 23
    assert report["cells"][0][0] == 1  # ISO day 1 (Monday), hour 0: not Sunday 16:00
    assert report["cells"][1][9] == 2
    assert sum(map(sum, report["cells"])) == 4
    assert report["peak_hour"] == 9
    assert report["peak_cell"] == {"day": 2, "hour": 9}
    assert report["by_day"] == [1, 2, 0, 0, 0, 0, 1]
    assert report["slots"] == {"night": 1, "morning": 2, "noon": 0, "afternoon": 0, "evening": 1}

    in_utc = activity_heatmap(utc, weeks=2, now=NOW)
    assert in_utc["cells"][6][15] == 1  # the same instants in a UTC community
    assert in_utc["cells"][6][16] == 1
    assert in_utc["cells"][1][1] == 1
    assert in_utc["cells"][6][23] == 0


def test_activity_leaves_out_reversed_events(community):
    post(community, ("ann", "message", at(11, 17, 9)), ("ann", "message", at(11, 17, 10)))
    from points.models import Event

    first = Event.objects.order_by("id").first()
    assert first is not None
    event_reverse(community=community, client_id=first.client_id, reason="spam", actor="user:op")

    report = activity_heatmap(community, weeks=1, now=NOW)

    assert report["total"] == 1
    assert report["cells"][1][10] == 1


# --- DAU, WAU, MAU -------------------------------------------------------------------------------


def test_active_users_count_check_ins_and_messages_per_local_day_week_and_month(community):
    post(
        community,
        ("bob", "check_in", at(11, 1, 0, 30)),  # = Oct 31 16:30 UTC: local day Nov 1
        ("ann", "check_in", at(11, 3, 10)),
        ("ann", "check_in", at(11, 4, 10)),
        ("ann", "message", at(11, 4, 11)),  # ann counts once on the 4th
        ("bob", "message", at(11, 4, 23, 30)),  # = Nov 4 15:30 UTC
        ("cat", "share", at(11, 4, 12)),  # a share alone is not activity
        ("ann", "check_in", at(10, 31, 23)),  # October: before the window
        ("ann", "message", at(11, 10, 9)),
    )

    report = active_users(community, weeks=2, now=NOW)

    # The window is 2 weeks (from Monday Nov 9) widened to the whole month: Nov 1 … Nov 18.
    assert report["from"] == dt.date(2026, 11, 1)
    assert len(report["daily"]) == 18
    dau = {row["day"].day: row["dau"] for row in report["daily"]}
    assert {d: n for d, n in dau.items() if n} == {1: 1, 3: 1, 4: 2, 10: 1}
    assert report["weekly"] == [
        {"week": dt.date(2026, 11, 2), "wau": 2},
        {"week": dt.date(2026, 11, 9), "wau": 1},
        {"week": dt.date(2026, 11, 16), "wau": 0},
    ]
    [november] = report["monthly"]
    assert november["mau"] == 2
    assert november["days"] == 18
    assert november["average_dau"] == round(5 / 18, 2)
    assert november["dau_mau"] == round((5 / 18) / 2, 4)  # 0.1389


# --- retention -----------------------------------------------------------------------------------


def test_retention_by_local_join_month(community):
    post(
        community,
        ("zed", "check_in", at(8, 30)),  # joined in August: before the 3 months
        ("zed", "check_in", at(9, 30)),
        ("ann", "check_in", at(9, 5)),  # September cohort
        ("bob", "message", at(9, 20)),  # September cohort
        ("cat", "share", at(9, 25)),  # September cohort, not active in September
        ("ann", "message", at(10, 3)),
        ("cat", "check_in", at(10, 10)),
        ("ann", "check_in", at(11, 2)),
        ("dan", "check_in", at(10, 31, 23, 30)),  # = Oct 31 15:30 UTC: October cohort
        ("dan", "message", at(11, 3)),
        ("eve", "check_in", at(11, 1, 0, 30)),  # = Oct 31 16:30 UTC: November cohort
    )

    report = retention(community, months=3, now=NOW)

    assert report["from"] == dt.date(2026, 9, 1)
    assert report["cohorts"] == [
        {
            "cohort": dt.date(2026, 9, 1),
            "joined": 3,
            "active": [2, 2, 1],  # Sep: ann, bob; Oct: ann, cat; Nov: ann
            "retention": [0.6667, 0.6667, 0.3333],
        },
        {"cohort": dt.date(2026, 10, 1), "joined": 1, "active": [1, 1], "retention": [1.0, 1.0]},
        {"cohort": dt.date(2026, 11, 1), "joined": 1, "active": [1], "retention": [1.0]},
    ]


# --- content mix and stage -----------------------------------------------------------------------


def _week(monday: dt.date, **authors: int) -> list[tuple[str, str, dt.datetime]]:
    """``authors``: member -> posts that week (Tuesday 10:00 onwards, one an hour)."""
    day = dt.datetime.combine(monday + dt.timedelta(days=1), dt.time(10), tzinfo=SH)
    out = []
    hour = 0
    for name, count in authors.items():
        for _ in range(count):
            out.append((name, "ugc_post", day + dt.timedelta(hours=hour)))
            hour += 1
    return out


@pytest.fixture
def staged(community: Community) -> Community:
    """Weeks from Monday Sep 28 (8 weeks to Nov 18): four KOL-led weeks, two official weeks,
    one UGC week, one official week."""
    mondays = [dt.date(2026, 9, 28) + dt.timedelta(weeks=i) for i in range(8)]
    events = [("kay", "check_in", at(9, 1)), ("sam", "check_in", at(9, 1))]
    events += [("own", "check_in", at(9, 1))]
    for monday in mondays[:4]:
        events += _week(monday, kay=3, uma=1)  # KOL 75%
    for monday in mondays[4:6]:
        events += _week(monday, sam=2, own=1, uma=1)  # official (staff + owner) 75%
    events += _week(mondays[6], uma=1, ulf=1, una=1, kay=1)  # UGC 75%, 3 UGC authors
    events += [
        (n, "check_in", at(11, 10, 8)) for n in ("uma", "ulf", "una", "kay")
    ]  # WAU 4 that week
    events += _week(mondays[7], sam=2)  # official 100% (Tue 17th, before now)
    post(community, *events)
    for name, role in (("kay", Role.KOL), ("sam", Role.STAFF), ("own", Role.OWNER)):
        member_role_set(community=community, member=member(name), role=role, actor="user:op")
    return community


def test_content_mix_shares_and_stage_change_after_four_consecutive_weeks(staged):
    report = content_mix(staged, weeks=8, now=NOW)

    weeks = report["weeks"]
    assert [w["week"] for w in weeks][0] == dt.date(2026, 9, 28)
    assert [(w["kol"], w["official"], w["ugc"]) for w in weeks] == [
        *[(3, 0, 1)] * 4,
        *[(0, 3, 1)] * 2,
        (1, 0, 3),
        (0, 2, 0),
    ]
    assert weeks[0]["kol_share"] == 0.75
    assert weeks[6]["ugc_authors"] == 3
    assert weeks[6]["wau"] == 4
    assert [w["suggested"] for w in weeks] == [
        *["kol_driven"] * 4,
        "official_content",
        "official_content",
        "ugc_driven",
        "official_content",
    ]
    # The reported stage: nothing until the 4th KOL week, then KOL-driven; the two official
    # weeks, the UGC week and the last official week are never 4 in a row, so it stays.
    assert [w["stage"] for w in weeks] == [None, None, None, *["kol_driven"] * 5]
    assert report["stage"] == "kol_driven"
    assert "4 consecutive weeks" in report["rule"]


def test_a_shorter_hysteresis_lets_two_official_weeks_change_the_stage(staged):
    report = content_mix(staged, weeks=8, rule=StageRule(weeks_to_change=2), now=NOW)

    assert [w["stage"] for w in report["weeks"]] == [
        None,
        *["kol_driven"] * 4,
        "official_content",
        "official_content",
        "official_content",
    ]


def test_ugc_needs_its_authors_to_be_a_tenth_of_wau():
    rule = StageRule()
    assert rule.suggest(kol=0, official=0, ugc=10, ugc_authors=1, wau=20) is None
    assert rule.suggest(kol=0, official=0, ugc=10, ugc_authors=2, wau=20) == "ugc_driven"
    assert rule.suggest(kol=5, official=0, ugc=5, ugc_authors=5, wau=5) == "kol_driven"
    assert rule.suggest(kol=4, official=3, ugc=3, ugc_authors=3, wau=3) is None  # mixed
    assert rule.suggest(kol=0, official=0, ugc=0, ugc_authors=0, wau=9) is None


# --- usual hours ---------------------------------------------------------------------------------


def test_usual_hour_is_a_circular_mean_so_23_and_01_average_to_midnight(community):
    post(
        community,
        ("owl", "message", at(11, 10, 23)),
        ("owl", "message", at(11, 11, 1)),
        ("lark", "message", at(11, 12, 9)),
        ("lark", "check_in", at(11, 13, 9)),
        ("lark", "message", at(11, 13, 10)),
        ("kit", "message", at(11, 14, 21)),
        ("kit", "message", at(10, 1, 3)),  # 48 days before now: outside the 30 days
    )

    report = usual_hours(community, days=30, now=NOW)

    assert report["members"] == 3
    expected = [0] * 24
    expected[0] = 1  # owl: 00:00, not 12:00
    expected[9] = 1  # lark: circmean(9, 9, 10) = 9.33
    expected[21] = 1  # kit
    assert report["distribution"] == expected
    usual = [0.0, circmean([9, 9, 10], high=24), 21.0]
    assert report["circular_mean_hour"] == pytest.approx(circmean(usual, high=24), abs=1e-3)
    assert report["peak_usual_hour"] == 0

    owl = usual_hours(community, member_id=member("owl").pk, now=NOW)
    assert owl["member_usual_hour"] == pytest.approx(0.0, abs=1e-6)
    assert owl["distribution"][0] == 1
    assert owl["distribution"][12] == 0
    lark = usual_hours(community, member_id=member("lark").pk, now=NOW)
    assert lark["member_usual_hour"] == pytest.approx(circmean([9, 9, 10], high=24), abs=1e-4)


# --- liability -----------------------------------------------------------------------------------


def _credit(name: str, points: int, when: dt.datetime, kind: str = EntryKind.ADJUSTMENT) -> None:
    with transaction.atomic():
        found = member_lock(member_id=member(name).pk)
        ledger_post(
            member=found, points=points, kind=kind, when=when, period_day=None, reason="test"
        )


def test_liability_sums_balances_held_owed_and_what_expires_soon(community):
    publish(
        community=community,
        rules={**DEFAULT_RULES, "expiry_days": 30, "streak": None, "monthly_quota": None},
        effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    post(community, ("ann", "join", at(9, 1)), ("bob", "join", at(9, 1)))  # 0 points
    _credit("ann", 100, NOW - dt.timedelta(days=40))  # expires 10 days before now: due
    _credit("ann", 50, NOW - dt.timedelta(days=27))  # expires in 3 days
    _credit("ann", -30, NOW - dt.timedelta(days=20), kind=EntryKind.SPEND)  # from the oldest
    _credit("bob", 20, NOW - dt.timedelta(days=1))  # expires in 29 days
    Member.objects.filter(external_id="ann").update(held=40)
    Member.objects.filter(external_id="bob").update(owed=7)

    report = liability(community, within_days=5, now=NOW)

    assert report["outstanding"] == 140  # 100 + 50 - 30 + 20
    assert report["held"] == 40
    assert report["spendable"] == 100
    assert report["owed"] == 7
    assert report["members_with_points"] == 2
    assert report["expiry_days"] == 30
    # Within 5 days: lots credited up to now - 25 days (ann's 100 and 50) less her 30 spent.
    assert report["expiring"] == 120
    assert report["expiring_members"] == 1
    assert liability(community, within_days=30, now=NOW)["expiring"] == 140


def test_liability_without_expiry_reports_no_expiring_points(community):
    post(community, ("ann", "join", at(9, 1)))
    _credit("ann", 10, NOW - dt.timedelta(days=400))
    report = liability(community, now=NOW)
    assert report["outstanding"] == 10
    assert report["expiry_days"] is None
    assert report["expiring"] is None


# --- reward spend --------------------------------------------------------------------------------


def _reward(community: Community, code: str, kind: str, value_fen: int = 0) -> Reward:
    return Reward.objects.create(
        community=community,
        code=code,
        kind=kind,
        title=code,
        cost_points=50,
        value_fen=value_fen,
        created_at=NOW,
        updated_at=NOW,
    )


def _redemption(community, reward, status, when, points=50) -> Redemption:
    return Redemption.objects.create(
        community=community,
        client_id=f"rd-{next(_ids)}",
        body_hash="x",
        member=member("ann"),
        reward=reward,
        points=points,
        value_fen=reward.value_fen,
        status=status,
        requested_by="key:bot",
        created_at=when,
        updated_at=when,
    )


def _payout(community, amount, status, day, **source: Any) -> Payout:
    return Payout.objects.create(
        community=community,
        member=member("ann"),
        amount_fen=amount,
        status=status,
        local_day=day,
        created_at=NOW,
        updated_at=NOW,
        **source,
    )


def test_reward_spend_per_local_month_and_kind(community):
    post(community, ("ann", "join", at(9, 1)))
    _credit("ann", 1000, at(9, 2))
    _credit("ann", -50, at(10, 1, 0, 30), kind=EntryKind.SPEND)  # Sep 30 16:30 UTC: October
    _credit("ann", -100, at(11, 3), kind=EntryKind.SPEND)
    _credit("ann", 50, at(11, 4), kind=EntryKind.SPEND)  # given back: net 50 in November
    packet = _reward(community, "rp", "red_packet", value_fen=500)
    tee = _reward(community, "tee", "merch")
    r1 = _redemption(community, packet, "fulfilled", at(10, 1, 0, 30))
    _redemption(community, tee, "approved", at(10, 20), points=100)
    r3 = _redemption(community, packet, "requested", at(11, 3))
    _redemption(community, packet, "cancelled", at(11, 4))
    campaign = Campaign.objects.create(
        community=community,
        client_id="cny",
        kind="holiday",
        title="CNY",
        total_fen=888,
        packets=1,
        split="equal",
        seed="00",
        created_by="user:op",
        created_at=NOW,
    )
    allocation = Allocation.objects.create(
        community=community, campaign=campaign, index=0, member=member("ann"), amount_fen=888
    )
    _payout(community, 500, "confirmed", dt.date(2026, 10, 1), redemption=r1)
    _payout(community, 500, "requested", dt.date(2026, 11, 3), redemption=r3)
    _payout(community, 888, "confirmed", dt.date(2026, 11, 5), allocation=allocation)

    report = reward_spend(community, months=3, now=NOW)

    sep, octo, nov = report["months"]
    assert sep["month"] == dt.date(2026, 9, 1)
    assert sep["points_spent"] == 0
    assert octo["points_spent"] == 50
    assert octo["cash_paid_fen"] == 500
    assert octo["paid_by_source"] == {"redemption": 500}
    assert octo["redemptions"] == {
        "red_packet": {"fulfilled": {"count": 1, "points": 50}},
        "merch": {"approved": {"count": 1, "points": 100}},
    }
    assert nov["points_spent"] == 50
    assert nov["spends"] == 2
    assert nov["cash_paid_fen"] == 888
    assert nov["paid_by_source"] == {"holiday": 888}
    assert nov["cash_committed_fen"] == 500
    assert nov["committed_by_source"] == {"redemption": 500}
    assert nov["redemptions"] == {
        "red_packet": {
            "requested": {"count": 1, "points": 50},
            "cancelled": {"count": 1, "points": 50},
        }
    }


def test_unknown_report_is_refused_by_name(community):
    with pytest.raises(ReportNotFound) as caught:
        report_run(community, "vibes", {})
    assert "vibes" in caught.value.detail
    assert caught.value.errors[0].field == "name"
    assert report_run(community, "stage", {"weeks": 2}, now=NOW)["weeks_to_change"] == 4
