"""The catalog: rewards and their variants, the community's reward policy, and who may redeem
what (eligibility, with the reason when not)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from incentives.config import Ladder, community_ladder
from incentives.models import Honor, MemberTier
from points.adjustments import audit_record
from points.exceptions import FieldError
from points.models import Community, Member, MemberStatus
from points.timeutils import community_zone, month_start, today
from rewards.exceptions import RewardInvalid, RewardNotFound
from rewards.models import (
    Redemption,
    RedemptionStatus,
    Reward,
    RewardKind,
    RewardSettings,
    RewardVariant,
)

ACTIVE_REDEMPTION = (
    RedemptionStatus.REQUESTED,
    RedemptionStatus.APPROVED,
    RedemptionStatus.FULFILLED,
)


def reward_settings(community: Community) -> RewardSettings:
    """The community's reward policy (the defaults, unsaved, when it has none)."""
    found = RewardSettings.objects.filter(community=community).first()
    return found or RewardSettings(community=community, updated_at=timezone.now(), updated_by="")


SETTINGS_FIELDS = (
    "second_approval_above_fen",
    "monthly_budget_fen",
    "welcome_packet_fen",
    "welcome_daily_budget_fen",
    "featured_reward_fen",
    "member_daily_packets",
    "member_daily_fen",
)


def reward_settings_set(
    *, community: Community, values: dict[str, Any], actor: str
) -> RewardSettings:
    """Replace a community's reward policy and audit it (``reward_settings.update``, with the
    values before and after). Takes the community row lock that cash approvals take before
    checking the budget, so a budget change never lands in the middle of an approval."""
    now = timezone.now()
    with transaction.atomic():
        Community.objects.select_for_update(no_key=True).filter(pk=community.pk).first()
        before = RewardSettings.objects.filter(community=community).values(*SETTINGS_FIELDS).first()
        row, _ = RewardSettings.objects.update_or_create(
            community=community, defaults={**values, "updated_at": now, "updated_by": actor}
        )
        audit_record(
            community=community,
            actor=actor,
            action="reward_settings.update",
            target=community.slug,
            data={"before": before, "after": values},
            now=now,
        )
    return row


def local_month_bounds(community: Community, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) instants of the local month of ``day``."""
    zone = community_zone(community.timezone)
    start = month_start(day)
    following = (start + dt.timedelta(days=32)).replace(day=1)
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=zone),
        dt.datetime.combine(following, dt.time(), tzinfo=zone),
    )


# --- catalog writes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantInput:
    code: str
    label: str
    stock: int


@dataclass(frozen=True)
class RewardInput:
    code: str
    kind: str
    title: str
    cost_points: int
    value_fen: int = 0
    description: str = ""
    image_url: str = ""
    min_tier: str = ""
    honor_months: int = 0
    limit_per_month: int | None = None
    available_from: dt.datetime | None = None
    available_until: dt.datetime | None = None
    active: bool = True
    variants: tuple[VariantInput, ...] = ()


def _validate(community: Community, item: RewardInput) -> None:
    errors: list[FieldError] = []
    codes = [t.code for t in community_ladder(community.pk).tiers]
    if item.min_tier and item.min_tier not in codes:
        errors.append(FieldError("min_tier", "invalid_choice", f"must be one of {codes}"))
    if item.kind == RewardKind.RED_PACKET and item.value_fen <= 0:
        errors.append(FieldError("value_fen", "required", "a red packet needs its amount in fen"))
    if item.kind != RewardKind.MERCH and item.variants:
        errors.append(FieldError("variants", "invalid", "only merch has variants with stock"))
    if item.kind == RewardKind.MERCH and not item.variants:
        errors.append(FieldError("variants", "required", "merch needs at least one variant"))
    if len({v.code for v in item.variants}) != len(item.variants):
        errors.append(FieldError("variants", "duplicate", "variant codes must be unique"))
    if item.available_from and item.available_until and item.available_until <= item.available_from:
        errors.append(FieldError("available_until", "invalid", "must be after available_from"))
    if errors:
        raise RewardInvalid("The reward is invalid.", errors)


def reward_save(*, community: Community, item: RewardInput, actor: str, create: bool) -> Reward:
    """Create a reward (``create``) or replace an existing one's fields and variants' stock.

    Stock can be set but never below what pending redemptions reserve (the database refuses
    ``reserved > stock``, and the variant row is locked while it is changed). Audited.
    """
    _validate(community, item)
    now = timezone.now()
    fields = {
        "kind": item.kind,
        "title": item.title,
        "description": item.description,
        "image_url": item.image_url,
        "cost_points": item.cost_points,
        "value_fen": item.value_fen,
        "min_tier": item.min_tier,
        "honor_months": item.honor_months,
        "limit_per_month": item.limit_per_month,
        "available_from": item.available_from,
        "available_until": item.available_until,
        "active": item.active,
        "updated_at": now,
    }
    try:
        with transaction.atomic():
            if create:
                reward = Reward.objects.create(
                    community=community, code=item.code, created_at=now, **fields
                )
            else:
                found = (
                    Reward.objects.select_for_update()
                    .filter(community=community, code=item.code)
                    .first()
                )
                if found is None:
                    raise RewardNotFound(f"No reward '{item.code}'.")
                reward = found
                if reward.kind != item.kind:
                    raise RewardInvalid(
                        "The kind of a reward cannot change.",
                        [FieldError("kind", "immutable", "create a new reward instead")],
                    )
                for name, value in fields.items():
                    setattr(reward, name, value)
                reward.save()
            for variant in item.variants:
                row = (
                    RewardVariant.objects.select_for_update()
                    .filter(community=community, reward=reward, code=variant.code)
                    .first()
                )
                if row is None:
                    RewardVariant.objects.create(
                        community=community,
                        reward=reward,
                        code=variant.code,
                        label=variant.label,
                        stock=variant.stock,
                    )
                    continue
                if variant.stock < row.reserved:
                    raise RewardInvalid(
                        "Stock below what pending redemptions reserve.",
                        [
                            FieldError(
                                "variants",
                                "below_reserved",
                                f"{variant.code}: {row.reserved} reserved by pending redemptions",
                            )
                        ],
                    )
                row.label, row.stock = variant.label, variant.stock
                row.save(update_fields=["label", "stock"])
            audit_record(
                community=community,
                actor=actor,
                action="reward.create" if create else "reward.update",
                target=item.code,
                data={
                    "cost_points": item.cost_points,
                    "value_fen": item.value_fen,
                    "stock": {v.code: v.stock for v in item.variants},
                },
                now=now,
            )
    except IntegrityError as exc:
        raise RewardInvalid(
            "A reward with this code exists.", [FieldError("code", "duplicate", "already used")]
        ) from exc
    return reward


def reward_by_code(community: Community, code: str) -> Reward:
    found = Reward.objects.filter(community=community, code=code).first()
    if found is None:
        raise RewardNotFound(f"No reward '{code}' in this community.")
    return found


def catalog(community: Community, *, include_inactive: bool = False) -> list[Reward]:
    rows = Reward.objects.filter(community=community).prefetch_related("variants")
    if not include_inactive:
        rows = rows.filter(active=True)
    return list(rows.order_by("cost_points", "code"))


# --- eligibility ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str

    def as_field_error(self) -> FieldError:
        return FieldError("reward", self.code, self.message)


@dataclass
class MemberFacts:
    """What eligibility reads about a member, read once however many rewards are judged:
    their tier level, the months of their honors, their redemptions per reward this month."""

    level: int
    ladder: Ladder
    honor_months: set[dt.date]
    this_month: dict[int, int]


def member_facts(member: Member, now: dt.datetime) -> MemberFacts:
    start, end = local_month_bounds(member.community, today(member.community.timezone, now))
    used = (
        Redemption.objects.filter(
            member=member,
            status__in=ACTIVE_REDEMPTION,
            created_at__gte=start,
            created_at__lt=end,
        )
        .values_list("reward_id")
        .annotate(q=Sum("quantity"))
    )
    return MemberFacts(
        level=MemberTier.objects.filter(community_id=member.community_id, member=member)
        .values_list("level", flat=True)
        .first()
        or 0,
        ladder=community_ladder(member.community_id),
        honor_months=set(
            Honor.objects.filter(community_id=member.community_id, member=member)
            .values_list("roll__month", flat=True)
            .distinct()
        ),
        this_month={reward_id: int(q or 0) for reward_id, q in used},
    )


def eligibility(
    member: Member,
    reward: Reward,
    *,
    quantity: int = 1,
    variant: RewardVariant | None = None,
    now: dt.datetime | None = None,
    facts: MemberFacts | None = None,
) -> list[Refusal]:
    """Every reason the member may not redeem ``quantity`` of the reward now (empty: they may).
    Services call it under the member's row lock; the catalog calls it to explain, with the
    member's ``facts`` read once for the whole catalog."""
    now = now or timezone.now()
    facts = facts or member_facts(member, now)
    refusals: list[Refusal] = []
    if member.status != MemberStatus.ACTIVE:
        refusals.append(Refusal("member_left", "the member has left the community"))
    if not reward.active:
        refusals.append(Refusal("inactive", "this reward is not offered"))
    if reward.available_from and now < reward.available_from:
        refusals.append(
            Refusal("not_yet_available", f"available from {reward.available_from.isoformat()}")
        )
    if reward.available_until and now >= reward.available_until:
        refusals.append(Refusal("no_longer_available", "the availability window has closed"))
    if reward.min_tier:
        ladder = facts.ladder
        levels = {t.code: t.level for t in ladder.tiers}
        if facts.level < levels.get(reward.min_tier, 0):
            name = ladder.tiers[levels[reward.min_tier]].name_en
            refusals.append(Refusal("tier_too_low", f"needs tier {reward.min_tier} ({name})"))
    if reward.honor_months:
        earliest = month_start(today(member.community.timezone, now))
        for _ in range(reward.honor_months):
            earliest = month_start(earliest - dt.timedelta(days=1))
        if not any(month >= earliest for month in facts.honor_months):
            refusals.append(
                Refusal(
                    "not_on_honor_roll",
                    f"only for members on an honor roll of the last {reward.honor_months} months",
                )
            )
    if reward.limit_per_month is not None:
        used = facts.this_month.get(reward.pk, 0)
        if used + quantity > reward.limit_per_month:
            refusals.append(
                Refusal(
                    "monthly_limit",
                    f"{reward.limit_per_month} per member per month; {used} already this month",
                )
            )
    cost = reward.cost_points * quantity
    if member.spendable < cost:
        refusals.append(
            Refusal("insufficient_points", f"costs {cost} points; {member.spendable} spendable")
        )
    if variant is not None and variant.available < quantity:
        refusals.append(Refusal("out_of_stock", f"{variant.available} left of {variant.code}"))
    return refusals


def catalog_for_member(member: Member, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What the member may redeem, each reward with ``eligible`` and the reasons when not (a
    fixed number of queries whatever the catalog's size)."""
    now = now or timezone.now()
    facts = member_facts(member, now)
    rows = []
    for reward in catalog(member.community):
        variants = list(reward.variants.all())
        refusals = eligibility(member, reward, now=now, facts=facts)
        if variants and not any(v.available > 0 for v in variants):
            refusals.append(Refusal("out_of_stock", "every variant is out of stock"))
        rows.append(
            {
                "reward": reward,
                "variants": variants,
                "eligible": not refusals,
                "refusals": refusals,
            }
        )
    return rows
