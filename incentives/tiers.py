"""Tiers: the ladder job (promotion at the next run, demotion with hysteresis), admin locks, and
a member's figures against the ladder.

Rules (``docs/incentives.md``):

- a member's figures are read from the daily tallies: points earned in the last
  ``points_window_days`` local days, check-in days in the last 30, featured posts in the points
  window, and whether they are a confirmed KOC;
- the *target* is the highest tier reached by climbing the ladder from the bottom while every
  entry criterion is met; a target above the current tier promotes at once (several tiers if
  earned);
- a member below their tier is demoted only when a figure falls under ``low_water`` × that
  tier's entry criterion (hysteresis, as Discourse's trust level 3), after ``min_stay_days`` in
  the tier, and by one tier per run at most;
- a locked tier never moves; members who left are not evaluated.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from incentives.config import Ladder, Tier, community_ladder
from incentives.jobs import run_once
from incentives.models import MemberTier, TierChange, TierChangeKind
from points import outbox
from points.adjustments import audit_record
from points.exceptions import FieldError, ValidationFailed
from points.models import Community, Member
from points.selectors import member_external_ids
from points.timeutils import today

CHECK_IN_WINDOW_DAYS = 30
JOB = "tiers"


def _met(tier: Tier, factor: float = 1.0) -> str:
    """SQL: the member's figures meet ``factor`` × the tier's entry criteria."""
    parts = [
        f"points >= {tier.min_points * factor!r}",
        f"check_in_days >= {tier.min_check_in_days * factor!r}",
        f"featured >= {tier.min_featured * factor!r}",
    ]
    if tier.requires_koc:
        parts.append("koc")
    return "(" + " AND ".join(parts) + ")"


def _shortfall(tier: Tier, factor: float) -> str:
    """SQL: which figures are under ``factor`` × the tier's criteria, in words."""
    checks = []
    for figure, minimum in (
        ("points", tier.min_points),
        ("check_in_days", tier.min_check_in_days),
        ("featured", tier.min_featured),
    ):
        floor = minimum * factor
        checks.append(
            f"CASE WHEN {figure} < {floor!r} THEN format('{figure} %%s < %%s', {figure}, "
            f"{round(floor, 2)!r}) END"
        )
    if tier.requires_koc:
        checks.append("CASE WHEN NOT koc THEN 'not a confirmed KOC' END")
    return "concat_ws(', ', " + ", ".join(checks) + ")"


def _decision_sql(ladder: Ladder) -> tuple[str, str]:
    """SQL expressions for the new level and the demotion's shortfall, from the ladder."""
    top = len(ladder.tiers) - 1
    climb = " ".join(
        "WHEN " + " AND ".join(_met(t) for t in ladder.tiers[1 : level + 1]) + f" THEN {level}"
        for level in range(top, 0, -1)
    )
    target = f"(CASE {climb} ELSE 0 END)" if top > 0 else "0"
    keeps = " ".join(f"WHEN {t.level} THEN {_met(t, ladder.low_water)}" for t in ladder.tiers[1:])
    keep = f"(CASE level {keeps} ELSE true END)" if top > 0 else "true"
    to_level = f"""
        CASE WHEN locked THEN level
             WHEN level > {top} THEN {top}
             WHEN {target} > level THEN {target}
             WHEN level > 0 AND since <= %(stay_cutoff)s AND NOT {keep} THEN level - 1
             ELSE level END"""
    shortfalls = " ".join(
        f"WHEN {t.level} THEN {_shortfall(t, ladder.low_water)}" for t in ladder.tiers[1:]
    )
    shortfall = f"(CASE level {shortfalls} ELSE 'the ladder changed' END)" if top > 0 else "''"
    return to_level, shortfall


def tiers_evaluate(
    *, community: Community, period: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Evaluate every active member against the ladder, set-based, once per local day.

    One transaction: the figures (one aggregate over the tallies), the decisions, the new tier
    rows (skipping rows an admin locked meanwhile), the ``TierChange`` history and the
    ``tier.changed`` outbox messages. Fenced by ``run_once`` on (community, "tiers", period).
    """
    now = now or timezone.now()
    day = today(community.timezone, now) if period is None else dt.date.fromisoformat(period)
    period = day.isoformat()

    def compute() -> dict[str, Any]:
        return _evaluate(community, community_ladder(community.pk), day, now, f"{JOB}:{period}")

    return run_once(community=community, job=JOB, period=period, compute=compute)


def _evaluate(
    community: Community, ladder: Ladder, day: dt.date, now: dt.datetime, run: str
) -> dict[str, Any]:
    to_level, shortfall = _decision_sql(ladder)
    codes = [t.code for t in ladder.tiers]
    window = ladder.points_window_days
    params: dict[str, Any] = {
        "c": community.pk,
        "today": day,
        "points_from": day - dt.timedelta(days=window),
        "check_in_from": day - dt.timedelta(days=CHECK_IN_WINDOW_DAYS),
        "from": day - dt.timedelta(days=max(window, CHECK_IN_WINDOW_DAYS)),
        "stay_cutoff": now - dt.timedelta(days=ladder.min_stay_days),
        "now": now,
        "codes": codes,
        "run": run,
        "window": window,
        "low_water": ladder.low_water,
    }
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS tier_eval")
        cursor.execute(
            """
            CREATE TEMP TABLE tier_eval ON COMMIT DROP AS
            WITH figures AS (
                SELECT t.member_id,
                       COALESCE(sum(t.points) FILTER (
                           WHERE t.event_type = '*' AND t.day > %(points_from)s), 0) AS points,
                       count(*) FILTER (
                           WHERE t.event_type = 'check_in' AND t.count > 0
                             AND t.day > %(check_in_from)s) AS check_in_days,
                       COALESCE(sum(t.count) FILTER (
                           WHERE t.event_type = 'content_featured'
                             AND t.day > %(points_from)s), 0) AS featured
                FROM points_dailytally t
                WHERE t.community_id = %(c)s AND t.day > %(from)s AND t.day <= %(today)s
                  AND t.event_type IN ('*', 'check_in', 'content_featured')
                GROUP BY t.member_id
            ), evaluated AS (
                SELECT member_id FROM figures
                UNION
                SELECT member_id FROM incentives_membertier WHERE community_id = %(c)s
            )
            SELECT m.id AS member_id,
                   COALESCE(f.points, 0) AS points,
                   COALESCE(f.check_in_days, 0) AS check_in_days,
                   COALESCE(f.featured, 0) AS featured,
                   COALESCE(k.status = 'confirmed', false) AS koc,
                   COALESCE(mt.level, 0) AS level,
                   COALESCE(mt.since, m.joined_at) AS since,
                   COALESCE(mt.locked, false) AS locked
            FROM evaluated e
            JOIN points_member m ON m.id = e.member_id AND m.status = 'active'
            LEFT JOIN figures f ON f.member_id = m.id
            LEFT JOIN incentives_membertier mt
                   ON mt.community_id = %(c)s AND mt.member_id = m.id
            LEFT JOIN incentives_koccandidate k ON k.community_id = %(c)s AND k.member_id = m.id
            """,
            params,
        )
        evaluated = cursor.rowcount
        cursor.execute("DROP TABLE IF EXISTS tier_decision")
        cursor.execute(
            f"""
            CREATE TEMP TABLE tier_decision ON COMMIT DROP AS
            SELECT member_id, level AS from_level, to_level, points, check_in_days, featured, koc,
                   CASE WHEN to_level < level THEN {shortfall} ELSE '' END AS shortfall
            FROM (SELECT e.*, {to_level} AS to_level FROM tier_eval e) d
            WHERE to_level <> level
            """,  # noqa: S608 - generated from a validated ladder: numbers and fixed words only
            params,
        )
        cursor.execute(
            """
            WITH applied AS (
                INSERT INTO incentives_membertier AS mt
                       (community_id, member_id, level, code, since, locked, locked_by, updated_at)
                SELECT %(c)s, member_id, to_level, (%(codes)s::text[])[to_level + 1], %(now)s,
                       false, '', %(now)s
                FROM tier_decision
                ON CONFLICT (community_id, member_id) DO UPDATE
                    SET level = EXCLUDED.level, code = EXCLUDED.code, since = EXCLUDED.since,
                        updated_at = EXCLUDED.updated_at
                    WHERE NOT mt.locked
                RETURNING member_id
            )
            INSERT INTO incentives_tierchange
                   (community_id, member_id, kind, from_level, to_level, from_code, to_code,
                    reason, figures, run, actor, created_at)
            SELECT %(c)s, d.member_id,
                   CASE WHEN d.to_level > d.from_level THEN 'promotion' ELSE 'demotion' END,
                   d.from_level, d.to_level,
                   (%(codes)s::text[])[d.from_level + 1], (%(codes)s::text[])[d.to_level + 1],
                   CASE WHEN d.to_level > d.from_level
                        THEN 'meets the entry criteria of ' || (%(codes)s::text[])[d.to_level + 1]
                        ELSE format('below %%s x the criteria of %%s: %%s', %(low_water)s,
                                    (%(codes)s::text[])[d.from_level + 1], d.shortfall) END,
                   jsonb_build_object('points', d.points, 'points_window_days', %(window)s,
                                      'check_in_days', d.check_in_days, 'featured', d.featured,
                                      'koc', d.koc),
                   %(run)s, 'job:tiers', %(now)s
            FROM tier_decision d JOIN applied a ON a.member_id = d.member_id
            RETURNING member_id, kind, from_code, to_code, reason, figures
            """,
            params,
        )
        changes = cursor.fetchall()
    promotions = sum(1 for c in changes if c[1] == TierChangeKind.PROMOTION)
    if changes:
        external = member_external_ids([c[0] for c in changes])
        outbox.publish(
            community,
            [
                (
                    "tier.changed",
                    {
                        "member": external[member_id],
                        "kind": kind,
                        "from": from_code,
                        "to": to_code,
                        "reason": reason,
                        "figures": figures if isinstance(figures, dict) else json.loads(figures),
                    },
                )
                for member_id, kind, from_code, to_code, reason, figures in changes
            ],
        )
    return {
        "period": day.isoformat(),
        "evaluated": evaluated,
        "promotions": promotions,
        "demotions": len(changes) - promotions,
    }


# --- admin actions ------------------------------------------------------------------------------


def tier_set_lock(
    *,
    community: Community,
    member: Member,
    locked: bool,
    actor: str,
    tier: str | None = None,
    reason: str = "",
) -> MemberTier:
    """Lock a member's tier (optionally moving them to ``tier`` first) or unlock it.

    Locks the member row, then their tier row (the job skips locked rows under the same row
    lock). Records a ``TierChange`` and an ``AuditLog`` row; announces ``tier.changed`` when the
    tier moved.
    """
    ladder = community_ladder(community.pk)
    codes = [t.code for t in ladder.tiers]
    if tier is not None and tier not in codes:
        raise ValidationFailed(
            "Unknown tier.", [FieldError("tier", "invalid_choice", f"must be one of {codes}")]
        )
    now = timezone.now()
    with transaction.atomic():
        Member.objects.select_for_update(no_key=True).filter(pk=member.pk).first()
        row = (
            MemberTier.objects.select_for_update()
            .filter(community=community, member=member)
            .first()
        )
        from_level = row.level if row else 0
        to_level = codes.index(tier) if tier is not None else from_level
        if row is None:
            row = MemberTier(community=community, member=member, since=now)
        if to_level != from_level:
            row.since = now
        row.level, row.code = to_level, codes[min(to_level, len(codes) - 1)]
        row.locked, row.locked_by, row.updated_at = locked, actor if locked else "", now
        row.save()
        kind = TierChangeKind.LOCK if locked else TierChangeKind.UNLOCK
        TierChange.objects.create(
            community=community,
            member=member,
            kind=kind,
            from_level=from_level,
            to_level=to_level,
            from_code=ladder.by_level(from_level).code,
            to_code=row.code,
            reason=reason or ("locked by an admin" if locked else "unlocked by an admin"),
            actor=actor,
            created_at=now,
        )
        audit_record(
            community=community,
            actor=actor,
            action=f"tier.{kind}",
            target=member.external_id,
            data={"tier": row.code, "from": ladder.by_level(from_level).code, "reason": reason},
            now=now,
        )
        if to_level != from_level:
            outbox.publish(
                community,
                [
                    (
                        "tier.changed",
                        {
                            "member": member.external_id,
                            "kind": "admin",
                            "from": ladder.by_level(from_level).code,
                            "to": row.code,
                            "reason": reason or "set by an admin",
                            "figures": {},
                        },
                    )
                ],
            )
    return row


def tier_ladder_set(*, community: Community, document: dict[str, Any], actor: str) -> Ladder:
    """Replace the community's ladder (validated whole first); audited. Members keep their
    level; the next run re-evaluates them against the new ladder."""
    from incentives.config import parse_ladder
    from incentives.models import IncentiveConfig

    ladder = parse_ladder(document)
    now = timezone.now()
    with transaction.atomic():
        config, created = IncentiveConfig.objects.select_for_update().get_or_create(
            community=community,
            defaults={"tiers": document, "koc": {}, "updated_at": now, "updated_by": actor},
        )
        if not created:
            config.tiers, config.updated_at, config.updated_by = document, now, actor
            config.save(update_fields=["tiers", "updated_at", "updated_by"])
        audit_record(
            community=community,
            actor=actor,
            action="tiers.update",
            data={"tiers": [t.code for t in ladder.tiers]},
            now=now,
        )
    return ladder


# --- reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    figure: str
    value: int
    required: int


@dataclass(frozen=True)
class TierStanding:
    tier: Tier
    since: dt.datetime | None
    locked: bool
    next_tier: Tier | None
    criteria: list[Criterion]
    progress: float  # 0-100: the least advanced criterion of the next tier
    koc: bool


def member_figures(
    member: Member, ladder: Ladder, now: dt.datetime | None = None
) -> dict[str, int]:
    """The member's figures as the job reads them (one aggregate over their tallies)."""
    day = today(member.community.timezone, now)
    window = ladder.points_window_days
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT COALESCE(sum(points) FILTER (WHERE event_type = '*' AND day > %s), 0),
                   count(*) FILTER (WHERE event_type = 'check_in' AND count > 0 AND day > %s),
                   COALESCE(sum(count) FILTER (
                       WHERE event_type = 'content_featured' AND day > %s), 0)
            FROM points_dailytally
            WHERE community_id = %s AND member_id = %s AND day > %s AND day <= %s
              AND event_type IN ('*', 'check_in', 'content_featured')
            """,
            [
                day - dt.timedelta(days=window),
                day - dt.timedelta(days=CHECK_IN_WINDOW_DAYS),
                day - dt.timedelta(days=window),
                member.community_id,
                member.pk,
                day - dt.timedelta(days=max(window, CHECK_IN_WINDOW_DAYS)),
                day,
            ],
        )
        points, check_in_days, featured = cursor.fetchone()
    return {"points": int(points), "check_in_days": int(check_in_days), "featured": int(featured)}


def member_tier_standing(member: Member, now: dt.datetime | None = None) -> TierStanding:
    """The member's tier, and how far they are from the next one."""
    from incentives.models import KocCandidate, KocStatus

    ladder = community_ladder(member.community_id)
    row = MemberTier.objects.filter(community_id=member.community_id, member=member).first()
    tier = ladder.by_level(row.level if row else 0)
    koc = KocCandidate.objects.filter(
        community_id=member.community_id, member=member, status=KocStatus.CONFIRMED
    ).exists()
    following = ladder.tiers[tier.level + 1] if tier.level + 1 < len(ladder.tiers) else None
    criteria: list[Criterion] = []
    progress = 100.0
    if following is not None:
        figures = member_figures(member, ladder, now)
        for figure, required in (
            ("points", following.min_points),
            ("check_in_days", following.min_check_in_days),
            ("featured", following.min_featured),
        ):
            if required:
                criteria.append(Criterion(figure, figures[figure], required))
        if following.requires_koc:
            criteria.append(Criterion("koc", int(koc), 1))
        shares = [min(c.value / c.required, 1.0) for c in criteria]
        progress = round(100.0 * min(shares), 1) if shares else 100.0
    return TierStanding(
        tier,
        row.since if row else None,
        bool(row and row.locked),
        following,
        criteria,
        progress,
        koc,
    )


def tier_history(member: Member) -> list[TierChange]:
    return list(
        TierChange.objects.filter(community_id=member.community_id, member=member).order_by(
            "-created_at", "-id"
        )
    )
