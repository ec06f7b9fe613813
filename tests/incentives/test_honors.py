"""The monthly honor roll: full attendance at the local month's edges, ties, immutability."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import DatabaseError, connection, transaction

from incentives import honors
from incentives.honors import honor_roll_get, honor_roll_publish, member_honors
from incentives.models import Honor, HonorRoll
from points.exceptions import ValidationFailed
from points.models import Community
from tests.incentives.conftest import Post, member

pytestmark = pytest.mark.django_db

SH = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=SH)


def _local(day: int, hour: int, minute: int = 0, month: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=SH)


def _october_check_ins(
    post: Post,
    who: str,
    *,
    skip: int | None = None,
    late_first: bool = False,
    last_in_november: bool = False,
) -> None:
    events: list[dict[str, Any]] = []
    for day in range(1, 32):
        if day == skip:
            continue
        at = _local(day, 12)
        if day == 1:  # the local month's first hour (30 Sep 16:30 UTC)
            at = _local(1, 0, 30) if not late_first else _local(30, 23, 50, month=9)
        if day == 31:  # its last hour (31 Oct 15:55 UTC)
            at = _local(31, 23, 55) if not last_in_november else _local(1, 0, 5, month=11)
        events.append({"type": "check_in", "member": who, "occurred_at": at})
    post(*events)


def test_full_attendance_counts_every_local_day_of_a_31_day_month_including_its_edges(
    community: Community, post: Post
) -> None:
    _october_check_ins(post, "alice")
    _october_check_ins(post, "bob", late_first=True)  # 23:50 on 30 Sep local: not October
    _october_check_ins(post, "carol", last_in_november=True)  # 00:05 on 1 Nov local
    _october_check_ins(post, "dave", skip=15)

    result = honor_roll_publish(community=community, month="2026-10", now=NOW)

    assert result["published"] is True
    roll = honor_roll_get(community, "2026-10")
    assert [e["member"] for e in roll.categories["full_attendance"]] == ["alice"]
    assert roll.categories["full_attendance"][0]["value"] == 31
    assert [h.category for h in member_honors(member("alice"), now=NOW)].count(
        "full_attendance"
    ) == 1


def test_ties_at_the_last_place_are_all_shown_and_marked(
    community: Community, post: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(honors.TOP, "top_points", 2)
    at = _local(10, 12)
    post(
        *[
            {"type": "share", "member": "eve", "occurred_at": at + dt.timedelta(minutes=i)}
            for i in range(3)
        ],
        *[
            {"type": "share", "member": who, "occurred_at": at + dt.timedelta(minutes=i)}
            for who in ("fay", "gus")
            for i in range(2)
        ],
        {"type": "share", "member": "hal", "occurred_at": at},
    )
    honor_roll_publish(community=community, month="2026-10", now=NOW)
    rows = honor_roll_get(community, "2026-10").categories["top_points"]
    assert [(r["rank"], r["member"], r["value"], r["tied"]) for r in rows] == [
        (1, "eve", 15, False),
        (2, "fay", 10, True),
        (2, "gus", 10, True),
    ]


def test_best_content_helpers_inviters_are_ranked(community: Community, post: Post) -> None:
    at = _local(5, 12)
    post(
        {"type": "content_featured", "member": "ann", "target": "post-1", "occurred_at": at},
        *[
            {
                "type": "reaction",
                "member": f"r{i}",
                "target": "post-1",
                "content": {"author": "ann"},
                "occurred_at": at,
            }
            for i in range(3)
        ],
        {
            "type": "reaction",
            "member": "r9",
            "target": "post-2",
            "content": {"author": "ben"},
            "occurred_at": at,
        },
        {"type": "help", "member": "ben", "target": "ann", "occurred_at": at},
        {"type": "invite", "member": "ann", "target": "newbie", "occurred_at": at},
        {"type": "join", "member": "newbie", "occurred_at": at + dt.timedelta(hours=1)},
    )
    honor_roll_publish(community=community, month="2026-10", now=NOW)
    roll = honor_roll_get(community, "2026-10").categories
    assert roll["best_content"][0] == {
        "rank": 1,
        "member": "ann",
        "display_name": "",
        "tied": False,
        "featured": 1,
        "distinct_reactors": 3,
    }
    assert [r["member"] for r in roll["best_content"]] == ["ann", "ben"]
    assert [r["member"] for r in roll["most_helpful"]] == ["ben"]
    assert [(r["member"], r["value"]) for r in roll["top_inviters"]] == [("ann", 1)]


def test_published_roll_never_changes_and_a_rerun_returns_it(
    community: Community, post: Post
) -> None:
    post({"type": "share", "member": "ivy", "occurred_at": _local(3, 9)})
    first = honor_roll_publish(community=community, month="2026-10", now=NOW)
    post({"type": "share", "member": "jon", "occurred_at": _local(4, 9)})  # a late event
    again = honor_roll_publish(community=community, month="2026-10", now=NOW)
    assert again == {**first, "already_ran": True}
    roll = HonorRoll.objects.get()
    assert [r["member"] for r in roll.categories["top_points"]] == ["ivy"]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        HonorRoll.objects.filter(pk=roll.pk).update(categories={})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Honor.objects.all().delete()


def test_a_month_that_has_not_ended_locally_cannot_be_published(community: Community) -> None:
    with pytest.raises(ValidationFailed):
        honor_roll_publish(community=community, month="2026-12", now=NOW)
    # 1 Dec 00:30 in Shanghai is still 30 Nov in UTC: November has ended for this community
    early = dt.datetime(2026, 12, 1, 0, 30, tzinfo=SH)
    assert honor_roll_publish(community=community, now=early)["month"] == "2026-11"


@pytest.mark.django_db(transaction=True)
def test_two_publishers_at_once_publish_one_roll(community: Community, post: Post) -> None:
    post({"type": "share", "member": "kim", "occurred_at": _local(3, 9)})
    barrier = threading.Barrier(2)
    results: list[dict[str, Any]] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(honor_roll_publish(community=community, month="2026-10", now=NOW))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.get("already_ran", False) for r in results) == [False, True]
    assert HonorRoll.objects.count() == 1


def test_a_category_without_a_top_lists_at_most_the_limit_and_counts_everyone(
    community: Community, post: Post, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incentives.honors import honor_counts

    monkeypatch.setattr(honors, "LISTED", 2)
    _october_check_ins(post, "p1")
    _october_check_ins(post, "p2")
    _october_check_ins(post, "p3")
    honor_roll_publish(community=community, month="2026-10", now=NOW)
    roll = honor_roll_get(community, "2026-10")
    assert [e["member"] for e in roll.categories["full_attendance"]] == ["p1", "p2"]
    assert honor_counts(roll)["full_attendance"] == 3
    assert Honor.objects.filter(category="full_attendance").count() == 3
