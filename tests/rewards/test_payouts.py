"""Payout services against the real database: confirmation exactly once (also under racing
threads), fail → retry → confirm, fail → cancel giving the points back, and every illegal
step refused without a change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from points.exceptions import ValidationFailed
from points.models import AuditLog, Community, EntryKind, LedgerEntry, Member
from points.services import community_create
from rewards.exceptions import BudgetExceeded, InvalidTransition, PayoutNotFound
from rewards.models import Payout, PayoutStatus, Redemption, RedemptionStatus
from rewards.payouts import payout_cancel, payout_confirm, payout_fail, payout_get, payout_retry
from rewards.redemptions import redemption_approve
from tests.rewards.conftest import (
    ADMIN,
    BOT,
    actions,
    catalog_create,
    give,
    member_state,
    race,
    request,
    settings_set,
)
from webhooks.models import OutboxMessage
from webhooks.services import endpoint_create

db = pytest.mark.django_db


def _packet(community: Community, who: str = "ann", client_id: str = "r1") -> Payout:
    """An approved 5 元 red packet for ``who`` (funded with 80 points): its payout."""
    give(community, who, 80)
    request(community, who, "rp-5", client_id=client_id)
    redemption_approve(community=community, client_id=client_id, actor=ADMIN)
    return Payout.objects.get(redemption__client_id=client_id)


def _confirm(community: Community, payout: Payout, reference: str = "wx-1") -> tuple[Payout, bool]:
    return payout_confirm(community=community, payout_id=payout.pk, reference=reference, actor=BOT)


def _fail(community: Community, payout: Payout) -> Payout:
    return payout_fail(community=community, payout_id=payout.pk, reason="wallet closed", actor=BOT)


def _retry(community: Community, payout: Payout) -> Payout:
    return payout_retry(community=community, payout_id=payout.pk, actor=ADMIN)


def _cancel(community: Community, payout: Payout) -> Payout:
    return payout_cancel(community=community, payout_id=payout.pk, actor=ADMIN, reason="gave up")


def _everything(community: Community, payout: Payout) -> dict[str, Any]:
    row = Payout.objects.get(pk=payout.pk)
    redemption = Redemption.objects.get(payout=row)
    return {
        "payout": (row.status, row.reference, row.attempts, row.failure, row.updated_at),
        "redemption": (redemption.status, redemption.payout_reference, redemption.updated_at),
        "member": member_state(community, row.member.external_id),
        "entries": LedgerEntry.objects.filter(member_id=row.member_id).count(),
        "audit": AuditLog.objects.filter(community=community).count(),
    }


@pytest.fixture
def catalog(community: Community) -> None:
    catalog_create(community)


# --- confirmation ------------------------------------------------------------------------------


@db
def test_confirming_a_payout_fulfils_its_redemption(community: Community, catalog: None) -> None:
    payout = _packet(community)

    row, changed = _confirm(community, payout)

    assert changed is True
    assert (row.status, row.reference) == (PayoutStatus.CONFIRMED, "wx-1")
    redemption = Redemption.objects.get(client_id="r1")
    assert (redemption.status, redemption.payout_reference, redemption.fulfilled_by) == (
        RedemptionStatus.FULFILLED,
        "wx-1",
        BOT,
    )
    assert member_state(community, "ann") == (30, 0, 30)  # spent once, at the approval
    assert actions(community, str(payout.pk)) == ["payout.confirm"]


@db
def test_a_payout_confirmed_twice_with_one_reference_is_confirmed_once(
    community: Community, catalog: None
) -> None:
    payout = _packet(community)
    _confirm(community, payout)
    before = _everything(community, payout)

    row, changed = _confirm(community, payout)

    assert (changed, row.status, row.reference) == (False, PayoutStatus.CONFIRMED, "wx-1")
    assert _everything(community, payout) == before
    assert actions(community, str(payout.pk)) == ["payout.confirm"]


@db
def test_confirming_again_with_another_reference_is_refused(
    community: Community, catalog: None
) -> None:
    payout = _packet(community)
    _confirm(community, payout)
    before = _everything(community, payout)

    with pytest.raises(InvalidTransition):
        _confirm(community, payout, reference="wx-2")

    assert _everything(community, payout) == before


@db
def test_a_confirmation_needs_a_reference(community: Community, catalog: None) -> None:
    payout = _packet(community)
    before = _everything(community, payout)

    with pytest.raises(ValidationFailed):
        _confirm(community, payout, reference="  ")

    assert _everything(community, payout) == before


# --- failure, retry, cancellation --------------------------------------------------------------


@db
def test_a_failed_payout_is_retried_then_confirmed(community: Community, catalog: None) -> None:
    endpoint_create(community=community, url="http://127.0.0.1:9/never")
    payout = _packet(community)

    failed = _fail(community, payout)
    assert (failed.status, failed.failure, failed.attempts) == ("failed", "wallet closed", 1)
    retried = _retry(community, payout)
    assert (retried.status, retried.attempts) == (PayoutStatus.REQUESTED, 2)
    row, changed = _confirm(community, payout)

    assert (changed, row.status, row.attempts) == (True, PayoutStatus.CONFIRMED, 2)
    assert Redemption.objects.get(client_id="r1").status == RedemptionStatus.FULFILLED
    assert member_state(community, "ann") == (30, 0, 30)
    assert actions(community, str(payout.pk)) == ["payout.fail", "payout.retry", "payout.confirm"]
    payout_topics = [
        (m.topic, m.payload["attempts"])
        for m in OutboxMessage.objects.filter(topic__startswith="payout.").order_by("id")
    ]
    assert payout_topics == [
        ("payout.requested", 1),
        ("payout.failed", 1),
        ("payout.requested", 2),  # the bot is asked again
        ("payout.confirmed", 2),
    ]


@db
def test_a_failed_payout_may_still_be_confirmed_when_the_bot_paid_after_all(
    community: Community, catalog: None
) -> None:
    payout = _packet(community)
    _fail(community, payout)

    row, changed = _confirm(community, payout)

    assert (changed, row.status) == (True, PayoutStatus.CONFIRMED)
    assert Redemption.objects.get(client_id="r1").status == RedemptionStatus.FULFILLED


@db
def test_cancelling_a_failed_payout_gives_the_points_back_and_cancels_the_redemption(
    community: Community, catalog: None
) -> None:
    payout = _packet(community)
    assert member_state(community, "ann") == (30, 0, 30)
    _fail(community, payout)

    row = _cancel(community, payout)

    assert (row.status, row.failure) == (PayoutStatus.CANCELLED, "gave up")
    ann = Member.objects.get(external_id="ann")
    assert (ann.balance, ann.held, ann.lifetime_points) == (80, 0, 80)  # lifetime untouched
    spends = list(
        LedgerEntry.objects.filter(member=ann, kind=EntryKind.SPEND)
        .order_by("id")
        .values_list("points", "balance_after")
    )
    assert spends == [(-50, 30), (50, 80)]
    returned = LedgerEntry.objects.filter(member=ann, kind=EntryKind.SPEND).latest("id")
    assert f"payout {payout.pk}" in returned.reason
    assert member_state(community, "ann") == (80, 0, 80)  # the entries sum to the balance
    assert Redemption.objects.get(client_id="r1").status == RedemptionStatus.CANCELLED
    assert actions(community, str(payout.pk)) == ["payout.fail", "payout.cancel"]


@db
def test_a_cancelled_payout_frees_its_part_of_the_monthly_budget(
    community: Community, catalog: None
) -> None:
    settings_set(community, monthly_budget_fen=500)
    payout = _packet(community)
    give(community, "ben", 50)
    request(community, "ben", "rp-5", client_id="r-ben")
    with pytest.raises(BudgetExceeded):
        redemption_approve(community=community, client_id="r-ben", actor=ADMIN)

    _fail(community, payout)
    _cancel(community, payout)

    row = redemption_approve(community=community, client_id="r-ben", actor=ADMIN)
    assert row.status == RedemptionStatus.APPROVED


# --- illegal steps -----------------------------------------------------------------------------


STEPS: dict[str, Callable[[Community, Payout], Any]] = {
    "confirm": _confirm,
    "confirm_other_reference": lambda c, p: _confirm(c, p, reference="wx-other"),
    "fail": _fail,
    "retry": _retry,
    "cancel": _cancel,
}


def _drive(community: Community, payout: Payout, state: str) -> None:
    if state == "confirmed":
        _confirm(community, payout)
    if state in ("failed", "cancelled"):
        _fail(community, payout)
    if state == "cancelled":
        _cancel(community, payout)


ILLEGAL = [
    ("requested", "retry"),
    ("requested", "cancel"),
    ("confirmed", "confirm_other_reference"),
    ("confirmed", "fail"),
    ("confirmed", "retry"),
    ("confirmed", "cancel"),
    ("failed", "fail"),
    ("cancelled", "confirm"),
    ("cancelled", "fail"),
    ("cancelled", "retry"),
    ("cancelled", "cancel"),
]


@db
@pytest.mark.parametrize(("state", "step"), ILLEGAL)
def test_an_illegal_payout_step_is_refused_and_changes_nothing(
    community: Community, catalog: None, state: str, step: str
) -> None:
    payout = _packet(community)
    _drive(community, payout, state)
    assert Payout.objects.get(pk=payout.pk).status == state
    before = _everything(community, payout)

    with pytest.raises(InvalidTransition):
        STEPS[step](community, payout)

    assert _everything(community, payout) == before


@db
def test_a_payout_of_another_community_is_not_found(community: Community, catalog: None) -> None:
    payout = _packet(community)
    other = community_create(slug="other", name="Other", timezone_name="Asia/Shanghai")

    with pytest.raises(PayoutNotFound):
        payout_get(other, payout.pk)
    with pytest.raises(PayoutNotFound):
        _confirm(other, payout)
    assert Payout.objects.get(pk=payout.pk).status == PayoutStatus.REQUESTED


# --- races -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_eight_threads_confirming_one_payout_confirm_it_once(community: Community) -> None:
    catalog_create(community)
    payout = _packet(community)

    results = race(8, lambda _i: _confirm(community, payout))

    assert all(isinstance(r, tuple) for r in results), results
    assert sorted(changed for _row, changed in results) == [False] * 7 + [True]
    assert {row.reference for row, _changed in results} == {"wx-1"}
    assert actions(community, str(payout.pk)) == ["payout.confirm"]
    assert Redemption.objects.get(client_id="r1").status == RedemptionStatus.FULFILLED


@pytest.mark.django_db(transaction=True)
def test_two_references_racing_confirm_one_and_refuse_the_other(community: Community) -> None:
    catalog_create(community)
    payout = _packet(community)

    results = race(2, lambda i: _confirm(community, payout, reference=f"wx-{i}"))

    assert sorted(type(r).__name__ for r in results) == ["InvalidTransition", "tuple"]
    winner = next(r[0] for r in results if isinstance(r, tuple))
    stored = Payout.objects.get(pk=payout.pk)
    assert (stored.status, stored.reference) == (PayoutStatus.CONFIRMED, winner.reference)
    assert Redemption.objects.get(client_id="r1").payout_reference == winner.reference


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_late_confirmation_does_one_of_them(community: Community) -> None:
    catalog_create(community)
    payout = _packet(community)
    _fail(community, payout)

    results = race(
        2, lambda i: _confirm(community, payout) if i == 0 else _cancel(community, payout)
    )

    assert sum(isinstance(r, InvalidTransition) for r in results) == 1, results
    stored = Payout.objects.get(pk=payout.pk)
    balance, held, entries = member_state(community, "ann")
    if stored.status == PayoutStatus.CONFIRMED:
        assert (balance, held) == (30, 0)
        assert Redemption.objects.get(client_id="r1").status == RedemptionStatus.FULFILLED
    else:
        assert stored.status == PayoutStatus.CANCELLED
        assert (balance, held) == (80, 0)
        assert Redemption.objects.get(client_id="r1").status == RedemptionStatus.CANCELLED
    assert balance == entries
