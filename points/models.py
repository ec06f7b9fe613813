"""The ledger's tables. Every table is keyed by community first so that it can be partitioned
or distributed by community later. Invariants live in database constraints, not only in Python.

Foreign keys whose column already leads a composite index are declared ``db_index=False``: the
hot tables get one index fewer to maintain per insert for each (rows are never deleted, so no
foreign-key check needs them either).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from rest_framework_api_key.models import AbstractAPIKey


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"Unknown time zone: {value}") from exc


class EventType(models.TextChoices):
    """Built-in event types; communities may add custom ones in their rule set."""

    JOIN = "join"
    LEAVE = "leave"
    CHECK_IN = "check_in"
    MESSAGE = "message"
    SHARE = "share"
    UGC_POST = "ugc_post"
    CONTENT_FEATURED = "content_featured"
    REACTION = "reaction"
    INVITE = "invite"
    HELP = "help"
    PEER_SCORE = "peer_score"


class Scope(models.TextChoices):
    EVENTS_WRITE = "events:write"
    MEMBERS_READ = "members:read"
    REWARDS_WRITE = "rewards:write"
    ADMIN = "admin"


class Community(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(
        max_length=64, default="Asia/Shanghai", validators=[validate_timezone]
    )
    # Bumped in the same transaction as every new rule set version, so that processes can
    # cache the (immutable) versions and know for free (the row comes with the API key) when
    # their cache is stale.
    rules_revision = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "communities"

    def __str__(self) -> str:
        return self.slug


class CommunityApiKey(AbstractAPIKey):
    """A bot's key: one community, a set of scopes; only a SHA-512 hash of it is stored."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="api_keys")
    scopes = ArrayField(models.CharField(max_length=32, choices=Scope.choices), default=list)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class RuleSet(models.Model):
    """One immutable version of a community's rules; an event is scored by the version whose
    ``effective_from`` is the latest one not after the event's ``occurred_at``."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="rule_sets")
    version = models.PositiveIntegerField()
    effective_from = models.DateTimeField()
    rules = models.JSONField()
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["community", "version"], name="ruleset_unique_version"),
        ]
        indexes = [models.Index(fields=["community", "effective_from"])]

    def __str__(self) -> str:
        return f"{self.community_id} v{self.version}"


class MemberStatus(models.TextChoices):
    ACTIVE = "active"
    LEFT = "left"


class Member(models.Model):
    """A member of one community, and their balance row.

    The balance lives on the member row on purpose: scoring locks this one row first, which
    serialises all of a member's awards, and the balance is updated in the same statement
    family. ``held`` is the part reserved by pending redemptions and is not spendable.
    """

    community = models.ForeignKey(
        Community, on_delete=models.PROTECT, db_index=False, related_name="members"
    )
    external_id = models.CharField(max_length=64)
    display_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=16, choices=MemberStatus.choices, default=MemberStatus.ACTIVE
    )
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    lifetime_points = models.BigIntegerField(default=0)
    # Points taken back (a reversal) that the balance could not cover: settled from the
    # member's next awards before they become spendable. The balance itself never goes below 0.
    owed = models.BigIntegerField(default=0, db_default=0)
    # Consecutive local days with a check-in, ending on ``streak_last_day``.
    streak_days = models.IntegerField(default=0, db_default=0)
    streak_last_day = models.DateField(null=True, blank=True)
    joined_at = models.DateTimeField()
    left_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "external_id"], name="member_unique_external_id"
            ),
            models.CheckConstraint(condition=Q(balance__gte=0), name="member_balance_non_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="member_held_non_negative"),
            models.CheckConstraint(condition=Q(owed__gte=0), name="member_owed_non_negative"),
            models.CheckConstraint(
                condition=Q(held__lte=models.F("balance")), name="member_held_within_balance"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.community_id})"

    @property
    def spendable(self) -> int:
        return self.balance - self.held


class EventKey(models.Model):
    """One row per event ever accepted, kept when the event's month is archived: the
    exactly-once guarantee. ``points_event`` is partitioned by month of ``occurred_at`` and a
    unique key there would have to contain ``occurred_at`` (a replay with another time would be
    stored twice), so ``(community, client_id)`` is unique here instead. Ingestion writes the
    key and the event in one statement; a trigger on ``points_event`` writes the key of an
    event inserted any other way, so no writer can skip it (docs/scaling.md, decision 49).
    Ledger entries and once-only keys reference this table, not the partitioned one."""

    id = models.BigIntegerField(primary_key=True)  # the event's id
    # Implied: every key is written with its event, whose member is checked (decision 56).
    community = models.ForeignKey(
        Community, on_delete=models.PROTECT, db_index=False, db_constraint=False, related_name="+"
    )
    client_id = models.CharField(max_length=128)
    occurred_at = models.DateTimeField()  # names the event's partition

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "client_id"], name="eventkey_unique_client_id"
            ),
        ]

    def __str__(self) -> str:
        return self.client_id


class EventQuerySet(models.QuerySet["Event"]):
    def by_client_id(self, community: Community | int, client_id: str) -> EventQuerySet:
        """The community's event with this id, found through its key: one probe of the key
        table, then of the one partition its ``occurred_at`` names."""
        key = EventKey.objects.filter(community=community, client_id=client_id)
        return self.filter(
            community=community,
            pk=models.Subquery(key.values("id")[:1]),
            occurred_at=models.Subquery(key.values("occurred_at")[:1]),
        )


class Event(models.Model):
    """A contribution event as a bot posted it, with how it was scored the first time.

    Partitioned by month of ``occurred_at`` (migration 0015; ``points.history`` creates the
    months ahead and archives old ones). ``(community, client_id)`` is unique through
    ``EventKey``: that is the exactly-once guarantee. ``body_hash`` is the hash of the
    canonical body, so that a replay with a different body is a conflict.
    """

    community = models.ForeignKey(
        Community,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,  # implied by the member's (decision 52)
        related_name="events",
    )
    client_id = models.CharField(max_length=128)
    # Checked once per statement by a trigger, with the community (decision 56).
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,
        related_name="events",
    )
    type = models.CharField(max_length=40)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    local_day = models.DateField()
    target = models.CharField(max_length=128, blank=True)
    content = models.JSONField(null=True, blank=True)
    score = models.SmallIntegerField(null=True, blank=True)
    group = models.CharField(max_length=128, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    body_hash = models.CharField(max_length=64)
    rule_version = models.PositiveIntegerField()
    points = models.IntegerField(default=0)
    # How the event was scored (``points.scoring.ScoringRecord``, versioned, internal):
    # corrections read it, and the public answer is rendered from it on every replay.
    scoring = models.JSONField()
    # The member the event's points go to (the poster, a reacted-to author, an inviter); null
    # when the event pays nobody. Re-scoring after a reversal looks events up by it.
    beneficiary = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,  # checked per statement, like ``member`` (decision 56)
        null=True,
        blank=True,
        related_name="+",
    )
    # The content's fingerprint, kept only on counted events: the recycled-content gate looks
    # for the member's earlier counted events with the same hash.
    content_hash = models.CharField(max_length=128, blank=True, db_default="")
    reversed_at = models.DateTimeField(null=True, blank=True)
    reversal = models.JSONField(null=True, blank=True)

    objects = EventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=1, score__lte=5),
                name="event_score_1_to_5",
            ),
        ]
        indexes = [
            models.Index(fields=["community", "member", "occurred_at"]),
            models.Index(fields=["community", "type", "occurred_at"]),
            models.Index(fields=["beneficiary", "local_day"], name="event_beneficiary_day"),
            models.Index(
                fields=["member", "content_hash", "occurred_at"],
                name="event_member_content_hash",
                condition=~Q(content_hash=""),
            ),
            # An invitee's inviter is found by the invite events that name them.
            models.Index(
                fields=["community", "type", "target"],
                name="event_type_target",
                condition=~Q(target=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client_id} {self.type}"


class EntryKind(models.TextChoices):
    AWARD = "award"
    REVERSAL = "reversal"
    ADJUSTMENT = "adjustment"
    EXPIRY = "expiry"
    SPEND = "spend"
    # Pays back ``Member.owed`` out of a new award, in the same transaction as the award.
    SETTLEMENT = "settlement"


class LedgerEntry(models.Model):
    """One signed change of a member's balance. Append-only: a database trigger refuses
    UPDATE and DELETE; corrections are new entries of kind ``reversal``.

    Partitioned by month of ``created_at`` (migration 0015). A statement trigger checks that
    ``member`` and ``event`` (against ``EventKey``: the events table is partitioned) belong to
    the entry's community, once per statement rather than row by row (decision 56)."""

    community = models.ForeignKey(
        Community,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,  # implied by the member's (decision 52)
        related_name="+",
    )
    # Checked once per statement by a trigger, with the community (decision 56).
    member = models.ForeignKey(
        Member,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,
        related_name="entries",
    )
    event = models.ForeignKey(
        Event,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="entries",
        db_constraint=False,  # checked against points_eventkey per statement (decision 56)
    )
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    points = models.IntegerField()
    balance_after = models.BigIntegerField()
    rule = models.CharField(max_length=100, blank=True)
    rule_version = models.PositiveIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    # Who made a manual entry: "user:<username>" (admin site) or "key:<prefix>" (API key).
    actor = models.CharField(max_length=150, blank=True, db_default="")
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="entry_points_non_zero"),
            models.CheckConstraint(
                condition=Q(balance_after__gte=0), name="entry_balance_after_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(event__isnull=False) | ~Q(reason=""),
                name="entry_traceable_to_event_or_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["community", "member", "-id"]),
            models.Index(fields=["community", "id"], name="entry_community_id"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.points:+d} ({self.kind})"


# The tally types the incentive jobs read by community and day (tiers, honor rolls, refresh).
JOB_TALLY_TYPES = ("*", "check_in", "content_featured", "help")


class DailyTally(models.Model):
    """What a member earned per event type (and in total, type ``*``) on one local day.

    Caps and first-per-day rules read and update these rows under the member's row lock. A
    week's or month's figures (weekly and monthly caps, monthly quotas) are summed from the
    days when a rule needs them, so each event writes two tally rows, not four.
    """

    TOTAL = "*"

    community = models.ForeignKey(
        Community,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,  # implied by the member's (decision 52)
        related_name="+",
    )
    member = models.ForeignKey(Member, on_delete=models.PROTECT, db_index=False, related_name="+")
    day = models.DateField()
    event_type = models.CharField(max_length=40)
    count = models.IntegerField(default=0)
    points = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member", "day", "event_type"],
                name="tally_unique_member_day_type",
            ),
        ]
        indexes = [
            # The incentive jobs read these types for a whole community over a window. Partial
            # on purpose: a member's own lookups (caps, re-scoring) name no such type, so the
            # planner can only take the unique key for them, even on stale statistics (with
            # a plain (community, day) index it took that one and read every member's days).
            models.Index(
                fields=["community", "day"],
                name="tally_jobs_community_day",
                condition=Q(event_type__in=JOB_TALLY_TYPES),
            )
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.day} {self.event_type}: {self.points}"


class JobRun(models.Model):
    """One run of a scheduled job for one community and period (the re-run fence)."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    job = models.CharField(max_length=64)
    period = models.CharField(max_length=32)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "job", "period"], name="jobrun_unique_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.period}"


class PeriodKind(models.TextChoices):
    ALL_TIME = "all_time"
    MONTH = "month"
    WEEK = "week"


class PeriodTotal(models.Model):
    """Points a member earned in one period (all time, a local month, a local week).

    Kept up to date in the transaction that posts the entries, under the member's row lock, so
    leaderboards never aggregate the ledger per request. ``active`` is false while the member
    has left: left members are not ranked.
    """

    ALL_TIME_START = dt.date(2000, 1, 1)

    community = models.ForeignKey(
        Community,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,  # implied by the member's (decision 52)
        related_name="+",
    )
    member = models.ForeignKey(
        Member, on_delete=models.PROTECT, db_index=False, related_name="period_totals"
    )
    kind = models.CharField(max_length=16, choices=PeriodKind.choices)
    start = models.DateField()
    points = models.BigIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member", "kind", "start"],
                name="periodtotal_unique_member_period",
            ),
        ]
        indexes = [
            # A period's ranked members, for the snapshot build and the honor roll. ``points``
            # is in no index, so the per-event update of a total is a HOT update (decision 54).
            models.Index(
                fields=["community", "kind", "start"],
                name="periodtotal_period",
                condition=Q(active=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.kind} {self.start}: {self.points}"


class RankSnapshot(models.Model):
    """A member's competition rank (1, 2, 2, 4) in one period, as of ``built_at``.

    Rebuilt set-based (one ``rank() OVER`` per period) by a Celery job at most every minute
    when the period changed, so a rank lookup is one index probe whatever the member's rank.
    """

    # Derived data, rebuilt whole: no foreign-key constraints (their checks at COMMIT were most
    # of a million-row rebuild) and no index beyond the two unique ones.
    community = models.ForeignKey(
        Community,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    kind = models.CharField(max_length=16, choices=PeriodKind.choices)
    start = models.DateField()
    member = models.ForeignKey(
        Member, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    rank = models.IntegerField()
    position = models.IntegerField()
    points = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "kind", "start", "member"], name="ranksnapshot_unique_member"
            ),
            models.UniqueConstraint(
                fields=["community", "kind", "start", "position"],
                name="ranksnapshot_unique_position",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.kind} {self.start}: #{self.rank}"


class RankBuild(models.Model):
    """When a period's snapshot was last built, and from which ledger position."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=PeriodKind.choices)
    start = models.DateField()
    built_at = models.DateTimeField()
    ledger_high_water = models.BigIntegerField(default=0)
    ranked = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "kind", "start"], name="rankbuild_unique_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.community_id} {self.kind} {self.start} @ {self.built_at}"


class AwardOnce(models.Model):
    """A bonus that may be paid once only (a reaction per reacting member and content, a
    featured post, an invitee, a streak day, a month's quota): the unique key is the guard.
    Deleted when the award is reversed, so that it can be earned again."""

    community = models.ForeignKey(
        Community,
        on_delete=models.PROTECT,
        db_index=False,
        db_constraint=False,  # implied by the member's (decision 52)
        related_name="+",
    )
    key = models.CharField(max_length=300)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, db_index=False, related_name="+")
    # REFERENCES points_eventkey (id), added by migration 0015 (the events are partitioned).
    event = models.ForeignKey(
        Event, on_delete=models.PROTECT, related_name="+", db_constraint=False
    )
    kind = models.CharField(max_length=32)
    # Shown on the member as an achievement when set (e.g. a month's check-in quota).
    achievement = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["community", "key"], name="awardonce_unique_key"),
        ]
        indexes = [models.Index(fields=["member", "kind"])]

    def __str__(self) -> str:
        return self.key


class AuditLog(models.Model):
    """Who did what, when and why: manual adjustments, bulk imports, rule set versions.
    Append-only in the database (a trigger refuses UPDATE and DELETE), shown read-only in the
    admin. ``client_id`` makes an API adjustment idempotent per community and action."""

    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="+")
    actor = models.CharField(max_length=150)  # "user:<username>", "key:<prefix>"
    action = models.CharField(max_length=64)  # "adjustment.create", "rules.publish", …
    target = models.CharField(max_length=200, blank=True)
    client_id = models.CharField(max_length=128, blank=True)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "action", "client_id"],
                name="auditlog_unique_client_id",
                condition=~Q(client_id=""),
            ),
        ]
        indexes = [models.Index(fields=["community", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"


class HistoryArchive(models.Model):
    """A month of partitioned history taken off the primary (``points.history``): detached,
    copied to a file whose SHA-256 and row count are kept here, then dropped. Not per
    community: a partition holds every community's month."""

    class State(models.TextChoices):
        DETACHED = "detached"  # off the table, still in the database
        ARCHIVED = "archived"  # copied to ``path`` and dropped

    table = models.CharField(max_length=64)  # "points_event", "points_ledgerentry"
    month = models.DateField()  # first day of the UTC month
    state = models.CharField(max_length=16, choices=State.choices)
    rows = models.BigIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    detached_at = models.DateTimeField()
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["table", "month"], name="historyarchive_unique_month")
        ]

    def __str__(self) -> str:
        return f"{self.table} {self.month:%Y-%m} ({self.state})"


class LedgerCheckpoint(models.Model):
    """What a member's archived ledger months added up to, so that the checks and jobs that
    sum a member's whole ledger (reconcile, expiry) still see every point after the months
    are gone: written in the transaction that detaches a ledger month."""

    community = models.ForeignKey(
        Community, on_delete=models.PROTECT, db_index=False, related_name="+"
    )
    member = models.ForeignKey(Member, on_delete=models.PROTECT, db_index=False, related_name="+")
    through = models.DateField()  # entries created before this day (UTC) are summed here
    net = models.BigIntegerField(default=0)  # Σ points
    credits = models.BigIntegerField(default=0)  # Σ positive points of the expiring kinds
    debits = models.BigIntegerField(default=0)  # -Σ negative points
    balance_after = models.BigIntegerField(default=0)  # of the member's last archived entry

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["community", "member"], name="ledgercheckpoint_unique_member"
            )
        ]

    def __str__(self) -> str:
        return f"{self.member_id} through {self.through}: {self.net}"
