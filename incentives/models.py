"""What the incentive jobs compute from the ledger: roles, tiers, KOC candidates, honor rolls.

Every table is keyed by community first (like ``points``), so that it can be partitioned or
distributed by community: every unique key leads with ``community`` (docs/scaling.md, "Keyed
by community"; ``tests/test_community_keys.py`` checks it). Invariants are database
constraints; history tables (tier changes, honor rolls and their honors) are append-only by
trigger (migration ``0002``).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from points.models import Community, Member


class Role(models.TextChoices):
    """A member's role, set by an admin. KOC detection looks only at ordinary members; owners,
    staff and KOLs are the trusted seeds of its influence graph."""

    MEMBER = "member"
    OWNER = "owner"
    STAFF = "staff"
    KOL = "kol"


class MemberRole(models.Model):
    """A member's role other than ``member`` (no row: an ordinary member)."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    # One row per member: the unique (community, member) below (it leads with the community,
    # so that the table can be distributed by community; it is also the member's index).
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    role = models.CharField(max_length=16, choices=Role.choices)
    set_by = models.CharField(max_length=150)
    set_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["community", "role"])]
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member"], name="memberrole_unique_member"
            ),
            models.CheckConstraint(condition=~Q(role="member"), name="memberrole_not_plain"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.role}"


class IncentiveConfig(models.Model):
    """A community's tier ladder and KOC thresholds (defaults when there is no row).

    Validated by ``incentives.config.parse_config``; each change is audited in ``AuditLog``.
    """

    community = models.OneToOneField(
        Community, on_delete=models.PROTECT, related_name="incentive_config"
    )
    tiers = models.JSONField()
    koc = models.JSONField(default=dict)
    # Member refresh (换血) thresholds and assessment defaults (weights, pass mark):
    # ``incentives.refresh`` and ``incentives.assessments`` read them, defaults when empty.
    refresh = models.JSONField(default=dict)
    assessment = models.JSONField(default=dict)
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=150)

    def __str__(self) -> str:
        return f"incentives of {self.community_id}"


class MemberTier(models.Model):
    """A member's current tier (no row: the ladder's first tier). ``level`` indexes the ladder.

    ``locked`` (by an admin) keeps the tier whatever the job finds.
    """

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    # One row per member: the unique (community, member) below.
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    level = models.PositiveSmallIntegerField()
    code = models.CharField(max_length=32)
    since = models.DateTimeField()
    locked = models.BooleanField(default=False)
    locked_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member"], name="membertier_unique_member"
            ),
        ]
        indexes = [models.Index(fields=["community", "level"])]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.code}"


class TierChangeKind(models.TextChoices):
    PROMOTION = "promotion"
    DEMOTION = "demotion"
    LOCK = "lock"
    UNLOCK = "unlock"
    ADMIN = "admin"


class TierChange(models.Model):
    """One change of a member's tier, with its reason and the figures behind it. Append-only.

    ``run`` is the job period (``tiers:<YYYY-MM-DD>``) for changes made by the job, so that a
    re-run of one period can never record a member's change twice.
    """

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=TierChangeKind.choices)
    from_level = models.PositiveSmallIntegerField()
    to_level = models.PositiveSmallIntegerField()
    from_code = models.CharField(max_length=32)
    to_code = models.CharField(max_length=32)
    reason = models.CharField(max_length=500)
    figures = models.JSONField(default=dict)
    run = models.CharField(max_length=48, blank=True)
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member", "run"],
                name="tierchange_once_per_run",
                condition=~Q(run=""),
            ),
        ]
        indexes = [
            models.Index(fields=["community", "member", "-created_at"]),
            models.Index(fields=["community", "kind", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.from_code} → {self.to_code}"


class KocStatus(models.TextChoices):
    CANDIDATE = "candidate"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"


class KocCandidate(models.Model):
    """An ordinary member the KOC job found, with the figures that explain why.

    One row per member: a later run refreshes the figures; an admin's decision (confirmed or
    dismissed) stays. A confirmed KOC is a trusted seed of the next runs.
    """

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    # One row per member: the unique (community, member) below.
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=16, choices=KocStatus.choices, default=KocStatus.CANDIDATE)
    window_end = models.DateField()
    window_days = models.PositiveSmallIntegerField()
    score = models.FloatField()
    robust_z = models.FloatField()
    trust_rank = models.FloatField()
    h_index = models.IntegerField()
    distinct_reactors = models.IntegerField()
    reciprocal_reactors = models.IntegerField()
    distinct_days = models.IntegerField()
    figures = models.JSONField(default=dict)
    detected_at = models.DateTimeField()
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member"], name="koccandidate_unique_member"
            ),
        ]
        indexes = [models.Index(fields=["community", "status", "-score"])]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.status}"


class HonorRoll(models.Model):
    """A month's published honor roll (光荣榜). Immutable once published: one per community
    and month (the unique key makes a re-run or a concurrent run return the same roll)."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    month = models.DateField()  # the first day of the local month
    published_at = models.DateTimeField()
    categories = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["community", "month"], name="honorroll_unique_month"),
        ]

    def __str__(self) -> str:
        return f"{self.community_id} {self.month:%Y-%m}"


class Honor(models.Model):
    """One member's place in one category of a published roll (for member pages)."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    roll = models.ForeignKey(HonorRoll, on_delete=models.PROTECT, related_name="honors")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    category = models.CharField(max_length=32)
    rank = models.IntegerField()
    value = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "roll", "category", "member"],
                name="honor_unique_member_category",
            ),
        ]
        indexes = [models.Index(fields=["community", "member"])]

    def __str__(self) -> str:
        return f"{self.member_id} {self.category} #{self.rank}"


class RefreshStatus(models.TextChoices):
    AT_RISK = "at_risk"  # flagged once: warned, with a recovery window
    TO_REFRESH = "to_refresh"  # still flagged at the next run
    CONFIRMED = "confirmed"  # an admin confirmed: a bot removes them and posts `leave`
    SPARED = "spared"  # an admin kept them


class RefreshCandidate(models.Model):
    """A member the monthly refresh (换血) job flagged for one period, with the figures behind
    it. One row per member and period: a re-run of the period changes nothing."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    period = models.CharField(max_length=7)  # YYYY-MM
    status = models.CharField(max_length=16, choices=RefreshStatus.choices)
    speaking_days = models.IntegerField()
    check_in_days = models.IntegerField()
    window_days = models.IntegerField()
    figures = models.JSONField(default=dict)
    flagged_at = models.DateTimeField()
    recovery_until = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member", "period"], name="refresh_unique_member_period"
            ),
        ]
        indexes = [models.Index(fields=["community", "period", "status"])]

    def __str__(self) -> str:
        return f"{self.member_id} {self.period}: {self.status}"


class AssessmentStatus(models.TextChoices):
    OPEN = "open"
    CLOSED = "closed"


class Assessment(models.Model):
    """An assessment round (群门槛 / review): a set of members, a window in which peer scores
    count, the weights and the pass mark, frozen when the round opens."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    client_id = models.CharField(max_length=128)
    title = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    w_peer = models.FloatField()
    w_owner = models.FloatField()
    w_activity = models.FloatField(default=0.0)
    pass_mark = models.FloatField()
    activity = models.JSONField(default=dict)  # which events count and how much
    status = models.CharField(
        max_length=16, choices=AssessmentStatus.choices, default=AssessmentStatus.OPEN
    )
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "client_id"], name="assessment_unique_client_id"
            ),
            models.CheckConstraint(
                condition=models.Q(window_end__gt=models.F("window_start")),
                name="assessment_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} ({self.status})"


class AssessmentMember(models.Model):
    """A member assessed in a round, and the owner's score for them (1-5) once given."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    assessment = models.ForeignKey(Assessment, on_delete=models.PROTECT, related_name="members")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    owner_score = models.SmallIntegerField(null=True, blank=True)
    owner_scored_by = models.CharField(max_length=150, blank=True)
    owner_scored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "assessment", "member"], name="assessmentmember_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(owner_score__isnull=True)
                | models.Q(owner_score__gte=1, owner_score__lte=5),
                name="assessmentmember_owner_score_1_to_5",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.assessment_id}: {self.member_id}"
