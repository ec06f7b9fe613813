"""KOC detection on hand-built communities: a ring of friends does not qualify, a member whose
posts reach many distinct members does; candidates carry their figures; decisions stay."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from incentives.koc import (
    NotACandidate,
    koc_candidates,
    koc_confirm,
    koc_detect,
    koc_dismiss,
    robust_z,
    trust_rank,
)
from incentives.models import KocCandidate, KocStatus
from incentives.roles import member_role_set
from points.models import AuditLog, Community
from points.timeutils import community_zone
from tests.incentives.conftest import Post, member

pytestmark = pytest.mark.django_db

RING = [f"ring{i}" for i in range(5)]
FANS = [f"fan{i:02d}" for i in range(40)]


def _next_local_day(community: Community, now: dt.datetime) -> str:
    """The job period after today's, as the community counts days: from 16:00 UTC on, the
    UTC date is already Shanghai's today, and a period named by it was today's, fenced."""
    return (
        now.astimezone(community_zone(community.timezone)).date() + dt.timedelta(days=1)
    ).isoformat()


def _reaction(reactor: str, author: str, content: str, at: dt.datetime) -> dict[str, object]:
    return {
        "type": "reaction",
        "member": reactor,
        "target": content,
        "content": {"author": author},
        "occurred_at": at,
    }


def _ring_and_star(post: Post, now: dt.datetime) -> None:
    """Five friends react to each other's daily post every day for 14 days; 'star' posts one
    piece a day and each draws 3 of 40 distinct fans (every fan reacts, over two weeks)."""
    events = []
    for day in range(14):
        at = now - dt.timedelta(days=day, hours=1)
        for author in RING:
            for reactor in RING:
                if reactor != author:
                    events.append(_reaction(reactor, author, f"{author}-d{day}", at))
        for k in range(3):
            fan = FANS[(day * 3 + k) % len(FANS)]
            events.append(_reaction(fan, "star", f"star-d{day}", at))
    # a few ordinary members who each draw one reaction: the community's normal
    for i in range(6):
        events.append(_reaction(FANS[i], f"member{i}", f"m{i}", now - dt.timedelta(days=2)))
    post(*events)


def test_a_ring_of_friends_does_not_qualify_but_a_member_reaching_40_members_does(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _ring_and_star(post, now)

    result = koc_detect(community=community, now=now)

    found = {c.member.external_id: c for c in koc_candidates(community)}
    assert set(found) == {"star"}, result
    star = found["star"]
    assert star.distinct_reactors == 40
    assert star.reciprocal_reactors == 0
    assert star.distinct_days == 14
    assert star.status == KocStatus.CANDIDATE
    assert star.robust_z >= 3.5
    assert star.h_index == 3  # 14 posts, each with 3 distinct reactors
    ring = KocCandidate.objects.filter(member__external_id__in=RING)
    assert not ring.exists()
    assert result["candidates"] == 1
    assert result["new_candidates"] == 1


def test_staff_and_kols_are_seeds_not_candidates(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _ring_and_star(post, now)
    member_role_set(community=community, member=member("star"), role="kol", actor="user:op")
    result = koc_detect(community=community, now=now)
    assert not KocCandidate.objects.exists()
    assert result["seeds"] == 1


def test_confirm_marks_the_member_and_a_later_run_keeps_the_decision(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _ring_and_star(post, now)
    koc_detect(community=community, now=now)
    koc_confirm(community=community, member=member("star"), actor="user:op", note="great posts")
    assert AuditLog.objects.filter(action="koc.confirmed", target="star").exists()

    koc_detect(community=community, period=_next_local_day(community, now), now=now)
    row = KocCandidate.objects.get(member=member("star"))
    assert row.status == KocStatus.CONFIRMED
    assert row.decided_by == "user:op"


def test_dismissed_candidate_stays_dismissed_and_others_cannot_be_decided(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _ring_and_star(post, now)
    koc_detect(community=community, now=now)
    koc_dismiss(community=community, member=member("star"), actor="user:op")
    koc_detect(community=community, period=_next_local_day(community, now), now=now)
    assert KocCandidate.objects.get(member=member("star")).status == KocStatus.DISMISSED
    with pytest.raises(NotACandidate):
        koc_confirm(community=community, member=member("ring0"), actor="user:op")


def test_rerun_of_the_same_day_is_a_no_op(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _ring_and_star(post, now)
    first = koc_detect(community=community, now=now)
    assert koc_detect(community=community, now=now) == {**first, "already_ran": True}


def test_trust_rank_flows_from_seeds_only() -> None:
    # 0 (seed) -> 1 -> 2; 3 <-> 4 is a pair nobody trusted reaches
    src = np.array([0, 1, 3, 4])
    dst = np.array([1, 2, 4, 3])
    rank = trust_rank(src, dst, np.ones(4), 5, np.array([0]))
    assert rank.sum() == pytest.approx(1.0)
    assert rank[3] == pytest.approx(0.0, abs=1e-12)
    assert rank[4] == pytest.approx(0.0, abs=1e-12)
    assert rank[1] > 0
    assert rank[2] > 0


def test_robust_z_uses_median_and_mad_and_falls_back_when_mad_is_zero() -> None:
    z = robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert z[2] == 0.0
    assert z[4] == pytest.approx(0.6745 * 97 / 1.0)
    flat = robust_z(np.array([1.0, 1.0, 1.0, 1.0, 9.0]))
    assert flat[4] == pytest.approx(8 / (1.253314 * 1.6))
    assert not robust_z(np.array([2.0, 2.0])).any()


def test_a_decided_candidate_cannot_be_decided_again(
    community: Community, post: Post, now: dt.datetime
) -> None:
    _ring_and_star(post, now)
    koc_detect(community=community, now=now)
    koc_confirm(community=community, member=member("star"), actor="user:a")
    with pytest.raises(NotACandidate, match="already confirmed by user:a"):
        koc_confirm(community=community, member=member("star"), actor="user:b")
    with pytest.raises(NotACandidate):
        koc_dismiss(community=community, member=member("star"), actor="user:b")
    assert AuditLog.objects.filter(action="koc.confirmed").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_record_one_result(
    community: Community, post: Post, now: dt.datetime
) -> None:
    import threading
    from typing import Any

    from django.db import connection

    from points.models import JobRun

    _ring_and_star(post, now)
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(koc_detect(community=community, now=now))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.get("already_ran", False) for r in results) == [False, True]
    assert KocCandidate.objects.count() == 1
    assert JobRun.objects.filter(job="koc").count() == 1
