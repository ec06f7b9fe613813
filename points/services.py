"""Every write to the ledger goes through these functions; each owns its transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from points import outbox
from points.adjustments import audit_record
from points.exceptions import FieldError, ValidationFailed
from points.ingest import (  # noqa: F401 - the service API of ingestion
    MAX_CLOCK_SKEW,
    EventInput,
    IngestOutcome,
    IngestStatus,
    event_ingest,
    events_ingest,
    periods_of,
)
from points.models import (
    Community,
    CommunityApiKey,
    Member,
    PeriodKind,
    RuleSet,
    Scope,
)
from points.rules import DEFAULT_RULES, Rules, parse_rules
from points.selectors import MEMBER_TOKEN_SALT

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


# --- communities, keys, rules -------------------------------------------------------------


@transaction.atomic
def community_create(*, slug: str, name: str, timezone_name: str = "Asia/Shanghai") -> Community:
    """Create a community with the default rule set as version 1 (in force since 2000)."""
    community = Community(slug=slug, name=name, timezone=timezone_name, rules_revision=1)
    community.full_clean()
    community.save()
    RuleSet.objects.create(
        community=community,
        version=1,
        effective_from=EPOCH,
        rules=DEFAULT_RULES,
        note="default rules",
    )
    return community


RULES_MAX_LEAD = dt.timedelta(days=366)


def rule_set_policy_errors(
    *,
    rules: Rules,
    effective_from: dt.datetime,
    latest: RuleSet | None,
    now: dt.datetime,
    confirm_zero: bool = False,
) -> list[FieldError]:
    """What would make a valid rule set document break its community if published.

    * A rule set that pays nothing for any event type (every ``points`` value 0 or left out:
      ``{}`` is such a document) silently stops every member earning: it needs
      ``confirm_zero``.
    * Versions take effect in order: not before the latest version's ``effective_from``.
    * Not more than ``RULES_MAX_LEAD`` ahead: a version in year 9999 would forbid every later
      version, for ever (a version is never edited or deleted).
    """
    errors: list[FieldError] = []
    if not confirm_zero and not any(rules.points.values()):
        errors.append(
            FieldError(
                "rules.points",
                "pays_nothing",
                "every event type would score 0; send confirm_zero: true to publish it anyway",
            )
        )
    if latest is not None and effective_from < latest.effective_from:
        errors.append(
            FieldError(
                "effective_from",
                "before_latest_version",
                f"must not be before {latest.effective_from.isoformat()} "
                f"(version {latest.version})",
            )
        )
    if effective_from > now + RULES_MAX_LEAD:
        errors.append(
            FieldError(
                "effective_from",
                "too_far_ahead",
                f"must be at most {RULES_MAX_LEAD.days} days ahead "
                f"(until {(now + RULES_MAX_LEAD).isoformat()})",
            )
        )
    return errors


def rule_set_publish(
    *,
    community: Community,
    rules: dict[str, Any],
    effective_from: dt.datetime | None = None,
    note: str = "",
    actor: str = "system",
    confirm_zero: bool = False,
    now: dt.datetime | None = None,
) -> RuleSet:
    """Publish a new immutable rule set version, with its audit row (``rules.publish`` by
    ``actor``) and its ``rules.published`` message, in one transaction.

    Refuses a document the rule engine rejects (``RulesInvalid``) and what
    ``rule_set_policy_errors`` names (``ValidationFailed``), checked under a lock on the
    community row (``FOR NO KEY UPDATE``), which also numbers the versions: two publishers
    (API, admin, a script) cannot both pass the order check against the same latest version.
    ``effective_from`` defaults to now.
    """
    parsed = parse_rules(rules)
    now = now or timezone.now()
    effective_from = effective_from or now
    with transaction.atomic():
        locked = Community.objects.select_for_update(no_key=True).get(pk=community.pk)
        last = RuleSet.objects.filter(community=locked).order_by("-version").first()
        errors = rule_set_policy_errors(
            rules=parsed,
            effective_from=effective_from,
            latest=last,
            now=now,
            confirm_zero=confirm_zero,
        )
        if errors:
            raise ValidationFailed("The rule set cannot be published.", errors)
        version = (last.version if last else 0) + 1
        rule_set = RuleSet.objects.create(
            community=locked,
            version=version,
            effective_from=effective_from,
            rules=rules,
            note=note,
        )
        locked.rules_revision += 1
        locked.save(update_fields=["rules_revision"])
        community.rules_revision = locked.rules_revision
        audit_record(
            community=locked,
            actor=actor,
            action="rules.publish",
            target=f"v{version}",
            data={
                "version": version,
                "effective_from": effective_from.isoformat(),
                "confirm_zero": confirm_zero,
            },
            now=now,
        )
        outbox.publish(
            locked,
            [
                (
                    "rules.published",
                    {
                        "version": version,
                        "effective_from": effective_from.isoformat(),
                        "note": note,
                    },
                )
            ],
        )
    return rule_set


def api_key_create(
    *, community: Community, scopes: Sequence[str], name: str
) -> tuple[CommunityApiKey, str]:
    """Create a key; the plain key is returned once and only its hash is stored."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    api_key, key = CommunityApiKey.objects.create_key(
        community=community, name=name, scopes=sorted(set(scopes))
    )
    if not isinstance(api_key, CommunityApiKey):
        raise TypeError("unexpected key model")
    return api_key, key


# --- event ingestion: see points/ingest.py ----------------------------------------------------

# --- reconciliation ---------------------------------------------------------------------------


def ledger_reconcile(*, community: Community, period: str) -> dict[str, Any]:
    """Check, in one set-based query, every member of the community two ways: the balance
    equals the sum of the member's entries, and it equals the latest entry's ``balance_after``
    (0 for a member with no entry). The first catches a balance changed behind the ledger's
    back or an entry missing from it; the second an entry posted with a wrong running balance.
    "Latest" is the highest id: a member's entries are written under the member's row lock, so
    ids follow the order they were posted in.

    Returns ``members``, ``mismatched`` (members failing either check), ``sum_mismatched``,
    ``balance_after_mismatched`` and up to 20 ``examples`` (external ids, sorted). Records one
    ``JobRun`` per community and period; a re-run of a finished period returns the recorded
    result and writes nothing."""
    from points.models import JobRun

    job = "ledger_reconcile"
    existing = JobRun.objects.filter(community=community, job=job, period=period).first()
    if existing is not None and existing.finished_at is not None:
        return dict(existing.result)
    with transaction.atomic():
        run, _ = JobRun.objects.get_or_create(
            community=community, job=job, period=period, defaults={"started_at": timezone.now()}
        )
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH per_member AS (
                    SELECT member_id, sum(points) AS total, max(id) AS last_id
                    FROM points_ledgerentry WHERE community_id = %s GROUP BY member_id
                ), checked AS (
                    -- archived ledger months count through their checkpoint (points.history)
                    SELECT m.external_id,
                           m.balance <> COALESCE(s.total, 0) + COALESCE(c.net, 0) AS bad_sum,
                           m.balance <> COALESCE(e.balance_after, c.balance_after, 0)
                               AS bad_latest
                    FROM points_member m
                    LEFT JOIN per_member s ON s.member_id = m.id
                    LEFT JOIN points_ledgerentry e ON e.id = s.last_id
                    LEFT JOIN points_ledgercheckpoint c
                      ON c.community_id = m.community_id AND c.member_id = m.id
                    WHERE m.community_id = %s
                )
                SELECT count(*),
                       count(*) FILTER (WHERE bad_sum OR bad_latest),
                       count(*) FILTER (WHERE bad_sum),
                       count(*) FILTER (WHERE bad_latest),
                       COALESCE((array_agg(external_id ORDER BY external_id)
                                 FILTER (WHERE bad_sum OR bad_latest))[1:20], '{}')
                FROM checked
                """,
                [community.pk, community.pk],
            )
            members, mismatched, bad_sum, bad_latest, examples = cursor.fetchone()
        result = {
            "members": members,
            "mismatched": mismatched,
            "sum_mismatched": bad_sum,
            "balance_after_mismatched": bad_latest,
            "examples": list(examples),
        }
        run.result = result
        run.finished_at = timezone.now()
        run.save(update_fields=["result", "finished_at"])
    return result


# --- rank snapshots ---------------------------------------------------------------------------

RANK_FRESHNESS = dt.timedelta(seconds=30)


def rank_snapshot_build(
    *, community: Community, kind: str, start: dt.date, force: bool = False
) -> bool:
    """Rebuild one period's rank snapshot with one set-based ``rank() OVER`` statement.

    Skips (returns False) when another process is building the same period (advisory lock),
    or, unless ``force``, when no ledger entry of the community was written since the last
    build. Ties share a rank (competition ranking); ``position`` breaks ties by member id for
    a stable display order. Members who left and members with no points are not ranked.
    """
    from points.models import RankBuild

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(hashtext(%s))",
            [f"ranks:{community.pk}:{kind}:{start.isoformat()}"],
        )
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(
            "SELECT COALESCE(max(id), 0) FROM points_ledgerentry WHERE community_id = %s",
            [community.pk],
        )
        high_water = cursor.fetchone()[0]
        build = RankBuild.objects.filter(community=community, kind=kind, start=start).first()
        if build is not None and not force and build.ledger_high_water >= high_water:
            # Nothing changed: the snapshot is current as of now.
            RankBuild.objects.filter(pk=build.pk).update(built_at=timezone.now())
            return False
        as_of = (
            timezone.now()
        )  # the totals are read from here on: the snapshot's age counts from it
        cursor.execute(
            "DELETE FROM points_ranksnapshot WHERE community_id = %s AND kind = %s AND start = %s",
            [community.pk, kind, start],
        )
        # All time ranks lifetime points (the member row); a month or a week its stored totals.
        if kind == PeriodKind.ALL_TIME:
            cursor.execute(
                """
                INSERT INTO points_ranksnapshot (community_id, kind, start, member_id, rank,
                                                 position, points)
                SELECT community_id, %s, %s, id,
                       rank() OVER (ORDER BY lifetime_points DESC),
                       row_number() OVER (ORDER BY lifetime_points DESC, id),
                       lifetime_points
                FROM points_member
                WHERE community_id = %s AND status = 'active' AND lifetime_points > 0
                """,
                [kind, start, community.pk],
            )
        else:
            cursor.execute(
                """
                INSERT INTO points_ranksnapshot (community_id, kind, start, member_id, rank,
                                                 position, points)
                SELECT community_id, kind, start, member_id,
                       rank() OVER (ORDER BY points DESC),
                       row_number() OVER (ORDER BY points DESC, member_id),
                       points
                FROM points_periodtotal
                WHERE community_id = %s AND kind = %s AND start = %s AND active AND points > 0
                """,
                [community.pk, kind, start],
            )
        ranked = cursor.rowcount
        RankBuild.objects.update_or_create(
            community=community,
            kind=kind,
            start=start,
            defaults={
                "built_at": as_of,
                "ledger_high_water": high_water,
                "ranked": ranked,
            },
        )
    return True


def rank_snapshots_refresh(*, community: Community, now: dt.datetime | None = None) -> int:
    """Rebuild the current periods (all time, this month, this week) that changed."""
    from points.timeutils import today

    day = today(community.timezone, now)
    built = 0
    for kind, start in periods_of(day):
        built += rank_snapshot_build(community=community, kind=kind, start=start)
    return built


_rebuild_queued_at: dict[tuple[int, str, dt.date], float] = {}


_UNKNOWN = object()


def rank_snapshot_ensure(
    *, community: Community, kind: str, start: dt.date, built_at: Any = _UNKNOWN
) -> bool:
    """What a read does about the snapshot it is served from: never build (reads never write);
    when there is none yet, or the one there is older than ``2 × RANK_FRESHNESS``, queue a
    rebuild (at most once per ``RANK_FRESHNESS`` per process and period) and serve what is
    there meanwhile. Returns whether a rebuild was queued. ``built_at``, when the caller
    already read it, saves the query."""
    import logging
    import time

    from points.models import PeriodTotal, RankBuild
    from points.timeutils import today

    if not PeriodTotal.ALL_TIME_START <= start <= today(community.timezone):
        return False  # no points can be there: nothing to build (and no row per odd month)
    if built_at is _UNKNOWN:
        built_at = (
            RankBuild.objects.filter(community=community, kind=kind, start=start)
            .values_list("built_at", flat=True)
            .first()
        )
    if built_at is not None and timezone.now() - built_at <= 2 * RANK_FRESHNESS:
        return False
    from points.tasks import rank_snapshot_build_period

    key = (community.pk, kind, start)
    if time.monotonic() - _rebuild_queued_at.get(key, -1e9) < RANK_FRESHNESS.total_seconds():
        return False  # this process queued one a moment ago
    _rebuild_queued_at[key] = time.monotonic()
    try:
        rank_snapshot_build_period.delay(community.pk, kind, start.isoformat())
    except Exception:  # noqa: BLE001 - a broker outage must not fail a read
        logging.getLogger(__name__).warning("could not queue a rank rebuild", exc_info=True)
        return False
    return True


RANK_REFRESH_DELAY = 1.0  # seconds: events within it share one rebuild
_refresh_due: dict[int, float] = {}


def rank_refresh_soon(community_id: int) -> bool:
    """After a commit that wrote points: queue a rebuild of the community's current periods in
    ``RANK_REFRESH_DELAY`` seconds, unless one is queued that has not started yet (debounce: a
    burst of events costs one rebuild, and a member's new points reach the leaderboard within
    seconds, not at the next 30-second beat). Returns whether it queued.

    Debounced per process first, then across the fleet by a claim in Redis (``SET NX`` with
    the delay as its lifetime) when ``REDIS_URL`` is set: without it, every process of every
    server queued its own rebuild per community per second, and under load the queue grew
    faster than a worker could drain it (found by ``make loadtest``)."""
    import logging
    import time

    now = time.monotonic()
    if now < _refresh_due.get(community_id, 0.0):
        return False
    _refresh_due[community_id] = now + RANK_REFRESH_DELAY
    if not _fleet_claims_refresh(community_id):
        return False
    from points.tasks import rank_snapshots_refresh_community

    try:
        rank_snapshots_refresh_community.apply_async((community_id,), countdown=RANK_REFRESH_DELAY)
    except Exception:  # noqa: BLE001 - the beat refresh catches up within 30 s
        logging.getLogger(__name__).warning("could not queue a rank refresh", exc_info=True)
        return False
    return True


def _fleet_claims_refresh(community_id: int) -> bool:
    """Whether this process is the one of the fleet to queue the next refresh (True when no
    Redis is configured, or it does not answer: a refresh too many costs little)."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return True
    from config.redis_client import redis_client

    try:
        key = f"rank-refresh:{community_id}"
        return bool(redis_client(url).set(key, 1, nx=True, px=int(RANK_REFRESH_DELAY * 1000)))
    except Exception:  # noqa: BLE001 - the claim is an optimisation
        return True


# --- member tokens ------------------------------------------------------------------------------

MEMBER_TOKEN_DEFAULT_TTL = dt.timedelta(hours=24)
MEMBER_TOKEN_MAX_TTL = dt.timedelta(days=7)


def member_token_issue(
    *, member: Member, ttl: dt.timedelta = MEMBER_TOKEN_DEFAULT_TTL
) -> tuple[str, dt.datetime]:
    """A signed, expiring token bound to one member of one community (HMAC with SECRET_KEY).

    Nothing is stored: the signature proves the token was issued here, ``exp`` bounds it.
    """
    from django.core import signing

    ttl = min(max(ttl, dt.timedelta(minutes=1)), MEMBER_TOKEN_MAX_TTL)
    expires_at = (timezone.now() + ttl).replace(microsecond=0)
    token = signing.dumps(
        {"c": member.community_id, "m": member.pk, "exp": int(expires_at.timestamp())},
        salt=MEMBER_TOKEN_SALT,
    )
    return token, expires_at
