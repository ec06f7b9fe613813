"""Payouts: cash the paying bot owes a member, handed over through the outbox
(``payout.requested``) and confirmed by its callback.

States: requested → confirmed; requested → failed → requested again (retry) or cancelled.
Confirming is idempotent: the same reference again answers the confirmed payout; another
reference is a conflict. Cancelling the payout of a red packet redemption returns its points
(a positive ``spend`` entry naming the payout: the spend given back) and marks the redemption
cancelled.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

from points import outbox
from points.adjustments import audit_record
from points.exceptions import FieldError, ValidationFailed
from points.ledger import ledger_post, member_lock
from points.models import Community, EntryKind, Member
from points.timeutils import today
from rewards.exceptions import InvalidTransition, PayoutNotFound
from rewards.models import Allocation, Payout, PayoutStatus, Redemption, RedemptionStatus


def payout_body(row: Payout) -> dict[str, Any]:
    return {
        "id": row.pk,
        "member": row.member.external_id,
        "amount_fen": row.amount_fen,
        "status": row.status,
        "reference": row.reference,
        "attempts": row.attempts,
        "failure": row.failure,
        "redemption": row.redemption.client_id if row.redemption_id and row.redemption else None,
        "campaign": row.allocation.campaign.client_id
        if row.allocation_id and row.allocation
        else None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def announce_payout(community: Community, row: Payout, topic: str) -> None:
    payload = payout_body(row)
    payload["created_at"] = row.created_at.isoformat()
    payload["updated_at"] = row.updated_at.isoformat()
    outbox.publish(community, [(topic, payload)])


def member_paid_today(member: Member, day: dt.date) -> tuple[int, int]:
    """Packets and fen requested for the member on the community's local ``day`` (every
    payout not cancelled): what per-member daily limits count."""
    found = (
        Payout.objects.filter(member=member, local_day=day)
        .exclude(status=PayoutStatus.CANCELLED)
        .aggregate(n=Count("id"), s=Sum("amount_fen"))
    )
    return int(found["n"] or 0), int(found["s"] or 0)


def payout_request(
    *,
    community: Community,
    member: Member,
    amount_fen: int,
    redemption: Redemption | None = None,
    allocation: Allocation | None = None,
    now: dt.datetime | None = None,
) -> Payout:
    """Record a payout and announce it, in the caller's transaction."""
    now = now or timezone.now()
    row = Payout.objects.create(
        community=community,
        member=member,
        amount_fen=amount_fen,
        redemption=redemption,
        allocation=allocation,
        local_day=today(community.timezone, now),
        created_at=now,
        updated_at=now,
    )
    announce_payout(community, row, "payout.requested")
    return row


def _redemption_follows(
    community: Community,
    redemption: Redemption,
    status: str,
    actor: str,
    now: dt.datetime,
    **fields: Any,
) -> None:
    """A redemption moved by its payout (confirmed: fulfilled; cancelled: cancelled), audited
    and announced like the redemption's own steps."""
    from rewards.redemptions import redemption_announce

    if redemption.status != RedemptionStatus.APPROVED:
        return
    redemption.status, redemption.updated_at = status, now
    for name, value in fields.items():
        setattr(redemption, name, value)
    redemption.save()
    action = "fulfil" if status == RedemptionStatus.FULFILLED else "cancel"
    audit_record(
        community=community,
        actor=actor,
        action=f"redemption.{action}",
        target=redemption.client_id,
        data={"via": "payout"},
        now=now,
    )
    redemption_announce(community, redemption, f"redemption.{status}")


def payout_get(community: Community, payout_id: int) -> Payout:
    row = (
        Payout.objects.select_related("member", "redemption", "allocation__campaign")
        .filter(community=community, pk=payout_id)
        .first()
    )
    if row is None:
        raise PayoutNotFound(f"No payout {payout_id} in this community.")
    return row


def _locked(
    community: Community, payout_id: int, expected: str | None = None, step: str = ""
) -> Payout:
    """The member row, then the payout row, locked in that order; with ``expected``, a payout
    in another state is an ``InvalidTransition`` naming the ``step``."""
    found = payout_get(community, payout_id)
    member_lock(member_id=found.member_id)
    row = (
        Payout.objects.select_for_update(of=("self",))
        .select_related("member", "redemption", "allocation__campaign")
        .get(pk=found.pk)
    )
    if expected is not None and row.status != expected:
        raise InvalidTransition(
            f"Payout {payout_id} is {row.status}; only a {expected} payout {step}."
        )
    return row


def _recorded(
    community: Community,
    row: Payout,
    actor: str,
    step: str,
    topic: str,
    data: dict[str, Any],
    now: dt.datetime,
) -> None:
    """Every step's audit row (``payout.<step>``) and announcement, in its transaction."""
    audit_record(
        community=community,
        actor=actor,
        action=f"payout.{step}",
        target=str(row.pk),
        data=data,
        now=now,
    )
    announce_payout(community, row, topic)


def payout_confirm(
    *,
    community: Community,
    payout_id: int,
    reference: str,
    actor: str,
    now: dt.datetime | None = None,
) -> tuple[Payout, bool]:
    """The bot paid: confirm with its payment reference. Returns (payout, changed); the same
    reference twice confirms once."""
    if not reference.strip():
        raise ValidationFailed(
            "A confirmation carries the payment's reference.",
            [FieldError("reference", "required", "the payment's reference")],
        )
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked(community, payout_id)
        if row.status == PayoutStatus.CONFIRMED:
            if row.reference == reference:
                return row, False
            raise InvalidTransition(
                f"Payout {payout_id} was confirmed with another reference ({row.reference})."
            )
        if row.status not in (PayoutStatus.REQUESTED, PayoutStatus.FAILED):
            raise InvalidTransition(f"Payout {payout_id} is {row.status}.")
        row.status, row.reference, row.updated_at = PayoutStatus.CONFIRMED, reference, now
        row.save(update_fields=["status", "reference", "updated_at"])
        if row.redemption_id and row.redemption is not None:
            _redemption_follows(
                community,
                row.redemption,
                RedemptionStatus.FULFILLED,
                actor,
                now,
                payout_reference=reference,
                fulfilled_by=actor,
                fulfilled_at=now,
            )
        _recorded(
            community, row, actor, "confirm", "payout.confirmed", {"reference": reference}, now
        )
    return row, True


def payout_fail(
    *,
    community: Community,
    payout_id: int,
    reason: str,
    actor: str,
    now: dt.datetime | None = None,
) -> Payout:
    """The bot could not pay: the payout waits for a retry or a cancellation."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked(community, payout_id, PayoutStatus.REQUESTED, "can fail")
        row.status, row.failure, row.updated_at = PayoutStatus.FAILED, reason[:500], now
        row.save(update_fields=["status", "failure", "updated_at"])
        _recorded(community, row, actor, "fail", "payout.failed", {"reason": reason}, now)
    return row


def payout_retry(
    *, community: Community, payout_id: int, actor: str, now: dt.datetime | None = None
) -> Payout:
    """Ask the bot again for a failed payout (announced again as ``payout.requested``)."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked(community, payout_id, PayoutStatus.FAILED, "is retried")
        row.status, row.attempts, row.updated_at = PayoutStatus.REQUESTED, row.attempts + 1, now
        row.save(update_fields=["status", "attempts", "updated_at"])
        _recorded(
            community, row, actor, "retry", "payout.requested", {"attempt": row.attempts}, now
        )
    return row


def payout_cancel(
    *,
    community: Community,
    payout_id: int,
    actor: str,
    reason: str,
    now: dt.datetime | None = None,
) -> Payout:
    """Give up a failed payout. A red packet redemption's points come back to the member (the
    spend given back, naming the payout) and the redemption is cancelled."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked(community, payout_id, PayoutStatus.FAILED, "is cancelled")
        row.status, row.failure, row.updated_at = PayoutStatus.CANCELLED, reason[:500], now
        row.save(update_fields=["status", "failure", "updated_at"])
        if row.redemption_id and row.redemption is not None:
            member = Member.objects.get(pk=row.member_id)  # locked by _locked
            ledger_post(
                member=member,
                points=row.redemption.points,
                kind=EntryKind.SPEND,  # a spend given back: lifetime points are unchanged
                when=now,
                period_day=None,
                reason=f"points returned: payout {row.pk} of redemption "
                f"{row.redemption.client_id} cancelled",
                actor=actor,
            )
            _redemption_follows(
                community,
                row.redemption,
                RedemptionStatus.CANCELLED,
                actor,
                now,
                reason=reason[:500],
                decided_by=actor,
                decided_at=now,
            )
        _recorded(community, row, actor, "cancel", "payout.cancelled", {"reason": reason}, now)
    return row


def payouts(community: Community, status: str | None = None) -> Any:
    rows = Payout.objects.filter(community=community).select_related(
        "member", "redemption", "allocation__campaign"
    )
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("-id")
