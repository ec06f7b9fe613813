"""The scoring policy, without a database: every decision ``points.scoring`` makes."""

from __future__ import annotations

import datetime as dt

import pytest

from points.rules import DEFAULT_RULES, parse_rules
from points.scoring import (
    Award,
    DayEvent,
    Gate,
    PaidAward,
    Room,
    ScoringRecord,
    StreakState,
    Tally,
    award_for,
    bonuses_expected,
    bonuses_on_first,
    cooling,
    credit,
    day_rescore,
    debit,
    gate_of,
    recycled,
)

RULES = parse_rules(
    {
        **DEFAULT_RULES,
        "points": {"check_in": 5, "message": 2, "share": 3, "reaction": 1, "invite": 20},
        "daily_caps": {"message": 5},
        "daily_total_cap": 9,
        "diminishing": {"share": {"full": 1, "half": 1}},
        "streak": {"type": "check_in", "every": 2, "bonus": 4},
        "monthly_quota": {"type": "check_in", "days": 3, "bonus": 7, "achievement": "q"},
    }
)
DAY = dt.date(2026, 11, 10)
AT = dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC)


def _room(type_count: int = 0, type_points: int = 0, total_points: int = 0) -> Room:
    return Room(type_today=Tally(type_count, type_points), total_today=Tally(0, total_points))


def test_gates_first_one_wins_and_a_member_who_left_stops_everything() -> None:
    assert gate_of(payee_left=False, actor_left=False) is None
    assert gate_of(payee_left=False, actor_left=True, once_taken=True) is Gate.MEMBER_LEFT
    assert gate_of(payee_left=True, actor_left=False, fixed=Gate.OWN_CONTENT) is Gate.MEMBER_LEFT
    assert gate_of(payee_left=False, actor_left=False, fixed=Gate.REJOIN, once_taken=True) is (
        Gate.REJOIN
    )
    assert (
        gate_of(payee_left=False, actor_left=False, once_taken=True, is_recycled=True) is Gate.ONCE
    )
    assert gate_of(payee_left=False, actor_left=False, is_recycled=True, is_cooling=True) is (
        Gate.DUPLICATE_CONTENT
    )
    assert gate_of(payee_left=False, actor_left=False, is_cooling=True) is Gate.COOLDOWN


def test_recycled_and_cooling_look_inside_their_windows_only() -> None:
    assert recycled(AT, [AT - dt.timedelta(days=29)], 30)
    assert not recycled(AT, [AT - dt.timedelta(days=31)], 30)
    assert not recycled(AT, [AT + dt.timedelta(seconds=1)], 30)  # a later event is not earlier
    assert cooling(AT, [AT + dt.timedelta(seconds=59)], 60)
    assert not cooling(AT, [AT - dt.timedelta(seconds=60)], 60)
    assert not cooling(AT, [AT], None)


def test_a_gated_award_pays_zero_and_names_the_gate() -> None:
    award = award_for(RULES, "message", gate=Gate.COOLDOWN, room=_room(), pays_actor=True)
    assert award == Award("points.message", 0, 2, cap="cooldown", gross=0)


def test_first_per_day_pays_the_first_counted_check_in_only() -> None:
    first = award_for(RULES, "check_in", gate=None, room=_room(), pays_actor=True)
    second = award_for(RULES, "check_in", gate=None, room=_room(1, 5, 5), pays_actor=True)
    assert first is not None
    assert (first.points, first.cap) == (5, None)
    assert second is not None
    assert (second.points, second.gross, second.cap) == (
        0,
        0,
        "first_per_day",
    )


def test_diminishing_returns_halve_then_stop_and_say_so() -> None:
    awards = [
        award_for(RULES, "share", gate=None, room=_room(n, 0, 0), pays_actor=True) for n in range(3)
    ]
    assert [(a.points, a.gross, a.cap) for a in awards if a] == [
        (3, 3, None),
        (1, 1, "diminishing.share"),
        (0, 0, "diminishing.share"),
    ]


def test_caps_cut_to_the_room_left_and_name_the_binding_cap() -> None:
    by_type = award_for(RULES, "message", gate=None, room=_room(2, 4, 4), pays_actor=True)
    by_total = award_for(RULES, "message", gate=None, room=_room(0, 0, 8), pays_actor=True)
    assert by_type is not None
    assert (by_type.points, by_type.cap) == (1, "daily_caps.message")
    assert by_total is not None
    assert (by_total.points, by_total.cap) == (1, "daily_total_cap")


def test_types_that_never_pay_their_poster_yield_no_award() -> None:
    assert award_for(RULES, "invite", gate=None, room=_room(), pays_actor=True) is None
    assert award_for(RULES, "invite", gate=None, room=_room(), pays_actor=False) is not None
    assert award_for(RULES, "peer_score", gate=None, room=_room(), pays_actor=False) is None
    assert award_for(RULES, "help", gate=None, room=_room(), pays_actor=True) is None  # worth 0


def test_credit_pays_back_what_is_owed_first() -> None:
    posting = credit(balance=0, owed=3, points=5)
    assert [(m.kind, m.points, m.balance_after) for m in posting.movements] == [
        ("award", 5, 5),
        ("settlement", -3, 2),
    ]
    assert (posting.balance, posting.owed) == (2, 0)


def test_a_debit_never_takes_the_balance_below_what_is_held() -> None:
    refused = debit(balance=10, held=4, owed=0, points=-7, kind="spend", allow_owed=False)
    assert refused.refused
    assert refused.movements == ()
    owing = debit(balance=10, held=4, owed=0, points=-7, kind="reversal", allow_owed=True)
    assert [(m.points, m.balance_after) for m in owing.movements] == [(-6, 4)]
    assert (owing.balance, owing.owed, owing.owed_added) == (4, 1, 1)


def test_streak_bonus_on_every_nth_consecutive_day_and_a_late_check_in_asks_for_rederivation() -> (
    None
):
    day1 = bonuses_on_first(
        RULES,
        member_id=1,
        event_type="check_in",
        day=DAY,
        streak=StreakState(),
        month_days_before=0,
        taken=set(),
    )
    day2 = bonuses_on_first(
        RULES,
        member_id=1,
        event_type="check_in",
        day=DAY + dt.timedelta(days=1),
        streak=day1.streak,
        month_days_before=1,
        taken=set(),
    )
    assert day1.bonuses == ()
    assert day1.streak == StreakState(1, DAY)
    assert [(b.key, b.award.points) for b in day2.bonuses] == [("streak:1:2026-11-11", 4)]
    late = bonuses_on_first(
        RULES,
        member_id=1,
        event_type="check_in",
        day=DAY - dt.timedelta(days=3),
        streak=day2.streak,
        month_days_before=2,
        taken=set(),
    )
    assert late.late
    assert late.streak == day2.streak
    assert [b.kind for b in late.bonuses] == ["quota"]  # the third day of the month counts


def test_a_taken_key_is_never_paid_twice() -> None:
    decision = bonuses_on_first(
        RULES,
        member_id=1,
        event_type="check_in",
        day=DAY + dt.timedelta(days=1),
        streak=StreakState(1, DAY),
        month_days_before=2,
        taken={"streak:1:2026-11-11", "quota:1:2026-11"},
    )
    assert decision.bonuses == ()


def test_rederivation_judges_each_day_by_its_own_rule_version() -> None:
    no_streak = parse_rules({**DEFAULT_RULES, "streak": None, "monthly_quota": None})
    days = [(DAY, RULES), (DAY + dt.timedelta(days=1), no_streak), (DAY + dt.timedelta(2), RULES)]
    expected, streak = bonuses_expected(1, {"check_in": days})
    # day 2 ran under a version without a streak: no bonus there, even though the run is 2;
    # the quota counts every day of its type, and day 3's version pays it
    assert sorted(expected) == ["quota:1:2026-11"]
    assert streak == StreakState(3, DAY + dt.timedelta(days=2))
    expected, _ = bonuses_expected(1, {"check_in": [(d, RULES) for d, _r in days]})
    assert sorted(expected) == ["quota:1:2026-11", "streak:1:2026-11-11"]
    assert expected["quota:1:2026-11"].day == DAY + dt.timedelta(days=2)


def test_day_rescore_gives_freed_room_to_the_events_a_cap_cut() -> None:
    message = DayEvent("message", True, 2, RULES)
    points, tallies = day_rescore(
        [message, message, DayEvent("share", False, None, RULES), message],
        week_before={},
        month_before={},
    )
    assert points == [2, 2, None, 1]  # the daily message cap of 5
    assert tallies["message"] == Tally(3, 5)
    assert tallies["*"] == Tally(3, 5)


def test_a_scoring_record_round_trips_and_renders_the_public_answer() -> None:
    record = ScoringRecord(
        rule_type="reaction",
        counted=True,
        balance=7,
        awards=(PaidAward("bob", Award("points.reaction", 1, 1, gross=1)),),
    )
    again = ScoringRecord.from_json(record.to_json())
    assert again == record
    answer = again.render(client_id="e1", poster="ann", rule_version=3)
    assert answer["points"] == 0  # the author was paid, not the reacting member
    assert answer["awards"] == [
        {
            "rule": "points.reaction",
            "points": 1,
            "base": 1,
            "gross": 1,
            "capped": False,
            "cap": None,
            "member": "bob",
        }
    ]
    with pytest.raises(ValueError, match="version"):
        ScoringRecord.from_json({**record.to_json(), "v": 99})
