"""The tier ladder job: promotion at the next run, demotion only below the low-water mark after
the minimum stay and one tier at a time, locks, history, re-runs (docs/incentives.md)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection

from incentives.config import DEFAULT_TIERS
from incentives.models import MemberTier, TierChange
from incentives.tiers import member_tier_standing, tier_ladder_set, tier_set_lock, tiers_evaluate
from points.models import Community, JobRun
from points.timeutils import community_zone
from tests.incentives.conftest import Post, member

pytestmark = pytest.mark.django_db

LADDER: dict[str, Any] = {
    "points_window_days": 90,
    "low_water": 0.9,
    "min_stay_days": 30,
    "tiers": [
        {"code": "newcomer", "name": {"zh": "新人", "en": "Newcomer"}},
        {
            "code": "active",
            "name": {"zh": "活跃成员", "en": "Active"},
            "min_points": 20,
            "min_check_in_days": 4,
        },
        {
            "code": "core",
            "name": {"zh": "核心成员", "en": "Core"},
            "min_points": 40,
            "min_check_in_days": 8,
        },
    ],
}


def _next_local_day(community: Community, now: dt.datetime) -> str:
    """The job period after today's, as the community counts days: from 16:00 UTC on, the
    UTC date is already Shanghai's today, and a period named by it was today's, fenced."""
    return (
        now.astimezone(community_zone(community.timezone)).date() + dt.timedelta(days=1)
    ).isoformat()


@pytest.fixture
def ladder(community: Community) -> None:
    tier_ladder_set(community=community, document=LADDER, actor="user:test")


def _check_ins(post: Post, who: str, days: int, now: dt.datetime, start: int = 0) -> None:
    post(
        *(
            {"type": "check_in", "member": who, "occurred_at": now - dt.timedelta(days=start + d)}
            for d in range(days)
        )
    )


def _level(external_id: str) -> int:
    row = MemberTier.objects.filter(member=member(external_id)).first()
    return row.level if row else 0


def test_member_meeting_two_tiers_is_promoted_to_the_higher_one_at_the_next_run(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "alice", 9, now)  # 9 days x 5 points = 45 points, 9 check-in days
    _check_ins(post, "bob", 5, now)  # 25 points, 5 days: active
    _check_ins(post, "carol", 2, now)  # 10 points: stays newcomer

    result = tiers_evaluate(community=community, now=now)

    assert result["promotions"] == 2
    assert result["demotions"] == 0
    assert (_level("alice"), _level("bob"), _level("carol")) == (2, 1, 0)
    change = TierChange.objects.get(member=member("alice"))
    assert (change.kind, change.from_code, change.to_code) == ("promotion", "newcomer", "core")
    assert change.figures == {
        "points": 45,
        "points_window_days": 90,
        "check_in_days": 9,
        "featured": 0,
        "koc": False,
    }
    assert change.reason == "meets the entry criteria of core"


def _set_level(community: Community, external_id: str, level: int, since: dt.datetime) -> None:
    MemberTier.objects.update_or_create(
        member=member(external_id),
        defaults={
            "community": community,
            "level": level,
            "code": LADDER["tiers"][level]["code"],
            "since": since,
            "updated_at": since,
        },
    )


def test_demotion_waits_for_the_minimum_stay_then_goes_one_tier_down(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "dave", 1, now)  # 5 points: far below everything
    _set_level(community, "dave", 2, now - dt.timedelta(days=10))

    tiers_evaluate(community=community, now=now)
    assert _level("dave") == 2  # 10 days in the tier: protected

    _set_level(community, "dave", 2, now - dt.timedelta(days=31))
    tiers_evaluate(community=community, period=_next_local_day(community, now), now=now)
    assert _level("dave") == 1  # one tier per run, not straight to newcomer
    change = TierChange.objects.filter(member=member("dave")).latest("id")
    assert change.kind == "demotion"
    assert change.reason.startswith("below 0.9 x the criteria of core: points 5 < 36.0")


def test_member_between_low_water_and_entry_criteria_keeps_the_tier(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "erin", 8, now)  # 40 points, 8 days: exactly core
    _set_level(community, "erin", 2, now - dt.timedelta(days=60))
    tier_ladder_set(
        community=community,
        document={
            **LADDER,
            "tiers": [*LADDER["tiers"][:2], {**LADDER["tiers"][2], "min_points": 44}],
        },
        actor="user:test",
    )
    tiers_evaluate(community=community, now=now)  # 40 < 44 but >= 0.9 x 44 = 39.6: no flapping
    assert _level("erin") == 2
    assert not TierChange.objects.filter(member=member("erin")).exists()


def test_locked_tier_never_moves(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "frank", 9, now)
    tier_set_lock(
        community=community,
        member=member("frank"),
        locked=True,
        actor="user:op",
        tier="newcomer",
        reason="under review",
    )
    tiers_evaluate(community=community, now=now)
    assert _level("frank") == 0
    tier_set_lock(community=community, member=member("frank"), locked=False, actor="user:op")
    tiers_evaluate(community=community, period=_next_local_day(community, now), now=now)
    assert _level("frank") == 2
    assert [c.kind for c in TierChange.objects.filter(member=member("frank")).order_by("id")] == [
        "lock",
        "unlock",
        "promotion",
    ]


def test_a_rerun_of_the_same_day_changes_nothing_and_returns_the_first_result(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "gina", 5, now)
    first = tiers_evaluate(community=community, now=now)
    MemberTier.objects.filter(member=member("gina")).delete()
    second = tiers_evaluate(community=community, now=now)
    assert second == {**first, "already_ran": True}
    assert TierChange.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_record_one_result(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "hank", 5, now)
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(tiers_evaluate(community=community, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.get("already_ran", False) for r in results) == [False, True]
    assert TierChange.objects.count() == 1
    assert JobRun.objects.filter(job="tiers").count() == 1


def test_standing_shows_progress_to_the_next_tier(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    _check_ins(post, "ivy", 2, now)
    standing = member_tier_standing(member("ivy"), now)
    assert standing.tier.code == "newcomer"
    assert standing.next_tier is not None
    assert standing.next_tier.code == "active"
    assert [(c.figure, c.value, c.required) for c in standing.criteria] == [
        ("points", 10, 20),
        ("check_in_days", 2, 4),
    ]
    assert standing.progress == 50.0


def test_default_ladder_is_the_documented_one(community: Community) -> None:
    from incentives.config import community_ladder

    ladder = community_ladder(community.pk)
    assert [t.name_zh for t in ladder.tiers] == ["新人", "活跃成员", "核心成员", "大使"]
    assert ladder.tiers[-1].requires_koc
    assert DEFAULT_TIERS["low_water"] == 0.9
    assert DEFAULT_TIERS["min_stay_days"] == 30


def test_a_tier_change_is_announced_with_its_reason_and_figures(
    community: Community, ladder: None, post: Post, now: dt.datetime
) -> None:
    from webhooks.models import OutboxMessage
    from webhooks.services import endpoint_create

    endpoint_create(community=community, url="http://127.0.0.1:9/hook")
    _check_ins(post, "jay", 5, now)
    tiers_evaluate(community=community, now=now)
    message = OutboxMessage.objects.get(topic="tier.changed")
    assert message.payload == {
        "member": "jay",
        "kind": "promotion",
        "from": "newcomer",
        "to": "active",
        "reason": "meets the entry criteria of active",
        "figures": {
            "points": 25,
            "points_window_days": 90,
            "check_in_days": 5,
            "featured": 0,
            "koc": False,
        },
    }
