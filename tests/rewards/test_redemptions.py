"""Redemption services against the real database: the state machine (every legal step and
every illegal one), points held then spent or released, stock reserved then taken or
released, eligibility with its reasons, idempotency, two-admin approval, the monthly cash
budget, and races between real threads on their own connections."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from incentives.honors import honor_roll_publish
from incentives.tiers import tier_set_lock
from points.adjustments import AdjustmentInput, adjustment_create
from points.exceptions import DomainError, InsufficientPoints, ValidationFailed
from points.models import AuditLog, Community, EntryKind, LedgerEntry, Member
from points.services import EventInput, events_ingest
from rewards.catalog import RewardInput, VariantInput, catalog_for_member, reward_save
from rewards.exceptions import (
    BudgetExceeded,
    InvalidTransition,
    NotEligible,
    OutOfStock,
    RedemptionConflict,
    RewardInvalid,
    SecondApproverRequired,
)
from rewards.models import Payout, PayoutStatus, Redemption, RewardVariant
from rewards.redemptions import (
    RedemptionRequest,
    redemption_approve,
    redemption_cancel,
    redemption_fulfil,
    redemption_reject,
    redemption_request,
)
from tests.rewards.conftest import (
    ADMIN,
    BOT,
    OTHER_ADMIN,
    Catalog,
    actions,
    catalog_create,
    entries_sum,
    give,
    member_state,
    race,
    request,
    settings_set,
    share,
    variant_state,
)

db = pytest.mark.django_db


def _codes(exc: DomainError) -> set[str]:
    return {e.code for e in exc.errors}


def _approve(community: Community, client_id: str, actor: str = ADMIN) -> Redemption:
    return redemption_approve(community=community, client_id=client_id, actor=actor)


def _reject(community: Community, client_id: str, actor: str = ADMIN) -> Redemption:
    return redemption_reject(
        community=community, client_id=client_id, actor=actor, reason="not this time"
    )


def _cancel(community: Community, client_id: str, actor: str = BOT) -> Redemption:
    return redemption_cancel(community=community, client_id=client_id, actor=actor, reason="nah")


def _fulfil(community: Community, client_id: str, actor: str = ADMIN) -> Redemption:
    return redemption_fulfil(
        community=community, client_id=client_id, actor=actor, tracking_number="SF123456"
    )


STEPS: dict[str, Callable[[Community, str], Redemption]] = {
    "approve": _approve,
    "reject": _reject,
    "cancel": _cancel,
    "fulfil": _fulfil,
}


def _everything(community: Community, who: str, variant: RewardVariant) -> dict[str, Any]:
    """All that a refused step must leave as it was."""
    member = Member.objects.get(community=community, external_id=who)
    return {
        "member": (member.balance, member.held, member.owed, member.lifetime_points),
        "entries": list(LedgerEntry.objects.filter(member=member).values_list("id", "points")),
        "variant": variant_state(variant),
        "redemptions": list(
            Redemption.objects.filter(community=community)
            .order_by("id")
            .values_list(
                "client_id", "status", "approved_by", "decided_by", "fulfilled_by", "updated_at"
            )
        ),
        "payouts": list(Payout.objects.filter(community=community).values_list("id", "status")),
        "audit": AuditLog.objects.filter(community=community).count(),
    }


# --- the legal steps and what they do to points and stock --------------------------------------


@db
def test_a_request_holds_the_points_and_reserves_the_stock_without_spending(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 300)
    row, created = request(community, "ann", "tee", variant="M", client_id="r1")

    assert created is True
    assert (row.status, row.points, row.quantity, row.value_fen) == ("requested", 100, 1, 3_000)
    ann = Member.objects.get(external_id="ann")
    assert (ann.balance, ann.held, ann.spendable) == (300, 100, 200)
    assert entries_sum(ann) == 300
    assert not LedgerEntry.objects.filter(member=ann, kind=EntryKind.SPEND).exists()
    assert variant_state(catalog.variant("M")) == (10, 1)
    assert actions(community, "r1") == ["redemption.request"]


@db
def test_approving_spends_the_held_points_and_takes_the_stock(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 300)
    request(community, "ann", "tee", variant="M", client_id="r1", quantity=2)
    assert variant_state(catalog.variant("M")) == (10, 2)

    row = _approve(community, "r1")

    assert (row.status, row.approved_by, row.decided_by) == ("approved", ADMIN, ADMIN)
    assert row.approved_at is not None
    ann = Member.objects.get(external_id="ann")
    assert (ann.balance, ann.held, ann.lifetime_points) == (100, 0, 300)
    spend = LedgerEntry.objects.get(member=ann, kind=EntryKind.SPEND)
    assert (spend.points, spend.balance_after, spend.actor) == (-200, 100, ADMIN)
    assert entries_sum(ann) == ann.balance
    assert variant_state(catalog.variant("M")) == (8, 0)
    assert not Payout.objects.exists()  # merch ships, no cash
    assert actions(community, "r1") == ["redemption.request", "redemption.approve"]


@db
def test_approved_merch_is_fulfilled_with_a_tracking_number(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 100)
    request(community, "ann", "tee", variant="L", client_id="r1")
    _approve(community, "r1")

    with pytest.raises(ValidationFailed) as refused:
        redemption_fulfil(community=community, client_id="r1", actor=ADMIN, tracking_number=" ")
    assert _codes(refused.value) == {"required"}
    assert Redemption.objects.get(client_id="r1").status == "approved"

    row = _fulfil(community, "r1")

    assert (row.status, row.tracking_number, row.fulfilled_by) == ("fulfilled", "SF123456", ADMIN)
    assert member_state(community, "ann") == (0, 0, 0)
    assert variant_state(catalog.variant("L")) == (0, 0)
    assert actions(community, "r1") == [
        "redemption.request",
        "redemption.approve",
        "redemption.fulfil",
    ]


@db
@pytest.mark.parametrize("step", ["reject", "cancel"])
def test_rejecting_or_cancelling_releases_the_points_and_the_stock(
    community: Community, catalog: Catalog, step: str
) -> None:
    give(community, "ann", 250)
    request(community, "ann", "tee", variant="M", client_id="r1", quantity=2)
    assert member_state(community, "ann") == (250, 200, 250)

    row = STEPS[step](community, "r1")

    expected = "rejected" if step == "reject" else "cancelled"
    assert row.status == expected
    assert row.reason
    assert row.decided_by
    assert member_state(community, "ann") == (250, 0, 250)
    ann = Member.objects.get(external_id="ann")
    assert not LedgerEntry.objects.filter(member=ann, kind=EntryKind.SPEND).exists()
    assert variant_state(catalog.variant("M")) == (10, 0)
    assert actions(community, "r1") == ["redemption.request", f"redemption.{step}"]


@db
def test_a_rejection_needs_a_reason_and_without_one_changes_nothing(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 100)
    request(community, "ann", "tee", variant="M", client_id="r1")
    before = _everything(community, "ann", catalog.variant("M"))

    with pytest.raises(ValidationFailed):
        redemption_reject(community=community, client_id="r1", actor=ADMIN, reason="  ")

    assert _everything(community, "ann", catalog.variant("M")) == before


@db
def test_a_red_packet_approval_requests_its_payout_and_fulfilling_it_confirms_the_payout(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 80)
    request(community, "ann", "rp-5", client_id="r1")

    _approve(community, "r1")

    payout = Payout.objects.get(redemption__client_id="r1")
    assert (payout.status, payout.amount_fen, payout.attempts) == ("requested", 500, 1)
    assert payout.member.external_id == "ann"
    assert member_state(community, "ann") == (30, 0, 30)
    with pytest.raises(ValidationFailed):  # a red packet is fulfilled with its reference
        redemption_fulfil(community=community, client_id="r1", actor=ADMIN)

    row = redemption_fulfil(community=community, client_id="r1", actor=ADMIN, reference="wx-1")

    assert (row.status, row.payout_reference) == ("fulfilled", "wx-1")
    payout.refresh_from_db()
    assert (payout.status, payout.reference) == (PayoutStatus.CONFIRMED, "wx-1")


@db
def test_a_virtual_reward_goes_through_request_approve_fulfil(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 20)
    request(community, "ann", "badge", client_id="r1")
    _approve(community, "r1")
    row = redemption_fulfil(community=community, client_id="r1", actor=ADMIN)

    assert row.status == "fulfilled"
    assert member_state(community, "ann") == (0, 0, 0)
    assert not Payout.objects.exists()


# --- every illegal step is refused and changes nothing ----------------------------------------


def _drive(community: Community, state: str) -> None:
    """Bring redemption ``r1`` (ann, one tee M) to ``state``."""
    request(community, "ann", "tee", variant="M", client_id="r1")
    if state in ("approved", "fulfilled"):
        _approve(community, "r1")
    if state == "fulfilled":
        _fulfil(community, "r1")
    if state == "rejected":
        _reject(community, "r1")
    if state == "cancelled":
        _cancel(community, "r1")


LEGAL = {("requested", s) for s in ("approve", "reject", "cancel")} | {("approved", "fulfil")}
ILLEGAL = [
    (state, step)
    for state in ("requested", "approved", "fulfilled", "rejected", "cancelled")
    for step in STEPS
    if (state, step) not in LEGAL
]


@db
@pytest.mark.parametrize(("state", "step"), ILLEGAL)
def test_an_illegal_step_is_an_invalid_transition_and_changes_nothing(
    community: Community, catalog: Catalog, state: str, step: str
) -> None:
    give(community, "ann", 500)
    _drive(community, state)
    assert Redemption.objects.get(client_id="r1").status == state
    before = _everything(community, "ann", catalog.variant("M"))

    with pytest.raises(InvalidTransition):
        STEPS[step](community, "r1")

    assert _everything(community, "ann", catalog.variant("M")) == before


def test_the_illegal_steps_cover_every_state_and_step() -> None:
    assert len(ILLEGAL) == 5 * 4 - len(LEGAL) == 16


# --- points --------------------------------------------------------------------------------


@db
def test_a_request_beyond_the_spendable_points_is_refused_and_stores_nothing(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 99)
    before = _everything(community, "ann", catalog.variant("M"))

    with pytest.raises(InsufficientPoints) as refused:
        request(community, "ann", "tee", variant="M", client_id="r1")

    assert refused.value.status == 409
    assert _codes(refused.value) == {"insufficient_points"}
    assert _everything(community, "ann", catalog.variant("M")) == before
    assert not Redemption.objects.exists()


@db
def test_held_points_cannot_be_redeemed_twice(community: Community, catalog: Catalog) -> None:
    give(community, "ann", 160)
    request(community, "ann", "tee", variant="M")  # 100 held
    request(community, "ann", "rp-5")  # 50 held: 10 spendable

    with pytest.raises(InsufficientPoints):
        request(community, "ann", "badge")

    assert member_state(community, "ann") == (160, 150, 160)


@db
def test_held_points_cannot_be_taken_by_a_negative_adjustment(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 120)
    request(community, "ann", "tee", variant="M", client_id="r1")

    with pytest.raises(InsufficientPoints):
        adjustment_create(
            community=community, item=AdjustmentInput("ann", -21, "correction"), actor=ADMIN
        )

    assert member_state(community, "ann") == (120, 100, 120)
    row = _approve(community, "r1")  # the held points are still there to spend
    assert row.status == "approved"
    assert member_state(community, "ann") == (20, 0, 20)


@db
def test_points_earned_from_share_events_can_be_redeemed(
    community: Community, catalog: Catalog
) -> None:
    share(community, "ann", 4)  # 4 × 5 points
    request(community, "ann", "badge", client_id="r1")
    _approve(community, "r1")

    ann = Member.objects.get(external_id="ann")
    assert (ann.balance, ann.held, ann.lifetime_points) == (0, 0, 20)
    assert entries_sum(ann) == 0


# --- stock -------------------------------------------------------------------------------------


@db
def test_the_last_item_goes_to_one_member_and_the_next_is_out_of_stock(
    community: Community, catalog: Catalog
) -> None:
    for who in ("ann", "ben", "cat"):
        give(community, who, 100)
    request(community, "ann", "tee", variant="L", client_id="r-ann")
    before = _everything(community, "ben", catalog.variant("L"))

    with pytest.raises(OutOfStock) as refused:
        request(community, "ben", "tee", variant="L", client_id="r-ben")

    assert (refused.value.status, _codes(refused.value)) == (409, {"out_of_stock"})
    assert _everything(community, "ben", catalog.variant("L")) == before

    _reject(community, "r-ann")  # the reservation is released
    row, _ = request(community, "cat", "tee", variant="L", client_id="r-cat")
    assert row.status == "requested"
    assert variant_state(catalog.variant("L")) == (1, 1)


@db
def test_a_quantity_beyond_the_stock_left_is_out_of_stock(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 5_000)
    request(community, "ann", "tee", variant="M", quantity=8)

    with pytest.raises(OutOfStock):
        request(community, "ann", "tee", variant="M", quantity=3)

    assert variant_state(catalog.variant("M")) == (10, 8)
    assert member_state(community, "ann") == (5_000, 800, 5_000)


def _tee(stock_m: int) -> RewardInput:
    return RewardInput(
        code="tee",
        kind="merch",
        title="社群 T 恤",
        cost_points=100,
        value_fen=3_000,
        variants=(VariantInput("M", "M 码", stock_m), VariantInput("L", "L 码", 1)),
    )


@db
def test_stock_cannot_be_set_below_what_is_reserved(community: Community, catalog: Catalog) -> None:
    for who in ("ann", "ben", "cat"):
        give(community, who, 100)
        request(community, who, "tee", variant="M")
    assert variant_state(catalog.variant("M")) == (10, 3)

    with pytest.raises(RewardInvalid) as refused:
        reward_save(community=community, item=_tee(2), actor=ADMIN, create=False)

    assert _codes(refused.value) == {"below_reserved"}
    assert variant_state(catalog.variant("M")) == (10, 3)

    reward_save(community=community, item=_tee(3), actor=ADMIN, create=False)  # the boundary
    assert variant_state(catalog.variant("M")) == (3, 3)
    give(community, "dan", 100)
    with pytest.raises(OutOfStock):
        request(community, "dan", "tee", variant="M")


@db
def test_merch_needs_a_known_variant_and_a_shipping_address(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 500)

    with pytest.raises(ValidationFailed) as refused:
        request(community, "ann", "tee", variant="XL", shipping={"name": "张三"})

    fields = {e.field for e in refused.value.errors}
    assert fields == {"variant", "shipping.phone", "shipping.address"}
    with pytest.raises(ValidationFailed):
        request(community, "ann", "badge", variant="M")
    assert not Redemption.objects.exists()
    assert member_state(community, "ann") == (500, 0, 500)


# --- eligibility -------------------------------------------------------------------------------


def _special(community: Community, **fields: Any) -> None:
    reward_save(
        community=community,
        item=RewardInput(
            code="special", kind="virtual", title="特别奖励", cost_points=10, **fields
        ),
        actor=ADMIN,
        create=True,
    )


def _refused_with(community: Community, who: str, code: str, client_id: str = "x") -> None:
    before = member_state(community, who)
    with pytest.raises(NotEligible) as refused:
        request(community, who, "special", client_id=client_id)
    assert code in _codes(refused.value)
    assert refused.value.status == 409
    assert member_state(community, who) == before
    assert not Redemption.objects.filter(client_id=client_id).exists()
    assert not AuditLog.objects.filter(action="redemption.request", target=client_id).exists()


@db
def test_a_reward_above_the_members_tier_is_refused_until_they_reach_it(
    community: Community,
) -> None:
    _special(community, min_tier="core")
    ann = give(community, "ann", 100)
    _refused_with(community, "ann", "tier_too_low")

    tier_set_lock(community=community, member=ann, locked=True, actor=ADMIN, tier="active")
    _refused_with(community, "ann", "tier_too_low")
    tier_set_lock(community=community, member=ann, locked=True, actor=ADMIN, tier="core")

    row, created = request(community, "ann", "special", client_id="x")
    assert created
    assert row.status == "requested"


@db
def test_an_honor_reward_is_for_members_on_a_recent_roll(community: Community) -> None:
    _special(community, honor_months=1)
    now = timezone.now()
    last_month = now - dt.timedelta(days=now.day + 2)  # a few days before this month
    adjustment_create(
        community=community,
        item=AdjustmentInput("hero", 300, "last month's work"),
        actor=ADMIN,
        create_member=True,
        now=last_month,
    )
    give(community, "newbie", 300)  # points this month only
    _refused_with(community, "hero", "not_on_honor_roll")  # no roll yet

    published = honor_roll_publish(community=community)

    assert published["published"] is True
    _refused_with(community, "newbie", "not_on_honor_roll", client_id="y")
    row, _ = request(community, "hero", "special", client_id="z")
    assert row.status == "requested"


@db
def test_the_monthly_limit_counts_this_months_live_redemptions_only(
    community: Community,
) -> None:
    _special(community, limit_per_month=1)
    give(community, "ann", 100)
    now = timezone.now()
    last_month = now - dt.timedelta(days=now.day + 2)
    old, _ = request(community, "ann", "special", client_id="old")  # then moved to last month
    Redemption.objects.filter(pk=old.pk).update(created_at=last_month)

    request(community, "ann", "special", client_id="r1")
    _refused_with(community, "ann", "monthly_limit")

    _cancel(community, "r1")  # a cancelled redemption does not count
    row, _ = request(community, "ann", "special", client_id="r2")
    assert row.status == "requested"


@db
def test_a_reward_outside_its_window_is_refused(community: Community) -> None:
    now = timezone.now()
    _special(
        community,
        available_from=now + dt.timedelta(hours=1),
        available_until=now + dt.timedelta(days=1),
    )
    give(community, "ann", 100)
    _refused_with(community, "ann", "not_yet_available")

    with pytest.raises(NotEligible) as late:
        redemption_request(
            community=community,
            item=RedemptionRequest(client_id="late", member="ann", reward="special"),
            actor=BOT,
            now=now + dt.timedelta(days=1),  # the end is exclusive
        )
    assert _codes(late.value) == {"no_longer_available"}

    row, _ = redemption_request(
        community=community,
        item=RedemptionRequest(client_id="inside", member="ann", reward="special"),
        actor=BOT,
        now=now + dt.timedelta(hours=1),  # the start is inclusive
    )
    assert row.status == "requested"


@db
def test_an_inactive_reward_is_refused(community: Community) -> None:
    _special(community, active=False)
    give(community, "ann", 100)
    _refused_with(community, "ann", "inactive")


@db
def test_a_member_who_left_cannot_redeem(community: Community, catalog: Catalog) -> None:
    _special(community)
    give(community, "ann", 100)
    events_ingest(community=community, events=[EventInput("bye", "leave", "ann")])
    assert Member.objects.get(external_id="ann").status == "left"

    _refused_with(community, "ann", "member_left")


@db
def test_several_reasons_are_all_reported(community: Community) -> None:
    _special(community, min_tier="core", active=False)
    give(community, "ann", 5)
    with pytest.raises(NotEligible) as refused:
        request(community, "ann", "special")
    assert _codes(refused.value) == {"tier_too_low", "inactive", "insufficient_points"}


@db
def test_the_members_catalog_explains_each_refusal(community: Community, catalog: Catalog) -> None:
    give(community, "ann", 60)
    for who in ("ben", "cat"):
        give(community, who, 100)
    request(community, "ben", "tee", variant="L")

    rows = {r["reward"].code: r for r in catalog_for_member(Member.objects.get(external_id="ann"))}

    assert rows["badge"]["eligible"]
    assert rows["rp-5"]["eligible"]
    assert [r.code for r in rows["tee"]["refusals"]] == ["insufficient_points"]
    reward_save(community=community, item=_tee(0), actor=ADMIN, create=False)
    cat = Member.objects.get(external_id="cat")
    tee = next(r for r in catalog_for_member(cat) if r["reward"].code == "tee")
    assert [r.code for r in tee["refusals"]] == ["out_of_stock"]


# --- idempotency -------------------------------------------------------------------------------


@db
def test_the_same_id_and_body_answer_the_stored_redemption(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 500)
    first, created = request(community, "ann", "tee", variant="M", client_id="r1")
    again, created_again = request(community, "ann", "tee", variant="M", client_id="r1")

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Redemption.objects.count() == 1
    assert member_state(community, "ann") == (500, 100, 500)
    assert variant_state(catalog.variant("M")) == (10, 1)
    assert actions(community, "r1") == ["redemption.request"]


@db
def test_a_replay_answers_the_redemption_even_after_it_moved_on(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 100)
    request(community, "ann", "tee", variant="L", client_id="r1")
    _approve(community, "r1")  # no points and no stock left

    again, created = request(community, "ann", "tee", variant="L", client_id="r1")

    assert (created, again.status) == (False, "approved")


@db
@pytest.mark.parametrize(
    "change",
    [
        {"variant": "L"},
        {"quantity": 2},
        {"shipping": {"name": "李四", "phone": "1", "address": "北京"}},
        {"who": "ben"},
    ],
)
def test_the_same_id_with_another_body_is_a_conflict(
    community: Community, catalog: Catalog, change: dict[str, Any]
) -> None:
    give(community, "ann", 500)
    give(community, "ben", 500)
    request(community, "ann", "tee", variant="M", client_id="r1")
    before = _everything(community, "ann", catalog.variant("M"))
    kwargs: dict[str, Any] = {"variant": "M", **change}
    who = kwargs.pop("who", "ann")

    with pytest.raises(RedemptionConflict) as refused:
        request(community, who, "tee", client_id="r1", **kwargs)

    assert refused.value.status == 409
    assert _everything(community, "ann", catalog.variant("M")) == before
    assert member_state(community, "ben") == (500, 0, 500)


@db
def test_a_refused_id_stores_nothing_and_may_succeed_later(
    community: Community, catalog: Catalog
) -> None:
    give(community, "ann", 40)
    with pytest.raises(InsufficientPoints):
        request(community, "ann", "rp-5", client_id="r1")
    assert not Redemption.objects.exists()
    assert actions(community, "r1") == []

    give(community, "ann", 10)
    row, created = request(community, "ann", "rp-5", client_id="r1")

    assert (created, row.status) == (True, "requested")


# --- two admins above the community's amount ---------------------------------------------------


@db
def test_above_the_threshold_two_different_admins_must_approve(
    community: Community, catalog: Catalog
) -> None:
    settings_set(community, second_approval_above_fen=499)
    give(community, "ann", 50)
    request(community, "ann", "rp-5", client_id="r1")

    first = _approve(community, "r1", ADMIN)

    assert (first.status, first.approved_by, first.second_approved_by) == ("requested", ADMIN, "")
    assert member_state(community, "ann") == (50, 50, 50)  # nothing spent yet
    assert not Payout.objects.exists()
    before = _everything(community, "ann", catalog.variant("M"))
    with pytest.raises(SecondApproverRequired):
        _approve(community, "r1", ADMIN)
    assert _everything(community, "ann", catalog.variant("M")) == before

    second = _approve(community, "r1", OTHER_ADMIN)

    assert (second.status, second.approved_by, second.second_approved_by) == (
        "approved",
        ADMIN,
        OTHER_ADMIN,
    )
    assert member_state(community, "ann") == (0, 0, 0)
    assert Payout.objects.get(redemption=second).amount_fen == 500
    assert actions(community, "r1") == [
        "redemption.request",
        "redemption.first_approval",
        "redemption.approve",
    ]


@db
def test_at_the_threshold_one_approval_is_enough(community: Community, catalog: Catalog) -> None:
    settings_set(community, second_approval_above_fen=500)
    give(community, "ann", 50)
    request(community, "ann", "rp-5", client_id="r1")

    row = _approve(community, "r1")

    assert (row.status, row.approved_by, row.second_approved_by) == ("approved", ADMIN, "")


@db
def test_a_half_approved_redemption_can_still_be_rejected(
    community: Community, catalog: Catalog
) -> None:
    settings_set(community, second_approval_above_fen=0)
    give(community, "ann", 50)
    request(community, "ann", "rp-5", client_id="r1")
    _approve(community, "r1", ADMIN)

    row = _reject(community, "r1", OTHER_ADMIN)

    assert row.status == "rejected"
    assert member_state(community, "ann") == (50, 0, 50)


# --- the monthly cash budget -------------------------------------------------------------------


@db
def test_a_red_packet_beyond_the_monthly_budget_is_refused_and_spends_nothing(
    community: Community, catalog: Catalog
) -> None:
    settings_set(community, monthly_budget_fen=1_000)
    for who in ("ann", "ben", "cat"):
        give(community, who, 50)
        request(community, who, "rp-5", client_id=f"r-{who}")
    _approve(community, "r-ann")
    _approve(community, "r-ben")  # exactly the budget
    before = _everything(community, "cat", catalog.variant("M"))

    with pytest.raises(BudgetExceeded) as refused:
        _approve(community, "r-cat")

    assert refused.value.status == 409
    assert _everything(community, "cat", catalog.variant("M")) == before
    assert member_state(community, "cat") == (50, 50, 50)
    assert Redemption.objects.get(client_id="r-cat").status == "requested"
    assert Payout.objects.count() == 2


@db
def test_merch_is_not_counted_against_the_cash_budget(
    community: Community, catalog: Catalog
) -> None:
    settings_set(community, monthly_budget_fen=0)
    give(community, "ann", 100)
    request(community, "ann", "tee", variant="M", client_id="r1")  # declared 3,000 fen

    assert _approve(community, "r1").status == "approved"


# --- races between real threads ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_thirty_members_racing_for_ten_items_get_exactly_ten(community: Community) -> None:
    catalog = catalog_create(community)
    members = [f"m{i:02d}" for i in range(30)]
    for who in members:
        give(community, who, 150)

    results = race(
        30, lambda i: request(community, members[i], "tee", variant="M", client_id=f"r{i}")
    )

    won = [i for i, r in enumerate(results) if isinstance(r, tuple)]
    lost = [r for r in results if not isinstance(r, tuple)]
    assert len(won) == 10
    assert all(isinstance(r, OutOfStock) and r.status == 409 for r in lost), lost
    assert variant_state(catalog.variant("M")) == (10, 10)
    for i, who in enumerate(members):
        assert member_state(community, who) == ((150, 100, 150) if i in won else (150, 0, 150))

    approved = race(10, lambda j: _approve(community, f"r{won[j]}"))

    assert all(isinstance(r, Redemption) and r.status == "approved" for r in approved), approved
    assert variant_state(catalog.variant("M")) == (0, 0)
    for i, who in enumerate(members):
        balance, held, entries = member_state(community, who)
        assert (balance, held) == ((50, 0) if i in won else (150, 0))
        assert balance == entries >= 0


@pytest.mark.django_db(transaction=True)
def test_one_member_racing_two_redemptions_against_one_balance_gets_one(
    community: Community,
) -> None:
    catalog_create(community)
    give(community, "ann", 70)  # one red packet (50), not two

    results = race(2, lambda i: request(community, "ann", "rp-5", client_id=f"r{i}"))

    assert sorted(type(r).__name__ for r in results) == ["InsufficientPoints", "tuple"]
    assert Redemption.objects.count() == 1
    assert member_state(community, "ann") == (70, 50, 70)


def _same_id_race(community: Community, who: str, **kwargs: Any) -> list[Any]:
    results = race(8, lambda _i: request(community, who, client_id="same", **kwargs))
    assert all(isinstance(r, tuple) for r in results), results
    assert Redemption.objects.filter(client_id="same").count() == 1
    row = Redemption.objects.get(client_id="same")
    assert all(r[0].pk == row.pk for r in results)
    assert sorted(r[1] for r in results) == [False] * 7 + [True]
    assert actions(community, "same") == ["redemption.request"]
    return results


@pytest.mark.django_db(transaction=True)
def test_eight_threads_posting_one_id_make_one_redemption(community: Community) -> None:
    catalog = catalog_create(community)
    give(community, "ann", 1_000)

    _same_id_race(community, "ann", reward="tee", variant="M")

    assert member_state(community, "ann") == (1_000, 100, 1_000)
    assert variant_state(catalog.variant("M")) == (10, 1)


@pytest.mark.django_db(transaction=True)
def test_eight_threads_posting_one_id_for_the_last_item_make_one_redemption(
    community: Community,
) -> None:
    """The replay must win over a refusal: the second thread in finds the stock (and the
    points) taken by the first thread's redemption of this very id."""
    catalog = catalog_create(community)
    give(community, "ann", 100)  # exactly one tee

    _same_id_race(community, "ann", reward="tee", variant="L")

    assert member_state(community, "ann") == (100, 100, 100)
    assert variant_state(catalog.variant("L")) == (1, 1)
