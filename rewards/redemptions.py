"""Redemptions: requested (points held, stock reserved) → approved (points spent, stock taken;
a red packet's payout requested) → fulfilled; or rejected / cancelled (points and stock
released). Each step is one transaction, valid only from the right state, audited, announced.

Locks, always in this order: the community row (cash approvals only, as campaign approvals),
the member row (``points.ledger.member_lock``), the redemption row, the variant row. Holds
and spends go through the member row and ``points.ledger.ledger_post``, so a balance never
goes negative nor below what is held, and a point is never spent twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from points import outbox
from points.adjustments import audit_record
from points.exceptions import FieldError, InsufficientPoints, MemberNotFound, ValidationFailed
from points.ledger import ledger_post, member_lock
from points.models import Community, EntryKind, Member
from points.timeutils import today
from rewards.catalog import eligibility, local_month_bounds, reward_by_code, reward_settings
from rewards.exceptions import (
    BudgetExceeded,
    InvalidTransition,
    NotEligible,
    OutOfStock,
    RedemptionConflict,
    RedemptionNotFound,
    SecondApproverRequired,
)
from rewards.models import (
    Campaign,
    CampaignStatus,
    Payout,
    PayoutStatus,
    Redemption,
    RedemptionStatus,
    RewardKind,
    RewardVariant,
)

SHIPPING_FIELDS = ("name", "phone", "address")
QUANTITY_MAX = 100  # items per redemption
REASON_MAX = 500  # the column's size


@dataclass(frozen=True)
class RedemptionRequest:
    client_id: str
    member: str
    reward: str
    quantity: int = 1
    variant: str = ""
    shipping: dict[str, str] | None = None

    def body_hash(self) -> str:
        body = {
            "member": self.member,
            "reward": self.reward,
            "quantity": self.quantity,
            "variant": self.variant,
            "shipping": self.shipping,
        }
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def redemption_body(row: Redemption) -> dict[str, Any]:
    """A redemption as the API answers it (the same bytes on every replay)."""
    return {
        "id": row.client_id,
        "member": row.member.external_id,
        "reward": row.reward.code,
        "variant": row.variant.code if row.variant else None,
        "quantity": row.quantity,
        "points": row.points,
        "value_fen": row.value_fen,
        "status": row.status,
        "awaiting_second_approval": bool(
            row.status == RedemptionStatus.REQUESTED and row.approved_by
        ),
        "approved_by": row.approved_by,
        "second_approved_by": row.second_approved_by,
        "decided_by": row.decided_by,
        "reason": row.reason,
        "payout_reference": row.payout_reference,
        "tracking_number": row.tracking_number,
        "shipping": row.shipping,
        "channel": row.channel,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def redemption_announce(community: Community, row: Redemption, topic: str) -> None:
    payload = redemption_body(row)
    for key in ("created_at", "updated_at"):
        payload[key] = payload[key].isoformat()
    outbox.publish(community, [(topic, payload)])


def _replay(community: Community, item: RedemptionRequest) -> Redemption | None:
    """The stored redemption of this id (None for a new id: one index probe, no joins)."""
    found = (
        Redemption.objects.filter(community=community, client_id=item.client_id)
        .values_list("pk", "body_hash")
        .first()
    )
    if found is None:
        return None
    if found[1] != item.body_hash():
        raise RedemptionConflict(
            f"Redemption '{item.client_id}' was already requested with a different body.",
            [FieldError("id", "conflict", "this id was already used with a different body")],
        )
    return Redemption.objects.select_related("member", "reward", "variant").get(pk=found[0])


def redemption_request(
    *,
    community: Community,
    item: RedemptionRequest,
    actor: str,
    channel: str = "bot",
    now: dt.datetime | None = None,
) -> tuple[Redemption, bool]:
    """Request a redemption: checks eligibility, holds the points and reserves the stock in one
    transaction. Idempotent by ``client_id``: the same body answers the stored redemption
    (``False``); another body is a ``RedemptionConflict``. A refusal stores nothing (the same id
    may be tried again once the member can: docs/rewards.md).

    Locks the member row, then the variant row."""
    if not 1 <= item.quantity <= QUANTITY_MAX:
        raise ValidationFailed(
            "The redemption is invalid.",
            [FieldError("quantity", "out_of_range", f"must be between 1 and {QUANTITY_MAX}")],
        )
    existing = _replay(community, item)
    if existing is not None:
        return existing, False
    reward = reward_by_code(community, item.reward)
    errors: list[FieldError] = []
    variant_id: int | None = None
    variants = {v.code: v for v in reward.variants.all()}
    if reward.kind == RewardKind.MERCH:
        if item.variant not in variants:
            errors.append(
                FieldError("variant", "invalid_choice", f"must be one of {sorted(variants)}")
            )
        else:
            variant_id = variants[item.variant].pk
        shipping = item.shipping or {}
        for name in SHIPPING_FIELDS:
            if not str(shipping.get(name, "")).strip():
                errors.append(FieldError(f"shipping.{name}", "required", "merch ships somewhere"))
    elif item.variant:
        errors.append(FieldError("variant", "invalid", "only merch has variants"))
    if errors:
        raise ValidationFailed("The redemption is invalid.", errors)
    found = Member.objects.filter(community=community, external_id=item.member).first()
    if found is None:
        raise MemberNotFound(f"No member '{item.member}' in this community.")
    now = now or timezone.now()
    try:
        with transaction.atomic():
            member = member_lock(member_id=found.pk)
            # a request with this id that held this lock first: its replay, not a refusal
            if (existing := _replay(community, item)) is not None:
                return existing, False
            variant = (
                RewardVariant.objects.select_for_update().get(pk=variant_id) if variant_id else None
            )
            refusals = eligibility(member, reward, quantity=item.quantity, variant=variant, now=now)
            if refusals:
                codes = {r.code for r in refusals}
                error = (
                    OutOfStock
                    if codes == {"out_of_stock"}
                    else InsufficientPoints
                    if codes == {"insufficient_points"}
                    else NotEligible
                )
                raise error(
                    "; ".join(r.message for r in refusals),
                    [r.as_field_error() for r in refusals],
                )
            points = reward.cost_points * item.quantity
            if variant is not None:
                variant.reserved += item.quantity
                variant.save(update_fields=["reserved"])
            member.held += points
            member.save(update_fields=["held"])
            row = Redemption.objects.create(
                community=community,
                client_id=item.client_id,
                body_hash=item.body_hash(),
                member=member,
                reward=reward,
                variant=variant,
                quantity=item.quantity,
                points=points,
                value_fen=reward.value_fen * item.quantity,
                shipping=item.shipping if reward.kind == RewardKind.MERCH else None,
                channel=channel,
                requested_by=actor,
                created_at=now,
                updated_at=now,
            )
            audit_record(
                community=community,
                actor=actor,
                action="redemption.request",
                target=item.client_id,
                client_id=f"redemption:{item.client_id}",
                data={"member": member.external_id, "reward": reward.code, "points": points},
                now=now,
            )
            redemption_announce(community, row, "redemption.requested")
    except IntegrityError:
        # a concurrent request with this id committed first: answer as a replay of it
        replayed = _replay(community, item)
        if replayed is None:
            raise
        return replayed, False
    return row, True


def redemption_get(community: Community, client_id: str) -> Redemption:
    row = (
        Redemption.objects.select_related("member", "reward", "variant")
        .filter(community=community, client_id=client_id)
        .first()
    )
    if row is None:
        raise RedemptionNotFound(f"No redemption '{client_id}' in this community.")
    return row


def _locked(
    community: Community, client_id: str, found: Redemption | None = None
) -> tuple[Member, Redemption]:
    """The member row, then the redemption row, locked in that order (``found``: the row
    already read, unlocked)."""
    row = found or redemption_get(community, client_id)
    member = member_lock(member_id=row.member_id)
    locked = (
        Redemption.objects.select_for_update(of=("self",))
        .select_related("reward", "variant")
        .get(pk=row.pk)
    )
    locked.member = member
    return member, locked


def _expect(row: Redemption, *allowed: str) -> None:
    if row.status not in allowed:
        raise InvalidTransition(
            f"Redemption '{row.client_id}' is {row.status}; this step needs {' or '.join(allowed)}."
        )


def cash_committed(community: Community, day: dt.date) -> int:
    """Cash committed in the local month of ``day``: approved red packet redemptions and
    approved campaigns (fen)."""
    start, end = local_month_bounds(community, day)
    redeemed = Redemption.objects.filter(
        community=community,
        reward__kind=RewardKind.RED_PACKET,
        approved_at__gte=start,
        approved_at__lt=end,
        status__in=(RedemptionStatus.APPROVED, RedemptionStatus.FULFILLED),
    ).aggregate(s=Sum("value_fen"))["s"]
    campaigns = Campaign.objects.filter(
        community=community,
        status=CampaignStatus.APPROVED,
        approved_at__gte=start,
        approved_at__lt=end,
    ).aggregate(s=Sum("total_fen"))["s"]
    return int(redeemed or 0) + int(campaigns or 0)


def budget_check(community: Community, amount_fen: int, now: dt.datetime) -> None:
    """Refuse ``amount_fen`` more cash this local month beyond the community's budget. Callers
    hold the community row lock, so two approvals cannot both fit the last of a budget."""
    budget = reward_settings(community).monthly_budget_fen
    if budget is None or amount_fen == 0:
        return
    committed = cash_committed(community, today(community.timezone, now))
    if committed + amount_fen > budget:
        raise BudgetExceeded(
            f"{committed} of {budget} fen are committed this month; {amount_fen} more would "
            "exceed the budget."
        )


def _lock_community(community: Community) -> None:
    Community.objects.select_for_update(no_key=True).filter(pk=community.pk).first()


def redemption_approve(
    *, community: Community, client_id: str, actor: str, now: dt.datetime | None = None
) -> Redemption:
    """Approve: above the community's amount the first approval only records the approver and
    a second, different admin completes it. Completing spends the held points
    (``ledger_post`` kind ``spend``), takes the stock, checks the monthly cash budget (under
    the community row lock) and, for a red packet, requests its payout."""
    now = now or timezone.now()
    with transaction.atomic():
        found = redemption_get(community, client_id)
        if found.reward.kind == RewardKind.RED_PACKET:
            # cash: the community row first, as campaign approvals take it (one lock order)
            _lock_community(community)
        member, row = _locked(community, client_id, found)
        _expect(row, RedemptionStatus.REQUESTED)
        threshold = reward_settings(community).second_approval_above_fen
        if row.value_fen > threshold and not row.approved_by:
            row.approved_by, row.approved_at, row.updated_at = actor, now, now
            row.save(update_fields=["approved_by", "approved_at", "updated_at"])
            audit_record(
                community=community,
                actor=actor,
                action="redemption.first_approval",
                target=client_id,
                data={"value_fen": row.value_fen, "threshold_fen": threshold},
                now=now,
            )
            return row
        if row.approved_by and row.approved_by == actor:
            raise SecondApproverRequired(
                f"{actor} gave the first approval; a different admin must give the second."
            )
        if row.reward.kind == RewardKind.RED_PACKET:
            budget_check(community, row.value_fen, now)
        if row.approved_by:
            row.second_approved_by = actor
        else:
            row.approved_by = actor
        member.held -= row.points
        member.save(update_fields=["held"])  # before the debit: held stays within balance
        ledger_post(
            member=member,
            points=-row.points,
            kind=EntryKind.SPEND,
            when=now,
            period_day=None,
            reason=f"redemption {row.client_id}: {row.reward.title}",
            actor=actor,
        )
        if row.variant_id:
            RewardVariant.objects.filter(pk=row.variant_id).update(
                stock=F("stock") - row.quantity, reserved=F("reserved") - row.quantity
            )
        row.status, row.approved_at, row.decided_by, row.decided_at = (
            RedemptionStatus.APPROVED,
            now,
            actor,
            now,
        )
        row.updated_at = now
        row.save()
        audit_record(
            community=community,
            actor=actor,
            action="redemption.approve",
            target=client_id,
            data={"points": row.points, "value_fen": row.value_fen},
            now=now,
        )
        redemption_announce(community, row, "redemption.approved")
        if row.reward.kind == RewardKind.RED_PACKET:
            from rewards.payouts import payout_request

            payout_request(
                community=community,
                member=member,
                amount_fen=row.value_fen,
                redemption=row,
                now=now,
            )
    return row


def _release(
    *,
    community: Community,
    client_id: str,
    actor: str,
    reason: str,
    status: str,
    now: dt.datetime | None,
) -> Redemption:
    now = now or timezone.now()
    with transaction.atomic():
        member, row = _locked(community, client_id)
        _expect(row, RedemptionStatus.REQUESTED)
        member.held -= row.points
        member.save(update_fields=["held"])
        if row.variant_id:
            RewardVariant.objects.filter(pk=row.variant_id).update(
                reserved=F("reserved") - row.quantity
            )
        row.status, row.reason, row.decided_by, row.decided_at, row.updated_at = (
            status,
            reason,
            actor,
            now,
            now,
        )
        row.save()
        audit_record(
            community=community,
            actor=actor,
            action=f"redemption.{'reject' if status == RedemptionStatus.REJECTED else 'cancel'}",
            target=client_id,
            data={"reason": reason, "points_released": row.points},
            now=now,
        )
        redemption_announce(community, row, f"redemption.{status}")
    return row


def rejection_reason_check(reason: str) -> None:
    """A rejection says why, in at most ``REASON_MAX`` characters (the one rule: the single
    step, the bulk decision and the admin all ask here)."""
    if not reason.strip():
        raise ValidationFailed(
            "A rejection needs a reason.", [FieldError("reason", "required", "say why")]
        )
    if len(reason) > REASON_MAX:
        raise ValidationFailed(
            "The reason is too long.",
            [FieldError("reason", "max_length", f"at most {REASON_MAX}")],
        )


def redemption_reject(
    *,
    community: Community,
    client_id: str,
    actor: str,
    reason: str,
    now: dt.datetime | None = None,
) -> Redemption:
    """Reject a pending redemption with a reason: points and stock are released."""
    rejection_reason_check(reason)
    return _release(
        community=community,
        client_id=client_id,
        actor=actor,
        reason=reason,
        status=RedemptionStatus.REJECTED,
        now=now,
    )


def redemption_cancel(
    *,
    community: Community,
    client_id: str,
    actor: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> Redemption:
    """Cancel a pending redemption (the member changed their mind): points and stock released."""
    return _release(
        community=community,
        client_id=client_id,
        actor=actor,
        reason=reason,
        status=RedemptionStatus.CANCELLED,
        now=now,
    )


def redemption_fulfil(
    *,
    community: Community,
    client_id: str,
    actor: str,
    reference: str = "",
    tracking_number: str = "",
    now: dt.datetime | None = None,
) -> Redemption:
    """Mark an approved redemption fulfilled: merch needs a tracking number; a red packet is
    fulfilled by its payout's confirmation (``payout_confirm``) or here with the payout
    reference, which confirms the payout too."""
    now = now or timezone.now()
    with transaction.atomic():
        member, row = _locked(community, client_id)
        _expect(row, RedemptionStatus.APPROVED)
        if row.reward.kind == RewardKind.MERCH and not tracking_number.strip():
            raise ValidationFailed(
                "Merch ships with a tracking number.",
                [FieldError("tracking_number", "required", "merch needs a tracking number")],
            )
        if row.reward.kind == RewardKind.RED_PACKET:
            if not reference.strip():
                raise ValidationFailed(
                    "A red packet is fulfilled with its payout reference.",
                    [FieldError("payout_reference", "required", "the payment's reference")],
                )
            payout = (
                Payout.objects.select_for_update()
                .filter(community_id=row.community_id, redemption=row)
                .first()
            )
            if payout is not None and payout.status != PayoutStatus.CONFIRMED:
                from rewards.payouts import announce_payout

                payout.status, payout.reference, payout.updated_at = (
                    PayoutStatus.CONFIRMED,
                    reference,
                    now,
                )
                payout.save(update_fields=["status", "reference", "updated_at"])
                audit_record(
                    community=community,
                    actor=actor,
                    action="payout.confirm",
                    target=str(payout.pk),
                    data={"reference": reference, "via": "fulfil"},
                    now=now,
                )
                payout.member = member
                payout.redemption = row
                announce_payout(community, payout, "payout.confirmed")
        row.status, row.payout_reference, row.tracking_number = (
            RedemptionStatus.FULFILLED,
            reference,
            tracking_number,
        )
        row.fulfilled_by, row.fulfilled_at, row.updated_at = actor, now, now
        row.save()
        audit_record(
            community=community,
            actor=actor,
            action="redemption.fulfil",
            target=client_id,
            data={"reference": reference, "tracking_number": tracking_number},
            now=now,
        )
        redemption_announce(community, row, "redemption.fulfilled")
    return row
