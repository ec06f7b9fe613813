"""Rewards test fixtures: a small catalog, members funded through the real ledger, and
snapshots of what a refused step must leave unchanged. No mocks: every helper goes through the
services against PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from points.adjustments import AdjustmentInput, adjustment_create
from points.models import AuditLog, Community, LedgerEntry, Member
from points.services import EventInput, events_ingest
from rewards.catalog import RewardInput, VariantInput, reward_save
from rewards.models import Redemption, Reward, RewardSettings, RewardVariant
from rewards.redemptions import RedemptionRequest, redemption_request

ADMIN = "user:alice"
OTHER_ADMIN = "user:bob"
BOT = "key:bot"
SHIPPING = {"name": "张三", "phone": "13800000000", "address": "上海市徐汇区 1 号"}

_ids = itertools.count(1)


@dataclass(frozen=True)
class Catalog:
    """The fixture catalog: a red packet (500 fen for 50 points), a tee with variants M (stock
    10) and L (stock 1) for 100 points, and a virtual badge for 20 points."""

    red_packet: Reward
    tee: Reward
    badge: Reward

    def variant(self, code: str) -> RewardVariant:
        return RewardVariant.objects.get(reward=self.tee, code=code)


def catalog_create(community: Community) -> Catalog:
    red_packet = reward_save(
        community=community,
        item=RewardInput(
            code="rp-5", kind="red_packet", title="5 元红包", cost_points=50, value_fen=500
        ),
        actor=ADMIN,
        create=True,
    )
    tee = reward_save(
        community=community,
        item=RewardInput(
            code="tee",
            kind="merch",
            title="社群 T 恤",
            cost_points=100,
            value_fen=3_000,
            variants=(VariantInput("M", "M 码", 10), VariantInput("L", "L 码", 1)),
        ),
        actor=ADMIN,
        create=True,
    )
    badge = reward_save(
        community=community,
        item=RewardInput(code="badge", kind="virtual", title="徽章", cost_points=20),
        actor=ADMIN,
        create=True,
    )
    return Catalog(red_packet=red_packet, tee=tee, badge=badge)


@pytest.fixture
def catalog(community: Community) -> Catalog:
    return catalog_create(community)


def give(community: Community, who: str, points: int) -> Member:
    """Credit ``points`` to ``who`` (created if new) with an audited adjustment."""
    adjustment_create(
        community=community,
        item=AdjustmentInput(who, points, "test funding"),
        actor=ADMIN,
        create_member=True,
    )
    return Member.objects.get(community=community, external_id=who)


def share(community: Community, who: str, times: int) -> Member:
    """``times`` share events for ``who`` (5 points each through the real rule engine)."""
    outcomes = events_ingest(
        community=community,
        events=[
            EventInput(
                client_id=f"share-{next(_ids)}",
                type="share",
                member=who,
            )
            for _ in range(times)
        ],
    )
    assert all(o.status == "accepted" for o in outcomes), [o.errors for o in outcomes]
    return Member.objects.get(community=community, external_id=who)


def settings_set(community: Community, **fields: Any) -> RewardSettings:
    row, _ = RewardSettings.objects.update_or_create(
        community=community,
        defaults={"updated_at": timezone.now(), "updated_by": ADMIN, **fields},
    )
    return row


def request(
    community: Community,
    who: str,
    reward: str,
    *,
    client_id: str | None = None,
    variant: str = "",
    quantity: int = 1,
    shipping: dict[str, str] | None = None,
) -> tuple[Redemption, bool]:
    """Request a redemption as the bot would (merch gets the default shipping address)."""
    if variant and shipping is None:
        shipping = SHIPPING
    item = RedemptionRequest(
        client_id=client_id or f"r-{next(_ids)}",
        member=who,
        reward=reward,
        quantity=quantity,
        variant=variant,
        shipping=shipping,
    )
    return redemption_request(community=community, item=item, actor=BOT)


def entries_sum(member: Member) -> int:
    return int(LedgerEntry.objects.filter(member=member).aggregate(s=Sum("points"))["s"] or 0)


def member_state(community: Community, who: str) -> tuple[int, int, int]:
    """(balance, held, sum of ledger entries) of a member, fresh from the database."""
    member = Member.objects.get(community=community, external_id=who)
    return member.balance, member.held, entries_sum(member)


def variant_state(variant: RewardVariant) -> tuple[int, int]:
    variant.refresh_from_db()
    return variant.stock, variant.reserved


def actions(community: Community, target: str) -> list[str]:
    """Audit actions recorded for ``target``, oldest first."""
    return list(
        AuditLog.objects.filter(community=community, target=target)
        .order_by("id")
        .values_list("action", flat=True)
    )


def race(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads, each on its own connection, released together by a
    barrier. Returns each thread's result, or the exception it raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - the caller inspects it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
