"""The rewards catalog, redemptions, red packet campaigns and payouts.

Money is integer fen, points are integers. Invariants are database constraints: stock and its
reservations never go negative nor past each other, a redemption's id is unique per community,
an allocation's shares are unique per campaign and index, and a payout is owed once.
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from points.models import Community, Member


class RewardSettings(models.Model):
    """A community's reward policy (defaults when there is no row: ``rewards.policy``)."""

    community = models.OneToOneField(
        Community, on_delete=models.PROTECT, related_name="reward_settings"
    )
    # A redemption or campaign worth more than this (fen) needs two different admins.
    second_approval_above_fen = models.BigIntegerField(default=20_000)
    # Cash a community may commit in one local month (null: no budget).
    monthly_budget_fen = models.BigIntegerField(null=True, blank=True)
    welcome_packet_fen = models.IntegerField(default=0)  # 0: no welcome packet
    welcome_daily_budget_fen = models.BigIntegerField(default=100_000)
    featured_reward_fen = models.IntegerField(default=0)  # 0: no content reward
    member_daily_packets = models.IntegerField(default=5)
    member_daily_fen = models.BigIntegerField(default=20_000)
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=150)

    class Meta:
        verbose_name_plural = "reward settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(second_approval_above_fen__gte=0)
                & Q(welcome_packet_fen__gte=0)
                & Q(featured_reward_fen__gte=0)
                & Q(member_daily_packets__gte=0)
                & Q(member_daily_fen__gte=0)
                & Q(welcome_daily_budget_fen__gte=0)
                & (Q(monthly_budget_fen__isnull=True) | Q(monthly_budget_fen__gte=0)),
                name="rewardsettings_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"reward settings of {self.community_id}"


class RewardKind(models.TextChoices):
    RED_PACKET = "red_packet"
    MERCH = "merch"
    VIRTUAL = "virtual"


class Reward(models.Model):
    """A catalog item: its cost in points, its cash value (a red packet's amount) and who may
    redeem it. Merch has variants with stock; other kinds are unlimited."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    # No index of its own: looked up by community and code (the unique key below).
    code = models.SlugField(max_length=64, db_index=False)
    kind = models.CharField(max_length=16, choices=RewardKind.choices)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    image_url = models.URLField(max_length=500, blank=True)
    cost_points = models.IntegerField()
    value_fen = models.BigIntegerField(default=0)  # a red packet's amount; merch: declared
    min_tier = models.CharField(max_length=32, blank=True)  # a tier code; blank: anyone
    honor_months = models.PositiveSmallIntegerField(default=0)  # honor roll in the last N
    limit_per_month = models.PositiveIntegerField(null=True, blank=True)  # per member
    available_from = models.DateTimeField(null=True, blank=True)
    available_until = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["community", "code"], name="reward_unique_code"),
            models.CheckConstraint(condition=Q(cost_points__gt=0), name="reward_cost_positive"),
            models.CheckConstraint(condition=Q(value_fen__gte=0), name="reward_value_non_neg"),
            models.CheckConstraint(
                condition=~Q(kind="red_packet") | Q(value_fen__gt=0),
                name="reward_red_packet_has_amount",
            ),
            models.CheckConstraint(
                condition=Q(available_from__isnull=True)
                | Q(available_until__isnull=True)
                | Q(available_until__gt=F("available_from")),
                name="reward_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.kind})"


class RewardVariant(models.Model):
    """One variant of a merch item (size, colour) and its stock.

    ``stock`` is what is on the shelf; ``reserved`` the part held by pending redemptions.
    A request reserves, an approval takes (both drop), a rejection releases (reserved drops).
    """

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="variants")
    # No index of its own: looked up by reward and code (the unique key below).
    code = models.SlugField(max_length=64, db_index=False)
    label = models.CharField(max_length=100)
    stock = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "reward", "code"], name="variant_unique_code"
            ),
            models.CheckConstraint(condition=Q(stock__gte=0), name="variant_stock_non_negative"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0) & Q(reserved__lte=F("stock")),
                name="variant_reserved_within_stock",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reward_id}/{self.code}"

    @property
    def available(self) -> int:
        return self.stock - self.reserved


class RedemptionStatus(models.TextChoices):
    REQUESTED = "requested"
    APPROVED = "approved"
    FULFILLED = "fulfilled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Redemption(models.Model):
    """A member's request for a reward: points held and stock reserved until an admin
    decides. Idempotent by ``(community, client_id)``."""

    # No index of its own: the unique (community, client_id) leads with it (a lone community
    # index was chosen by the planner before ANALYZE and scanned the community's redemptions).
    community = models.ForeignKey(
        Community, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    client_id = models.CharField(max_length=128)
    body_hash = models.CharField(max_length=64)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="redemptions")
    variant = models.ForeignKey(
        RewardVariant, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    quantity = models.PositiveIntegerField(default=1)
    points = models.IntegerField()
    value_fen = models.BigIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=RedemptionStatus.choices, default=RedemptionStatus.REQUESTED
    )
    shipping = models.JSONField(null=True, blank=True)
    channel = models.CharField(max_length=16, default="bot")  # bot | member_page
    requested_by = models.CharField(max_length=150)
    approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    second_approved_by = models.CharField(max_length=150, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    payout_reference = models.CharField(max_length=200, blank=True)
    tracking_number = models.CharField(max_length=200, blank=True)
    fulfilled_by = models.CharField(max_length=150, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "client_id"], name="redemption_unique_client_id"
            ),
            models.CheckConstraint(condition=Q(points__gt=0), name="redemption_points_positive"),
            models.CheckConstraint(condition=Q(quantity__gte=1), name="redemption_quantity_pos"),
        ]
        indexes = [
            models.Index(fields=["community", "status", "created_at"]),
            models.Index(fields=["community", "member", "reward", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} ({self.status})"

    @property
    def payout(self) -> Payout | None:
        """The payout of this redemption (at most one), from the prefetched ``payouts`` (when
        reading many: ``prefetch_related(payouts_of(community))``), else by its unique key."""
        return _one_payout(self, self.payouts)


class CampaignStatus(models.TextChoices):
    DRAFT = "draft"
    APPROVED = "approved"
    CANCELLED = "cancelled"


class CampaignKind(models.TextChoices):
    HOLIDAY = "holiday"
    WELCOME = "welcome"
    CONTENT = "content"
    CUSTOM = "custom"


class SplitMethod(models.TextChoices):
    EQUAL = "equal"
    LUCKY = "lucky"  # double-mean
    LUCKY_LINE_CUT = "lucky_line_cut"


class Campaign(models.Model):
    """A red packet campaign: a total split into packets for an audience; a draft until an
    admin approves it (two admins above the community's amount); approval freezes the split."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    client_id = models.CharField(max_length=128)
    body_hash = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=16, choices=CampaignKind.choices)
    title = models.CharField(max_length=200)
    total_fen = models.BigIntegerField()
    packets = models.PositiveIntegerField()
    audience = models.JSONField(default=dict)
    split = models.CharField(max_length=16, choices=SplitMethod.choices)
    min_fen = models.IntegerField(default=1)
    max_fen = models.IntegerField(default=20_000)
    seed = models.CharField(max_length=64)  # hex; the split's randomness is derived from it
    algorithm_version = models.PositiveSmallIntegerField(default=1)
    allocation_digest = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    created_by = models.CharField(max_length=150)
    approved_by = models.CharField(max_length=150, blank=True)
    second_approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "client_id"], name="campaign_unique_client_id"
            ),
            models.CheckConstraint(condition=Q(total_fen__gt=0), name="campaign_total_positive"),
            models.CheckConstraint(
                condition=Q(min_fen__gte=1) & Q(max_fen__gte=F("min_fen")),
                name="campaign_bounds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} ({self.status})"


class Allocation(models.Model):
    """One packet of a campaign: its amount and, once approved, the member it goes to."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="allocations")
    index = models.PositiveIntegerField()
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    amount_fen = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "campaign", "index"], name="allocation_unique_index"
            ),
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="allocation_positive"),
        ]
        indexes = [models.Index(fields=["community", "member"])]

    def __str__(self) -> str:
        return f"{self.campaign_id}#{self.index}: {self.amount_fen}"

    @property
    def payout(self) -> Payout | None:
        """The payout of this packet (at most one), from the prefetched ``payouts`` (when
        reading many: ``prefetch_related(payouts_of(community))``), else by its unique key."""
        return _one_payout(self, self.payouts)


def _one_payout(row: Redemption | Allocation, payouts: models.Manager[Payout]) -> Payout | None:
    cache = getattr(row, "_prefetched_objects_cache", {})
    if "payouts" in cache:
        return next(iter(cache["payouts"]), None)
    # The community leads the unique key (there is no index on the source alone).
    return payouts.filter(community_id=row.community_id).first()


def payouts_of(community: Community | int) -> models.Prefetch:
    """Prefetch the ``payouts`` of many redemptions or packets of one community (the query
    names the community, so it probes the unique keys that lead with it)."""
    return models.Prefetch("payouts", queryset=Payout.objects.filter(community=community))


class PayoutStatus(models.TextChoices):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Payout(models.Model):
    """Cash owed to a member, handed to the paying bot (``payout.requested``) and confirmed by
    its callback. One per approved red packet redemption or allocated packet."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    amount_fen = models.BigIntegerField()
    # At most one payout per redemption and per allocation: the unique keys below, led by the
    # community (so foreign keys, not one-to-one fields: ``Redemption.payout`` and
    # ``Allocation.payout`` read the one row of ``payouts``, which callers prefetch).
    redemption = models.ForeignKey(
        Redemption,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payouts",
        related_query_name="payout",
        db_index=False,
    )
    allocation = models.ForeignKey(
        Allocation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payouts",
        related_query_name="payout",
        db_index=False,
    )
    status = models.CharField(
        max_length=16, choices=PayoutStatus.choices, default=PayoutStatus.REQUESTED
    )
    reference = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    failure = models.CharField(max_length=500, blank=True)
    local_day = models.DateField()  # the community's day it was requested (daily limits)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # NULLs are distinct: the unique keys bind only the rows that have the source.
            models.UniqueConstraint(
                fields=["community", "redemption"], name="payout_unique_redemption"
            ),
            models.UniqueConstraint(
                fields=["community", "allocation"], name="payout_unique_allocation"
            ),
            models.CheckConstraint(condition=Q(amount_fen__gt=0), name="payout_positive"),
            models.CheckConstraint(
                condition=Q(redemption__isnull=False) | Q(allocation__isnull=False),
                name="payout_has_a_source",
            ),
        ]
        indexes = [
            models.Index(fields=["community", "status", "created_at"]),
            models.Index(fields=["community", "member", "local_day"]),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk}: {self.amount_fen} fen ({self.status})"
