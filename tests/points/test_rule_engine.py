"""Each rule kind, table-driven where it fits, through ``events_ingest`` on real PostgreSQL;
then reversals and what they re-derive (docs/rules.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum

from points.corrections import event_reverse
from points.exceptions import EventNotFound
from points.ledger import ledger_post, member_lock
from points.models import AwardOnce, Community, EntryKind, LedgerEntry, Member
from points.rules import DEFAULT_RULES
from points.services import EventInput, events_ingest, rule_set_publish

SH = dt.timezone(dt.timedelta(hours=8))
MONDAY = dt.datetime(2026, 11, 2, 10, 0, tzinfo=SH)
EARLY = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)


def _rules(community: Community, **changes: Any) -> None:
    rule_set_publish(community=community, rules={**DEFAULT_RULES, **changes}, effective_from=EARLY)


def _post(community: Community, *events: EventInput) -> list[dict[str, Any]]:
    outcomes = events_ingest(community=community, events=list(events))
    assert all(o.status == "accepted" for o in outcomes), [o.errors for o in outcomes]
    return [o.result or {} for o in outcomes]


def _points(community: Community, *events: EventInput) -> list[int]:
    return [r["points"] for r in _post(community, *events)]


def _member(external_id: str) -> Member:
    return Member.objects.get(external_id=external_id)


def _balanced(external_id: str) -> int:
    member = _member(external_id)
    total = LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0
    assert member.balance == total >= 0
    return member.balance


def _at(days: float = 0, minutes: int = 0) -> dt.datetime:
    return MONDAY + dt.timedelta(days=days, minutes=minutes)


# --- caps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "kind", "count", "expected"),
    [
        ({"daily_caps": {"share": 12}}, "share", 4, [5, 5, 2, 0]),  # cut at the boundary
        ({"daily_caps": {"share": 15}}, "share", 4, [5, 5, 5, 0]),  # hit exactly
        ({"daily_caps": {}, "daily_total_cap": 20}, "ugc_post", 3, [10, 10, 0]),
        ({"daily_caps": {}, "daily_total_cap": 25}, "ugc_post", 3, [10, 10, 5]),
        ({"daily_caps": {"help": 20}}, "help", 5, [5, 5, 5, 5, 0]),
    ],
)
def test_daily_caps(
    community: Community, rules: dict[str, Any], kind: str, count: int, expected: list[int]
) -> None:
    _rules(community, **rules)
    events = [EventInput(f"e{i}", kind, "ann", occurred_at=_at(minutes=i)) for i in range(count)]
    assert _points(community, *events) == expected
    assert _balanced("ann") == sum(expected)


def test_the_daily_cap_names_itself_in_the_award(community: Community) -> None:
    _rules(community, daily_caps={"share": 7})
    [_, second] = _post(
        community,
        EventInput("a", "share", "ann", occurred_at=_at()),
        EventInput("b", "share", "ann", occurred_at=_at(minutes=1)),
    )
    assert second["awards"][0] | {"member": "ann"} == {
        "rule": "points.share",
        "points": 2,
        "base": 5,
        "gross": 5,
        "capped": True,
        "cap": "daily_caps.share",
        "member": "ann",
    }


def test_weekly_cap_spans_days_and_resets_on_monday(community: Community) -> None:
    _rules(community, weekly_caps={"share": 12})
    days = [0, 1, 2, 6, 7]  # Mon, Tue, Wed, Sun, next Mon
    events = [EventInput(f"w{d}", "share", "ann", occurred_at=_at(days=d)) for d in days]
    assert _points(community, *events) == [5, 5, 2, 0, 5]


def test_monthly_cap_spans_the_local_month(community: Community) -> None:
    _rules(community, monthly_caps={"help": 12}, daily_caps={})
    when = [
        dt.datetime(2026, 10, 30, 12, tzinfo=SH),
        dt.datetime(2026, 10, 31, 23, 59, tzinfo=SH),
        dt.datetime(2026, 10, 31, 23, 59, 30, tzinfo=SH),
        dt.datetime(2026, 11, 1, 0, 1, tzinfo=SH),
    ]
    events = [EventInput(f"h{i}", "help", "ann", occurred_at=w) for i, w in enumerate(when)]
    assert _points(community, *events) == [5, 5, 2, 5]


def test_first_check_in_per_local_day_only(community: Community) -> None:
    results = _points(
        community,
        EventInput(
            "c1", "check_in", "ann", occurred_at=dt.datetime(2026, 11, 2, 23, 59, tzinfo=SH)
        ),
        EventInput(
            "c2", "check_in", "ann", occurred_at=dt.datetime(2026, 11, 2, 23, 59, 30, tzinfo=SH)
        ),
        EventInput("c3", "check_in", "ann", occurred_at=dt.datetime(2026, 11, 3, 0, 1, tzinfo=SH)),
    )
    assert results == [5, 0, 5]


def test_cooldown_between_scoring_events_of_a_type(community: Community) -> None:
    _rules(community, cooldowns={"share": 60})
    assert _points(
        community,
        EventInput("s1", "share", "ann", occurred_at=_at()),
        EventInput("s2", "share", "ann", occurred_at=_at() + dt.timedelta(seconds=30)),
        EventInput("s3", "share", "ann", occurred_at=_at() + dt.timedelta(seconds=61)),
    ) == [5, 0, 5]
    # the window holds across requests too
    assert _points(
        community,
        EventInput("s4", "share", "ann", occurred_at=_at() + dt.timedelta(seconds=90)),
    ) == [0]


# --- bonuses -------------------------------------------------------------------------------


def test_streak_bonus_on_each_seventh_consecutive_day_and_a_gap_restarts(
    community: Community,
) -> None:
    days = [*range(8), 9, *range(10, 16)]  # 8 days, a gap on day 8, then 7 more from day 9
    results = _post(
        community,
        *[EventInput(f"c{d}", "check_in", "ann", occurred_at=_at(days=d)) for d in days],
    )
    bonus_days = [d for d, r in zip(days, results, strict=True) if r["points"] == 15]
    assert bonus_days == [6, 15]
    ann = _member("ann")
    assert (ann.streak_days, ann.streak_last_day) == (7, _at(days=15).date())


def test_monthly_quota_pays_once_with_an_achievement(community: Community) -> None:
    _rules(
        community,
        monthly_quota={"type": "check_in", "days": 3, "bonus": 50, "achievement": "q3"},
        streak=None,
    )
    october = [dt.datetime(2026, 10, d, 9, tzinfo=SH) for d in (1, 2, 3, 4)]
    points = _points(
        community,
        *[EventInput(f"q{i}", "check_in", "ann", occurred_at=w) for i, w in enumerate(october)],
    )
    assert points == [5, 5, 55, 5]
    once = AwardOnce.objects.get(member=_member("ann"))
    assert (once.key.split(":")[-1], once.achievement) == ("2026-10", "q3")


# --- who is paid ---------------------------------------------------------------------------


def test_reactions_pay_the_author_once_per_reacting_member_and_never_for_own_content(
    community: Community,
) -> None:
    spam = [
        EventInput(f"r{i}", "reaction", "bob", target="post-1", content={"author": "ann"})
        for i in range(50)
    ]
    others = [
        EventInput("r-carl", "reaction", "carl", target="post-1", content={"author": "ann"}),
        EventInput("r-own", "reaction", "ann", target="post-1", content={"author": "ann"}),
    ]
    results = _post(community, *spam, *others)
    paid = [(r["awards"][0]["points"], r["awards"][0]["cap"]) for r in results]
    assert paid[0] == (1, None)
    assert set(paid[1:50]) == {(0, "once")}
    assert paid[50:] == [(1, None), (0, "own_content")]
    assert _balanced("ann") == 2
    assert _member("bob").balance == 0  # the reacting member earns nothing


def test_reaction_daily_cap_applies_to_the_author(community: Community) -> None:
    _rules(community, daily_caps={"reaction": 3})
    events = [
        EventInput(f"r{i}", "reaction", f"fan{i}", target="post-1", content={"author": "ann"})
        for i in range(5)
    ]
    assert [r["awards"][0]["points"] for r in _post(community, *events)] == [1, 1, 1, 0, 0]


def test_featured_content_pays_its_author_once(community: Community) -> None:
    assert _points(
        community,
        EventInput("f1", "content_featured", "ann", target="post-9"),
        EventInput("f2", "content_featured", "ann", target="post-9"),
        EventInput("f3", "content_featured", "ann", target="post-10"),
    ) == [20, 0, 20]


def test_invites_pay_when_the_invitee_joins_once_and_never_for_a_rejoin(
    community: Community,
) -> None:
    results = _post(
        community,
        EventInput("i1", "invite", "ann", target="new1"),
        EventInput("i2", "invite", "bob", target="new1"),  # second inviter of the same member
        EventInput("j1", "join", "new1"),
        EventInput("l1", "leave", "new1"),
        EventInput("j2", "join", "new1"),  # a re-join pays nobody
        EventInput("j3", "join", "walk-in"),  # not invited
    )
    assert (results[0]["points"], results[0]["awards"]) == (0, [])
    assert results[2]["awards"] == [
        {
            "rule": "points.invite",
            "points": 10,
            "base": 10,
            "gross": 10,
            "capped": False,
            "cap": None,
            "member": "ann",
        }
    ]
    assert results[4]["awards"][0]["cap"] == "rejoin"
    assert results[5]["awards"] == []
    assert (_balanced("ann"), _balanced("bob"), _balanced("new1")) == (10, 0, 0)


def test_the_invite_that_arrived_first_pays_even_when_another_is_dated_earlier(
    community: Community,
) -> None:
    """Decision 43 names arrival, not the time the bot wrote on the invite (found by the
    differential test: the stored invites were ordered by ``occurred_at``)."""
    now = dt.datetime.now(dt.UTC)
    _post(community, EventInput("i1", "invite", "ann", target="fay", occurred_at=now))
    _post(
        community,
        EventInput("i2", "invite", "bob", target="fay", occurred_at=now - dt.timedelta(minutes=1)),
    )
    [joined] = _post(community, EventInput("j1", "join", "fay"))
    assert [a["member"] for a in joined["awards"]] == ["ann"]


def test_peer_scores_are_stored_and_pay_nobody(community: Community) -> None:
    [result] = _post(community, EventInput("p1", "peer_score", "ann", target="bob", score=4))
    assert (result["points"], result["awards"]) == (0, [])
    assert LedgerEntry.objects.count() == 0


def test_custom_types_are_paid_by_their_rule(community: Community) -> None:
    _rules(
        community, custom_types=["live_talk"], points={**DEFAULT_RULES["points"], "live_talk": 30}
    )
    assert _points(community, EventInput("t1", "live_talk", "ann")) == [30]


# --- quality gates -------------------------------------------------------------------------


def test_recycled_content_minimum_length_and_diminishing_returns(community: Community) -> None:
    _rules(community, diminishing={"ugc_post": {"full": 2, "half": 1}}, daily_caps={})
    results = _post(
        community,
        EventInput(
            "u1", "ugc_post", "ann", content={"hash": "h1", "length": 300}, occurred_at=_at()
        ),
        EventInput(
            "u2",
            "ugc_post",
            "ann",
            content={"hash": "h1", "length": 300},
            occurred_at=_at(minutes=1),
        ),
        EventInput(
            "u3", "ugc_post", "ann", content={"hash": "h2", "length": 5}, occurred_at=_at(minutes=2)
        ),
        EventInput(
            "u4",
            "ugc_post",
            "ann",
            content={"hash": "h3", "length": 300},
            occurred_at=_at(minutes=3),
        ),
        EventInput(
            "u5",
            "ugc_post",
            "ann",
            content={"hash": "h4", "length": 300},
            occurred_at=_at(minutes=4),
        ),
        EventInput(
            "u6",
            "ugc_post",
            "ann",
            content={"hash": "h5", "length": 300},
            occurred_at=_at(minutes=5),
        ),
    )
    got = [(r["points"], r["awards"][0]["cap"]) for r in results]
    assert got == [
        (10, None),
        (0, "duplicate_content"),
        (0, "min_length"),
        (10, None),
        (5, "diminishing.ugc_post"),
        (0, "diminishing.ugc_post"),
    ]


def test_a_late_event_is_scored_by_the_version_in_force_when_it_occurred(
    community: Community,
) -> None:
    switch = dt.datetime(2026, 11, 1, tzinfo=SH)
    rule_set_publish(
        community=community,
        rules={**DEFAULT_RULES, "points": {**DEFAULT_RULES["points"], "share": 8}},
        effective_from=switch,
    )
    [late, fresh] = _post(
        community,
        EventInput("old", "share", "ann", occurred_at=switch - dt.timedelta(minutes=1)),
        EventInput("new", "share", "ann", occurred_at=switch + dt.timedelta(minutes=1)),
    )
    assert (late["points"], late["rule_version"]) == (5, 1)
    assert (fresh["points"], fresh["rule_version"]) == (8, 2)


# --- reversals -----------------------------------------------------------------------------


def test_reversal_takes_back_the_points_and_is_idempotent(community: Community) -> None:
    _post(community, EventInput("p", "ugc_post", "ann"))
    first = event_reverse(community=community, client_id="p", reason="post deleted")
    again = event_reverse(community=community, client_id="p", reason="post deleted")

    assert first == again
    assert first["reversed"] == [{"member": "ann", "points": -10, "owed": 0}]
    assert _balanced("ann") == 0
    assert LedgerEntry.objects.filter(kind=EntryKind.REVERSAL).count() == 1
    with pytest.raises(EventNotFound):
        event_reverse(community=community, client_id="nope")


def test_reversing_spent_points_leaves_zero_and_owes_the_rest_paid_from_next_awards(
    community: Community,
) -> None:
    _post(community, EventInput("p", "ugc_post", "ann"), EventInput("s", "share", "ann"))
    with transaction.atomic():
        ledger_post(
            member=member_lock(member_id=_member("ann").pk),
            points=-12,
            kind=EntryKind.SPEND,
            when=_at(),
            period_day=None,
            reason="redemption",
        )
    result = event_reverse(community=community, client_id="p")
    assert result["reversed"] == [{"member": "ann", "points": -10, "owed": 7}]
    ann = _member("ann")
    assert (ann.balance, ann.owed) == (0, 7)

    [award] = _post(community, EventInput("h", "help", "ann"))
    ann = _member("ann")
    assert (award["points"], ann.balance, ann.owed) == (5, 0, 2)
    assert LedgerEntry.objects.filter(kind=EntryKind.SETTLEMENT).get().points == -5
    _post(community, EventInput("h2", "share", "ann"))
    assert (_balanced("ann"), _member("ann").owed) == (3, 0)


def test_a_reversal_frees_room_under_the_cap_for_the_events_it_cut(community: Community) -> None:
    events = [EventInput(f"m{i}", "message", "ann", occurred_at=_at(minutes=i)) for i in range(22)]
    assert sum(_points(community, *events)) == 20

    result = event_reverse(community=community, client_id="m3")

    assert result["rescored"] == [{"event": "m20", "member": "ann", "points": 1}]
    assert _balanced("ann") == 20  # the cap still holds, and no point was lost
    assert event_reverse(community=community, client_id="m3") == result


def test_reversing_a_check_in_reverses_the_streak_bonus_it_carried(community: Community) -> None:
    _post(
        community,
        *[EventInput(f"c{d}", "check_in", "ann", occurred_at=_at(days=d)) for d in range(7)],
    )
    assert _balanced("ann") == 45

    result = event_reverse(community=community, client_id="c2")

    assert {"member": "ann", "rule": "streak.bonus", "points": -10} in result["rescored"]
    ann = _member("ann")
    assert (_balanced("ann"), ann.streak_days) == (30, 4)
    assert not AwardOnce.objects.filter(kind="streak").exists()


def test_reversing_a_check_in_below_the_quota_reverses_the_quota_bonus(
    community: Community,
) -> None:
    _rules(
        community,
        monthly_quota={"type": "check_in", "days": 3, "bonus": 50, "achievement": "q3"},
        streak=None,
    )
    october = [dt.datetime(2026, 10, d, 9, tzinfo=SH) for d in (1, 2, 3)]
    _post(
        community,
        *[EventInput(f"q{i}", "check_in", "ann", occurred_at=w) for i, w in enumerate(october)],
    )
    assert _balanced("ann") == 65

    result = event_reverse(community=community, client_id="q0")

    assert {"member": "ann", "rule": "monthly_quota.bonus", "points": -50} in result["rescored"]
    assert _balanced("ann") == 10
    assert not AwardOnce.objects.filter(kind="quota").exists()


def test_reversing_a_reaction_frees_its_once_only_key(community: Community) -> None:
    reaction: dict[str, Any] = {"target": "post-1", "content": {"author": "ann"}}
    _post(community, EventInput("r1", "reaction", "bob", **reaction))
    event_reverse(community=community, client_id="r1", reason="spam")
    [again] = _post(community, EventInput("r2", "reaction", "bob", **reaction))
    assert again["awards"][0]["points"] == 1
    assert _balanced("ann") == 1
