"""Red packet campaigns: a total (fen) split into packets for an audience, a draft until an
admin approves it, then one payout per packet handed to the paying bot.

- **Create** (``campaign_create``) resolves the audience to its members now (set-based SQL,
  active members only, sorted by id), checks feasibility first, draws a 32-byte seed, computes
  the split (``rewards.splits``) and stores it as ``Allocation`` rows: index ``i`` (from 1)
  goes to the ``i``-th member. The digest of the split is stored on the campaign. Idempotent
  by ``client_id``: the same body answers the stored campaign, another body is a conflict.
  A number of ``packets`` alone is not enough: this service has no claim step, so the members
  are always named by an ``audience``; ``packets``, when sent too, must equal its size.
- **Approve** (``campaign_approve``) under the community row lock, then the campaign row lock
  (always in that order): from draft only; above the community's amount a first approval
  only records the approver and a second, different admin completes it. Completing re-checks
  the digest (the frozen split is the one created), the monthly cash budget, and each
  member's daily limits across campaigns (count and fen, as ``member_paid_today`` counts
  them). A member over a limit, or who has left since, is skipped: the allocation keeps its
  member and amount but gets no payout, and the result says who and why. The budget counts
  the campaign's whole total (``cash_committed``), skipped packets included: the
  conservative side. Payouts are inserted in bulk and announced in one outbox publish.
  Approving twice, even at the same moment, pays once: the second waits for the lock and
  finds the campaign approved (``InvalidTransition``).
- **Cancel** (``campaign_cancel``): a draft (first approval or not) only.
- **Automatic campaigns**: a welcome packet on a member's first ``join`` and a content reward
  on each counted ``content_featured`` (``auto_campaigns_scan``, every minute from beat). Each
  is a one-packet campaign whose id says what it is for (``welcome:<member>``,
  ``featured:<event>``), so the unique id makes it once only. It is approved at once by
  ``job:rewards`` when it is at most the second-approval amount and fits the monthly budget,
  the daily welcome budget (welcome packets) and the member's daily limits; otherwise it stays
  a draft for an admin, and the audit log says why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Concat
from django.utils import timezone

from incentives.config import community_ladder
from incentives.models import Honor, MemberTier
from points import outbox
from points.adjustments import audit_record
from points.exceptions import EventNotFound, FieldError
from points.models import (
    AuditLog,
    AwardOnce,
    Community,
    Event,
    EventType,
    JobRun,
    Member,
    MemberStatus,
)
from points.timeutils import community_zone, today
from rewards.catalog import reward_settings
from rewards.exceptions import (
    AllocationMismatch,
    BudgetExceeded,
    CampaignConflict,
    CampaignInvalid,
    CampaignNotFound,
    InvalidTransition,
    SecondApproverRequired,
)
from rewards.models import (
    Allocation,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Payout,
    PayoutStatus,
    RewardSettings,
    SplitMethod,
    payouts_of,
)
from rewards.payouts import payout_body
from rewards.redemptions import _lock_community, budget_check
from rewards.splits import (
    ALGORITHM_VERSION,
    DEFAULT_MAX_FEN,
    DEFAULT_MIN_FEN,
    LuckyMethod,
    SplitInfeasible,
    allocation_digest,
    check_feasible,
    new_seed,
    split_equal,
    split_lucky,
)

MAX_PACKETS = 100_000
MAX_TOTAL_FEN = 10**11  # a billion yuan: far above any budget, far below bigint
MAX_ACTIVE_DAYS = 3660
EARLIEST_DATE = dt.date(1970, 1, 1)
AUDIENCE_FILTERS = (
    "active_days",
    "min_tier",
    "honor_roll",
    "newcomers_since",
    "featured_authors_since",
)
AUTO_ACTOR = "job:rewards"
AUTO_PREFIXES = ("welcome:", "featured:")
AUTO_SCAN_JOB = "rewards.auto_campaigns"
AUTO_SCAN_PERIOD = "cursor"
# Joins and features that happened longer ago than this when first scanned (a backfill, or
# the first scan after the feature is switched on) earn nothing automatically.
AUTO_WINDOW = dt.timedelta(days=1)
# The scan cursor only moves past events received this long ago, so an ingest transaction
# still open when a scan runs (a lower id committed after a higher one) is seen by a later
# scan; the once-only ids make the overlap harmless.
SCAN_SETTLE = dt.timedelta(minutes=5)
BULK_BATCH = 2_000
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LUCKY_METHOD: dict[str, LuckyMethod] = {
    SplitMethod.LUCKY: "double_mean",
    SplitMethod.LUCKY_LINE_CUT: "line_cut",
}
_BOUND_FIELD = {
    "packets": "packets",
    "min_fen": "min_fen",
    "max_fen": "max_fen",
    "total_below_min": "total_fen",
    "total_above_max": "total_fen",
}


# --- reading -------------------------------------------------------------------------------------


def campaign_get(community: Community, client_id: str) -> Campaign:
    row = Campaign.objects.filter(community=community, client_id=client_id).first()
    if row is None:
        raise CampaignNotFound(f"No campaign '{client_id}' in this community.")
    return row


def campaign_payout_totals(campaign: Campaign) -> tuple[int, int]:
    """Packets paid out (payouts requested, in any state) and their fen."""
    found = Payout.objects.filter(
        community_id=campaign.community_id, allocation__campaign=campaign
    ).aggregate(n=Count("id"), s=Sum("amount_fen"))
    return int(found["n"] or 0), int(found["s"] or 0)


def campaign_body(row: Campaign) -> dict[str, Any]:
    """A campaign as the API answers it (times as datetimes: the view renders them)."""
    paid, paid_fen = campaign_payout_totals(row)
    return {
        "id": row.client_id,
        "kind": row.kind,
        "title": row.title,
        "total_fen": row.total_fen,
        "packets": row.packets,
        "audience": row.audience,
        "split": row.split,
        "min_fen": row.min_fen,
        "max_fen": row.max_fen,
        "seed": row.seed,
        "algorithm_version": row.algorithm_version,
        "allocation_digest": row.allocation_digest,
        "status": row.status,
        "awaiting_second_approval": bool(row.status == CampaignStatus.DRAFT and row.approved_by),
        "created_by": row.created_by,
        "approved_by": row.approved_by,
        "second_approved_by": row.second_approved_by,
        "approved_at": row.approved_at,
        "created_at": row.created_at,
        "paid_packets": paid,
        "paid_fen": paid_fen,
    }


def allocations_page(campaign: Campaign, *, after_index: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` packets of the campaign after ``after_index``, in index order, each with
    its member and its payout (``None``: not approved yet, or skipped at approval)."""
    rows = (
        Allocation.objects.filter(
            community_id=campaign.community_id, campaign=campaign, index__gt=after_index
        )
        .select_related("member")
        .prefetch_related(payouts_of(campaign.community_id))
        .order_by("index")[:limit]
    )
    out = []
    for row in rows:
        payout = row.payout
        out.append(
            {
                "index": row.index,
                "member": row.member.external_id if row.member else None,
                "amount_fen": row.amount_fen,
                "payout": None
                if payout is None
                else {"id": payout.pk, "status": payout.status, "reference": payout.reference},
            }
        )
    return out


def stored_digest(campaign: Campaign, shares: Sequence[int] | None = None) -> str:
    """The digest of the campaign's stored split (or of ``shares``): what ``allocation_digest``
    says for its method, seed (``""`` for an equal split, which uses none) and version."""
    if shares is None:
        shares = list(
            Allocation.objects.filter(campaign=campaign)
            .order_by("index")
            .values_list("amount_fen", flat=True)
        )
    return allocation_digest(
        list(shares),
        method=campaign.split,
        seed_hex="" if campaign.split == SplitMethod.EQUAL else campaign.seed,
        version=campaign.algorithm_version,
    )


# --- audiences -----------------------------------------------------------------------------------


def _local_midnight(community: Community, day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=community_zone(community.timezone))


def _date(errors: list[FieldError], path: str, value: Any) -> dt.date | None:
    if not isinstance(value, str) or not _DATE.match(value):
        errors.append(FieldError(path, "invalid", "must be a date, YYYY-MM-DD"))
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(path, "invalid", "is not a calendar date"))
        return None
    if day < EARLIEST_DATE:
        errors.append(FieldError(path, "out_of_range", f"must not be before {EARLIEST_DATE}"))
        return None
    return day


def audience_query(
    community: Community, audience: Any, *, now: dt.datetime
) -> QuerySet[Member, int]:
    """The ids of the audience's members, sorted, as one query: active members only, every
    filter ANDed. Raises ``CampaignInvalid`` naming ``audience.<filter>`` for a bad filter.

    ``active_days``: an event (not reversed) in the last N local days, today included.
    ``min_tier``: tier level at least the code's on the community's ladder (no tier row is the
    first tier). ``honor_roll``: an honor on that month's published roll. ``newcomers_since``:
    joined on or after that local day. ``featured_authors_since``: a counted
    ``content_featured`` (the once-only award that scored it, so a re-featured post counts
    once) that happened on or after that local day and was not reversed.
    """
    errors: list[FieldError] = []
    if not isinstance(audience, dict) or not audience:
        raise CampaignInvalid(
            "A campaign names its audience.",
            [
                FieldError(
                    "audience",
                    "required",
                    f"at least one filter of {', '.join(AUDIENCE_FILTERS)}",
                )
            ],
        )
    for key in sorted(set(audience) - set(AUDIENCE_FILTERS)):
        errors.append(FieldError(f"audience.{key}", "unknown_filter", "is not a filter"))
    rows = Member.objects.filter(community=community, status=MemberStatus.ACTIVE)
    if "active_days" in audience:
        days = audience["active_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_ACTIVE_DAYS:
            errors.append(
                FieldError(
                    "audience.active_days",
                    "out_of_range",
                    f"must be an integer from 1 to {MAX_ACTIVE_DAYS}",
                )
            )
        else:
            first_day = today(community.timezone, now) - dt.timedelta(days=days - 1)
            rows = rows.filter(
                Exists(
                    Event.objects.filter(
                        community=community,
                        member=OuterRef("pk"),
                        occurred_at__gte=_local_midnight(community, first_day),
                        reversed_at__isnull=True,
                    )
                )
            )
    if "min_tier" in audience:
        code = audience["min_tier"]
        levels = {t.code: t.level for t in community_ladder(community.pk).tiers}
        if not isinstance(code, str) or code not in levels:
            errors.append(
                FieldError("audience.min_tier", "invalid_choice", f"must be one of {list(levels)}")
            )
        elif levels[code] > 0:
            rows = rows.filter(
                Exists(
                    MemberTier.objects.filter(
                        community=community, member=OuterRef("pk"), level__gte=levels[code]
                    )
                )
            )
    if "honor_roll" in audience:
        value = audience["honor_roll"]
        match = _MONTH.match(value) if isinstance(value, str) else None
        month = None
        if match and 1 <= int(match.group(2)) <= 12 and int(match.group(1)) >= 1970:
            month = dt.date(int(match.group(1)), int(match.group(2)), 1)
        if month is None:
            errors.append(FieldError("audience.honor_roll", "invalid", "must be a month, YYYY-MM"))
        else:
            rows = rows.filter(
                Exists(
                    Honor.objects.filter(
                        community=community, member=OuterRef("pk"), roll__month=month
                    )
                )
            )
    if "newcomers_since" in audience:
        day = _date(errors, "audience.newcomers_since", audience["newcomers_since"])
        if day is not None:
            rows = rows.filter(joined_at__gte=_local_midnight(community, day))
    if "featured_authors_since" in audience:
        day = _date(errors, "audience.featured_authors_since", audience["featured_authors_since"])
        if day is not None:
            rows = rows.filter(
                Exists(
                    AwardOnce.objects.filter(
                        community=community,
                        member=OuterRef("pk"),
                        kind=EventType.CONTENT_FEATURED,
                        event__type=EventType.CONTENT_FEATURED,
                        event__occurred_at__gte=_local_midnight(community, day),
                        event__reversed_at__isnull=True,
                    )
                )
            )
    if errors:
        raise CampaignInvalid("The audience is invalid.", errors)
    return rows.order_by("pk").values_list("pk", flat=True)


def audience_members(community: Community, audience: Any, *, now: dt.datetime) -> list[int]:
    """The audience's member ids, sorted (see ``audience_query``)."""
    return list(audience_query(community, audience, now=now))


# --- creating ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignRequest:
    client_id: str
    kind: str
    title: str
    total_fen: int
    split: str
    audience: Any = None
    packets: int | None = None
    min_fen: int = DEFAULT_MIN_FEN
    max_fen: int = DEFAULT_MAX_FEN

    def body_hash(self) -> str:
        body = {
            "kind": self.kind,
            "title": self.title,
            "total_fen": self.total_fen,
            "split": self.split,
            "audience": self.audience,
            "packets": self.packets,
            "min_fen": self.min_fen,
            "max_fen": self.max_fen,
        }
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(community: Community, item: CampaignRequest) -> Campaign | None:
    row = Campaign.objects.filter(community=community, client_id=item.client_id).first()
    if row is not None and row.body_hash != item.body_hash():
        raise CampaignConflict(
            f"Campaign '{item.client_id}' was already created with a different body.",
            [FieldError("id", "conflict", "this id was already used with a different body")],
        )
    return row


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(item: CampaignRequest, *, automatic: bool) -> None:
    errors: list[FieldError] = []
    if not isinstance(item.client_id, str) or not 1 <= len(item.client_id) <= 128:
        errors.append(FieldError("id", "invalid", "1 to 128 characters"))
    elif not automatic and item.client_id.startswith(AUTO_PREFIXES):
        errors.append(
            FieldError("id", "reserved", f"ids starting {' or '.join(AUTO_PREFIXES)} are reserved")
        )
    if item.kind not in CampaignKind.values:
        errors.append(FieldError("kind", "invalid_choice", f"must be one of {CampaignKind.values}"))
    if not isinstance(item.title, str) or not item.title.strip() or len(item.title) > 200:
        errors.append(FieldError("title", "invalid", "1 to 200 characters"))
    if item.split not in SplitMethod.values:
        errors.append(FieldError("split", "invalid_choice", f"must be one of {SplitMethod.values}"))
    if not _is_int(item.total_fen) or not 1 <= item.total_fen <= MAX_TOTAL_FEN:
        errors.append(FieldError("total_fen", "out_of_range", f"1 to {MAX_TOTAL_FEN} fen"))
    if item.packets is not None and (
        not _is_int(item.packets) or not 1 <= item.packets <= MAX_PACKETS
    ):
        errors.append(FieldError("packets", "out_of_range", f"1 to {MAX_PACKETS}"))
    for name in ("min_fen", "max_fen"):
        value = getattr(item, name)
        if not _is_int(value) or not 1 <= value <= 2**31 - 1:
            errors.append(FieldError(name, "out_of_range", "1 to 2147483647 fen"))
    if errors:
        raise CampaignInvalid("The campaign is invalid.", errors)


def _split(item: CampaignRequest, packets: int, seed_hex: str) -> list[int]:
    """The shares, feasibility first: ``SplitInfeasible`` becomes a 400 naming the field."""
    try:
        check_feasible(item.total_fen, packets, min_fen=item.min_fen, max_fen=item.max_fen)
        if item.split == SplitMethod.EQUAL:
            return split_equal(item.total_fen, packets, min_fen=item.min_fen, max_fen=item.max_fen)
        return split_lucky(
            item.total_fen,
            packets,
            seed=bytes.fromhex(seed_hex),
            method=_LUCKY_METHOD[item.split],
            min_fen=item.min_fen,
            max_fen=item.max_fen,
        )
    except SplitInfeasible as exc:
        raise CampaignInvalid(
            f"The campaign cannot be split: {exc}",
            [FieldError(_BOUND_FIELD.get(exc.bound, "total_fen"), "infeasible", str(exc))],
        ) from exc


def members_digest(member_ids: Sequence[int | None]) -> str:
    """sha256 of the members in index order: recorded in the (append-only) audit row of the
    creation, so that approval also finds a packet moved to another member."""
    return hashlib.sha256(",".join(str(i) for i in member_ids).encode()).hexdigest()


def _store(
    *,
    community: Community,
    item: CampaignRequest,
    member_ids: list[int],
    actor: str,
    now: dt.datetime,
) -> Campaign:
    """Split and store (the caller's transaction): the campaign, its allocations, the audit."""
    seed_hex = new_seed().hex()
    shares = _split(item, len(member_ids), seed_hex)
    campaign = Campaign(
        community=community,
        client_id=item.client_id,
        body_hash=item.body_hash(),
        kind=item.kind,
        title=item.title,
        total_fen=item.total_fen,
        packets=len(shares),
        audience=item.audience,
        split=item.split,
        min_fen=item.min_fen,
        max_fen=item.max_fen,
        seed=seed_hex,
        algorithm_version=ALGORITHM_VERSION,
        created_by=actor,
        created_at=now,
    )
    campaign.allocation_digest = stored_digest(campaign, shares)
    campaign.save()
    # one statement over arrays (no model object per packet: 10,000 of them were most of a
    # campaign's creation time)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO rewards_allocation (community_id, campaign_id, index, member_id,
                                            amount_fen)
            SELECT %s, %s, x.i, x.member_id, x.amount
            FROM unnest(%s::int[], %s::bigint[], %s::int[]) AS x(i, member_id, amount)
            """,
            [
                community.pk,
                campaign.pk,
                list(range(1, len(shares) + 1)),
                list(member_ids),
                list(shares),
            ],
        )
    audit_record(
        community=community,
        actor=actor,
        action="campaign.create",
        target=item.client_id,
        data={
            "total_fen": item.total_fen,
            "packets": len(shares),
            "split": item.split,
            "audience": item.audience,
            "allocation_digest": campaign.allocation_digest,
            "members_digest": members_digest(member_ids),
        },
        now=now,
    )
    return campaign


def campaign_create(
    *,
    community: Community,
    client_id: str,
    kind: str,
    title: str,
    total_fen: int,
    split: str,
    actor: str,
    packets: int | None = None,
    audience: Any = None,
    min_fen: int = DEFAULT_MIN_FEN,
    max_fen: int = DEFAULT_MAX_FEN,
    now: dt.datetime | None = None,
) -> tuple[Campaign, bool]:
    """Create a draft campaign: the audience resolved to its members now, the split computed
    from a fresh seed and stored as allocations with its digest. Returns (campaign, created).

    Idempotent by ``client_id``: the same body answers the stored campaign (``False``, the
    audience is not resolved again); another body is a ``CampaignConflict``. Refusals
    (``CampaignInvalid``, 400) name the field: an unknown or bad audience filter, an audience
    nobody matches, ``packets`` that differ from the audience's size, or a split that cannot
    be feasible (``total_fen``, ``packets``, ``min_fen`` or ``max_fen``). Ids starting
    ``welcome:`` or ``featured:`` are the automatic campaigns'. Takes no lock: a concurrent
    create with the same id loses on the unique key and answers as a replay."""
    item = CampaignRequest(
        client_id=client_id,
        kind=kind,
        title=title,
        total_fen=total_fen,
        split=split,
        audience=audience,
        packets=packets,
        min_fen=min_fen,
        max_fen=max_fen,
    )
    existing = _replay(community, item)
    if existing is not None:
        return existing, False
    _validate(item, automatic=False)
    now = now or timezone.now()
    member_ids = audience_members(community, audience, now=now)
    if not member_ids:
        raise CampaignInvalid(
            "Nobody matches the audience.",
            [FieldError("audience", "empty", "no active member matches every filter")],
        )
    if len(member_ids) > MAX_PACKETS:
        raise CampaignInvalid(
            "The audience is too large.",
            [FieldError("audience", "too_large", f"{len(member_ids)} members; {MAX_PACKETS} max")],
        )
    if packets is not None and packets != len(member_ids):
        raise CampaignInvalid(
            "The number of packets differs from the audience.",
            [
                FieldError(
                    "packets",
                    "audience_mismatch",
                    f"the audience has {len(member_ids)} members (one packet each); "
                    "leave packets out or send that number",
                )
            ],
        )
    try:
        with transaction.atomic():
            row = _store(
                community=community, item=item, member_ids=member_ids, actor=actor, now=now
            )
    except IntegrityError:
        replayed = _replay(community, item)
        if replayed is None:
            raise
        return replayed, False
    return row, True


# --- approving -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    index: int
    member: str
    amount_fen: int
    reason: str  # member_left | daily_packets | daily_fen

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "member": self.member,
            "amount_fen": self.amount_fen,
            "reason": self.reason,
        }


@dataclass
class Approval:
    """What an approval did: ``completed`` False is a first approval (a second admin must
    complete it); otherwise ``paid`` packets got a payout and ``skipped`` did not."""

    campaign: Campaign
    completed: bool
    paid: int = 0
    paid_fen: int = 0
    skipped: list[Skipped] = field(default_factory=list)


def paid_today_by_member(
    community: Community, member_ids: Iterable[int], day: dt.date
) -> dict[int, tuple[int, int]]:
    """Packets and fen requested per member on the local ``day``, every payout not cancelled:
    ``member_paid_today`` for many members in one query."""
    wanted = set(member_ids)
    rows = (
        Payout.objects.filter(community=community, local_day=day)
        .exclude(status=PayoutStatus.CANCELLED)
        .values("member_id")
        .annotate(n=Count("id"), s=Sum("amount_fen"))
    )
    return {
        r["member_id"]: (int(r["n"]), int(r["s"] or 0)) for r in rows if r["member_id"] in wanted
    }


def _limit_reason(policy: RewardSettings, done: tuple[int, int], amount_fen: int) -> str | None:
    count, fen = done
    if count + 1 > policy.member_daily_packets:
        return "daily_packets"
    if fen + amount_fen > policy.member_daily_fen:
        return "daily_fen"
    return None


def _lock_campaign(community: Community, client_id: str) -> Campaign:
    found = campaign_get(community, client_id)
    return Campaign.objects.select_for_update().get(pk=found.pk)


def _complete(
    *,
    community: Community,
    campaign: Campaign,
    actor: str,
    now: dt.datetime,
    second: bool,
) -> Approval:
    """Freeze and pay (the caller holds the community lock, then the campaign lock). The
    split must still match its digest and the members the order recorded at creation."""
    allocations = list(
        Allocation.objects.filter(campaign=campaign)
        .order_by("index")
        .only("id", "index", "member_id", "amount_fen")
    )
    shares = [a.amount_fen for a in allocations]
    created = (
        AuditLog.objects.filter(
            community=community, action="campaign.create", target=campaign.client_id
        )
        .values_list("data", flat=True)
        .first()
    )
    if (
        stored_digest(campaign, shares) != campaign.allocation_digest
        or sum(shares) != campaign.total_fen
        or len(shares) != campaign.packets
        or created is None
        or created.get("members_digest") != members_digest([a.member_id for a in allocations])
    ):
        raise AllocationMismatch(
            f"Campaign '{campaign.client_id}': the stored allocation no longer matches the "
            "digest recorded at creation; it is not paid."
        )
    budget_check(community, campaign.total_fen, now)
    policy = reward_settings(community)
    day = today(community.timezone, now)
    member_ids = {a.member_id for a in allocations if a.member_id is not None}
    members = {  # a subquery, not an IN list: a holiday campaign may name 100,000 members
        m.pk: m
        for m in Member.objects.filter(
            pk__in=Allocation.objects.filter(campaign=campaign).values("member_id")
        ).only("id", "external_id", "status")
    }
    done = paid_today_by_member(community, member_ids, day)
    payouts: list[Payout] = []
    skipped: list[Skipped] = []
    for allocation in allocations:
        allocation.campaign = campaign
        member = members.get(allocation.member_id) if allocation.member_id else None
        if member is None:
            continue
        reason = (
            "member_left"
            if member.status != MemberStatus.ACTIVE
            else _limit_reason(policy, done.get(member.pk, (0, 0)), allocation.amount_fen)
        )
        if reason is not None:
            skipped.append(
                Skipped(allocation.index, member.external_id, allocation.amount_fen, reason)
            )
            continue
        count, fen = done.get(member.pk, (0, 0))
        done[member.pk] = (count + 1, fen + allocation.amount_fen)
        payouts.append(
            Payout(
                community=community,
                member=member,
                amount_fen=allocation.amount_fen,
                allocation=allocation,
                local_day=day,
                created_at=now,
                updated_at=now,
            )
        )
    Payout.objects.bulk_create(payouts, batch_size=BULK_BATCH)
    messages = []
    for payout in payouts:
        payload = payout_body(payout)
        payload["created_at"] = now.isoformat()
        payload["updated_at"] = now.isoformat()
        messages.append(("payout.requested", payload))
    outbox.publish(community, messages)
    if second:
        campaign.second_approved_by = actor
    else:
        campaign.approved_by = actor
    campaign.status, campaign.approved_at = CampaignStatus.APPROVED, now
    campaign.save(update_fields=["status", "approved_at", "approved_by", "second_approved_by"])
    paid_fen = sum(p.amount_fen for p in payouts)
    audit_record(
        community=community,
        actor=actor,
        action="campaign.approve",
        target=campaign.client_id,
        data={
            "total_fen": campaign.total_fen,
            "paid": len(payouts),
            "paid_fen": paid_fen,
            "skipped": [s.as_dict() for s in skipped],
            "allocation_digest": campaign.allocation_digest,
        },
        now=now,
    )
    return Approval(campaign, True, len(payouts), paid_fen, skipped)


def campaign_approve(
    *, community: Community, client_id: str, actor: str, now: dt.datetime | None = None
) -> Approval:
    """Approve a draft. Locks the community row, then the campaign row.

    Above the community's second-approval amount the first approval records ``approved_by``
    and the campaign stays a draft (audited); a second, different admin completes it
    (``SecondApproverRequired`` for the same one). Completing re-checks the digest
    (``AllocationMismatch``), the monthly budget (``BudgetExceeded``), skips members over
    their daily limits or gone, and requests one payout per remaining packet. Any state but
    draft is an ``InvalidTransition``, so a second approval racing the first pays nothing."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_community(community)
        campaign = _lock_campaign(community, client_id)
        if campaign.status != CampaignStatus.DRAFT:
            raise InvalidTransition(
                f"Campaign '{client_id}' is {campaign.status}; only a draft is approved."
            )
        threshold = reward_settings(community).second_approval_above_fen
        if campaign.total_fen > threshold and not campaign.approved_by:
            campaign.approved_by = actor
            campaign.save(update_fields=["approved_by"])
            audit_record(
                community=community,
                actor=actor,
                action="campaign.first_approval",
                target=client_id,
                data={"total_fen": campaign.total_fen, "threshold_fen": threshold},
                now=now,
            )
            return Approval(campaign, False)
        if campaign.approved_by and campaign.approved_by == actor:
            raise SecondApproverRequired(
                f"{actor} gave the first approval; a different admin must give the second."
            )
        return _complete(
            community=community,
            campaign=campaign,
            actor=actor,
            now=now,
            second=bool(campaign.approved_by),
        )


def campaign_cancel(
    *,
    community: Community,
    client_id: str,
    actor: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> Campaign:
    """Cancel a draft (with or without a first approval); nothing was paid. Locks the
    community row, then the campaign row, as approval does, so it never cancels a campaign an
    approval is paying."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_community(community)
        campaign = _lock_campaign(community, client_id)
        if campaign.status != CampaignStatus.DRAFT:
            raise InvalidTransition(
                f"Campaign '{client_id}' is {campaign.status}; only a draft is cancelled."
            )
        campaign.status = CampaignStatus.CANCELLED
        campaign.save(update_fields=["status"])
        audit_record(
            community=community,
            actor=actor,
            action="campaign.cancel",
            target=client_id,
            data={"reason": reason[:500]},
            now=now,
        )
    return campaign


# --- automatic campaigns -----------------------------------------------------------------------


@dataclass(frozen=True)
class AutoOutcome:
    """An automatic campaign: ``created`` False when it existed already; ``held`` lists why it
    waits for an admin as a draft (empty when approved)."""

    campaign: Campaign
    created: bool
    approved: bool
    held: tuple[str, ...] = ()


def welcome_paid_today(community: Community, day: dt.date) -> int:
    """Fen of welcome packets approved on the community's local ``day``."""
    start = _local_midnight(community, day)
    found = Campaign.objects.filter(
        community=community,
        kind=CampaignKind.WELCOME,
        status=CampaignStatus.APPROVED,
        approved_at__gte=start,
        approved_at__lt=_local_midnight(community, day + dt.timedelta(days=1)),
    ).aggregate(s=Sum("total_fen"))["s"]
    return int(found or 0)


def _auto_campaign(
    *,
    community: Community,
    member: Member,
    client_id: str,
    kind: str,
    title: str,
    amount_fen: int,
    audience: dict[str, str],
    policy: RewardSettings,
    now: dt.datetime,
) -> AutoOutcome:
    """One packet for one member, created and (when nothing holds it) approved in one
    transaction under the community lock, which also makes the once-only check race-free."""
    with transaction.atomic():
        _lock_community(community)
        existing = Campaign.objects.filter(community=community, client_id=client_id).first()
        if existing is not None:
            return AutoOutcome(existing, False, existing.status == CampaignStatus.APPROVED)
        item = CampaignRequest(
            client_id=client_id,
            kind=kind,
            title=title,
            total_fen=amount_fen,
            split=SplitMethod.EQUAL,
            audience=audience,
            packets=1,
            min_fen=DEFAULT_MIN_FEN,
            max_fen=max(DEFAULT_MAX_FEN, amount_fen),
        )
        _validate(item, automatic=True)
        campaign = _store(
            community=community, item=item, member_ids=[member.pk], actor=AUTO_ACTOR, now=now
        )
        held: list[str] = []
        if member.status != MemberStatus.ACTIVE:
            held.append("member_left")
        if amount_fen > policy.second_approval_above_fen:
            held.append("second_approval")
        try:
            budget_check(community, amount_fen, now)
        except BudgetExceeded:
            held.append("monthly_budget")
        day = today(community.timezone, now)
        if (
            kind == CampaignKind.WELCOME
            and welcome_paid_today(community, day) + amount_fen > policy.welcome_daily_budget_fen
        ):
            held.append("welcome_daily_budget")
        done = paid_today_by_member(community, [member.pk], day).get(member.pk, (0, 0))
        limit = _limit_reason(policy, done, amount_fen)
        if limit is not None:
            held.append(limit)
        if held:
            audit_record(
                community=community,
                actor=AUTO_ACTOR,
                action="campaign.auto_held",
                target=client_id,
                data={"held": held, "amount_fen": amount_fen},
                now=now,
            )
            return AutoOutcome(campaign, True, False, tuple(held))
        _complete(community=community, campaign=campaign, actor=AUTO_ACTOR, now=now, second=False)
        return AutoOutcome(campaign, True, True)


def welcome_packet_for_join(
    *,
    community: Community,
    member: Member,
    event_id: str,
    now: dt.datetime | None = None,
) -> AutoOutcome | None:
    """A welcome packet (``welcome_packet_fen``) for the member's first join, once per member
    whatever the number of joins (campaign id ``welcome:<member id>``). ``None`` when the
    community gives none. Approved at once within the second-approval amount, the monthly
    budget, the daily welcome budget and the member's daily limits; else a draft."""
    policy = reward_settings(community)
    if policy.welcome_packet_fen <= 0:
        return None
    return _auto_campaign(
        community=community,
        member=member,
        client_id=f"welcome:{member.external_id}",
        kind=CampaignKind.WELCOME,
        title=f"Welcome packet for {member.external_id}"[:200],
        amount_fen=policy.welcome_packet_fen,
        audience={"member": member.external_id, "event": event_id},
        policy=policy,
        now=now or timezone.now(),
    )


def featured_campaign_id(event_client_id: str) -> str:
    """``featured:<event id>``, or a digest of the event id when it would not fit 128
    characters or could not be read back in a URL (``/``)."""
    candidate = f"featured:{event_client_id}"
    if len(candidate) <= 128 and "/" not in event_client_id:
        return candidate
    return "featured:#" + hashlib.sha256(event_client_id.encode()).hexdigest()[:40]


def content_reward_for_featured(
    *,
    community: Community,
    member: Member,
    event_client_id: str,
    now: dt.datetime | None = None,
) -> AutoOutcome | None:
    """A content reward (``featured_reward_fen``) for one ``content_featured`` event of the
    member, once per event (campaign id ``featured:<event id>``). ``None`` when the community
    gives none. Approved at once within the second-approval amount, the monthly budget and
    the member's daily limits; else a draft."""
    policy = reward_settings(community)
    if policy.featured_reward_fen <= 0:
        return None
    if not (
        Event.objects.by_client_id(community, event_client_id)
        .filter(type=EventType.CONTENT_FEATURED)
        .exists()
    ):
        raise EventNotFound(f"No content_featured event '{event_client_id}' in this community.")
    return _auto_campaign(
        community=community,
        member=member,
        client_id=featured_campaign_id(event_client_id),
        kind=CampaignKind.CONTENT,
        title=f"Content reward for {member.external_id}: {event_client_id}"[:200],
        amount_fen=policy.featured_reward_fen,
        audience={"member": member.external_id, "event": event_client_id},
        policy=policy,
        now=now or timezone.now(),
    )


def _scan_cursor(community: Community) -> int:
    row, _ = JobRun.objects.get_or_create(
        community=community,
        job=AUTO_SCAN_JOB,
        period=AUTO_SCAN_PERIOD,
        defaults={"started_at": timezone.now(), "result": {"after_id": 0}},
    )
    return int(row.result.get("after_id", 0))


def auto_campaigns_scan(*, community: Community, now: dt.datetime | None = None) -> dict[str, int]:
    """Welcome packets and content rewards for the events since the last scan.

    Two set-based queries find, among the events after the cursor (``points_jobrun``, job
    ``rewards.auto_campaigns``) that happened within ``AUTO_WINDOW``: each active member's
    first ``join`` (no earlier join) and each counted, unreversed ``content_featured`` (its
    once-only award names the member paid), leaving out those whose campaign exists. Each is
    then one ``_auto_campaign`` transaction. The cursor moves, never backwards, to the last
    event received at least ``SCAN_SETTLE`` ago; later ones are looked at again next time."""
    now = now or timezone.now()
    policy = reward_settings(community)
    welcome, featured = policy.welcome_packet_fen > 0, policy.featured_reward_fen > 0
    counts = {"welcome": 0, "content": 0, "held": 0}
    if not (welcome or featured):
        return counts
    after = _scan_cursor(community)
    recent = Event.objects.filter(
        community=community, pk__gt=after, occurred_at__gte=now - AUTO_WINDOW
    )
    work: list[tuple[str, Member, str]] = []
    if welcome:
        joins = (
            recent.filter(type=EventType.JOIN, member__status=MemberStatus.ACTIVE)
            .filter(
                ~Exists(
                    Event.objects.filter(
                        community=community,
                        member=OuterRef("member"),
                        type=EventType.JOIN,
                        pk__lt=OuterRef("pk"),
                    )
                ),
                ~Exists(
                    Campaign.objects.filter(
                        community=community,
                        client_id=Concat(Value("welcome:"), OuterRef("member__external_id")),
                    )
                ),
            )
            .select_related("member")
            .order_by("pk")
        )
        work.extend(("welcome", e.member, e.client_id) for e in joins)
    if featured:
        rows = (
            AwardOnce.objects.filter(
                community=community,
                kind=EventType.CONTENT_FEATURED,
                event__in=recent.filter(type=EventType.CONTENT_FEATURED, reversed_at__isnull=True),
                member__status=MemberStatus.ACTIVE,
            )
            .filter(
                ~Exists(
                    Campaign.objects.annotate(event_id=KT("audience__event")).filter(
                        community=community,
                        kind=CampaignKind.CONTENT,
                        event_id=OuterRef("event__client_id"),
                    )
                )
            )
            .select_related("member", "event")
            .order_by("event_id")
        )
        work.extend(("content", a.member, a.event.client_id) for a in rows)
    for what, member, event_client_id in work:
        if what == "welcome":
            outcome = welcome_packet_for_join(
                community=community, member=member, event_id=event_client_id, now=now
            )
        else:
            outcome = content_reward_for_featured(
                community=community, member=member, event_client_id=event_client_id, now=now
            )
        if outcome is not None and outcome.created:
            counts[what] += 1
            counts["held"] += int(not outcome.approved)
    settled = Event.objects.filter(
        community=community, pk__gt=after, received_at__lt=now - SCAN_SETTLE
    ).aggregate(m=Max("pk"))["m"]
    if settled is not None:
        with transaction.atomic():
            cursor = JobRun.objects.select_for_update().get(
                community=community, job=AUTO_SCAN_JOB, period=AUTO_SCAN_PERIOD
            )
            current = int(cursor.result.get("after_id", 0))
            if settled > current:
                cursor.result, cursor.finished_at = {"after_id": int(settled)}, now
                cursor.save(update_fields=["result", "finished_at"])
    return counts


def auto_campaign_communities() -> list[int]:
    """Communities that give welcome packets or content rewards (what the beat job scans)."""
    return list(
        RewardSettings.objects.filter(Q(welcome_packet_fen__gt=0) | Q(featured_reward_fen__gt=0))
        .order_by("community_id")
        .values_list("community_id", flat=True)
    )
