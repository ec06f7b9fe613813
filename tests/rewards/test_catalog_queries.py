"""What a member may redeem is judged with a fixed number of queries, whatever the catalog's
size (the member page and GET …/rewards?member= ask for the whole catalog)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from points.adjustments import AdjustmentInput, adjustment_create
from points.models import Community, Member
from rewards.catalog import RewardInput, catalog_for_member, reward_save

pytestmark = pytest.mark.django_db


def _rewards(community: Community, start: int, count: int) -> None:
    for i in range(start, start + count):
        reward_save(
            community=community,
            item=RewardInput(
                code=f"item-{i}",
                kind="virtual",
                title=f"Item {i}",
                cost_points=10,
                min_tier="active",
                honor_months=2,
                limit_per_month=1,
            ),
            actor="user:test",
            create=True,
        )


def _queries(member: Member) -> int:
    with CaptureQueriesContext(connection) as captured:
        rows = catalog_for_member(member)
    assert rows
    return len(captured.captured_queries)


def test_judging_the_catalog_costs_the_same_queries_for_3_or_30_items(
    community: Community,
) -> None:
    adjustment_create(
        community=community,
        item=AdjustmentInput("cat", 50, "test"),
        actor="user:t",
        create_member=True,
    )
    member = Member.objects.select_related("community").get(external_id="cat")
    _rewards(community, 0, 3)
    few = _queries(member)
    _rewards(community, 3, 27)
    assert _queries(member) == few
