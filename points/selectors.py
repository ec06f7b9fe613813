"""Reads that are more than a ``get``."""

from __future__ import annotations

import datetime as dt
import threading
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from points.exceptions import CommunityNotFound, MemberNotFound
from points.models import Community, Event, LedgerEntry, Member, RuleSet
from points.rules import Rules, parse_rules


@dataclass(frozen=True)
class RuleVersion:
    version: int
    effective_from: dt.datetime
    rules: Rules


MEMBER_TOKEN_SALT = "points.member-token"  # noqa: S105 - a signing namespace, not a secret

_cache_lock = threading.Lock()
_rule_cache: dict[int, tuple[int, list[RuleVersion]]] = {}


def rule_versions(community: Community, *, fresh: bool = False) -> list[RuleVersion]:
    """All rule set versions of a community, oldest first.

    Versions are immutable and every new one bumps ``community.rules_revision`` in the same
    transaction, so a per-process cache keyed by that revision is never stale for a community
    row read in the current request. A row kept longer (the API key cache keeps it a few
    seconds, and another process may have published since) carries an older revision: with
    ``fresh`` the revision is read from the database first (one primary-key lookup) and set on
    the row, so a read that must agree with the last write (``GET …/rules``) never gets an
    older version from this cache. Ingestion does not need it: its locking statement
    re-checks the revision.
    """
    if fresh:
        community.rules_revision = (
            Community.objects.filter(pk=community.pk).values_list("rules_revision", flat=True).get()
        )
    revision = community.rules_revision
    cached = _rule_cache.get(community.pk)
    if cached is not None and cached[0] == revision:
        return cached[1]
    versions = [
        RuleVersion(rs.version, rs.effective_from, parse_rules(rs.rules))
        for rs in RuleSet.objects.filter(community=community).order_by("effective_from", "version")
    ]
    with _cache_lock:
        _rule_cache[community.pk] = (revision, versions)
    return versions


def rules_in_force(community: Community, at: dt.datetime, *, fresh: bool = False) -> RuleVersion:
    """The version whose ``effective_from`` is the latest not after ``at`` (else the first).
    ``fresh``: see ``rule_versions``."""
    versions = rule_versions(community, fresh=fresh)
    if not versions:
        raise CommunityNotFound(f"Community {community.slug} has no rule set.")
    index = bisect_right([v.effective_from for v in versions], at) - 1
    return versions[max(index, 0)]


def community_by_slug(slug: str) -> Community:
    try:
        return Community.objects.get(slug=slug)
    except Community.DoesNotExist as exc:
        raise CommunityNotFound(f"No community '{slug}'.") from exc


def member_by_external_id(community: Community, external_id: str) -> Member:
    try:
        return Member.objects.get(community=community, external_id=external_id)
    except Member.DoesNotExist as exc:
        raise MemberNotFound(f"No member '{external_id}' in this community.") from exc


def member_ledger(member: Member) -> QuerySet[LedgerEntry]:
    """A member's entries, newest first (cursor-paginated by the API on ``-id``)."""
    return (
        LedgerEntry.objects.filter(community_id=member.community_id, member=member)
        .select_related("event")
        .order_by("-id")
    )


# --- leaderboards and ranks -------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    kind: str
    start: dt.date

    @property
    def label(self) -> str:
        if self.kind == "month":
            return self.start.strftime("%Y-%m")
        if self.kind == "week":
            return self.start.isoformat()
        return "all_time"


def period_resolve(
    community: Community, kind: str, month: str | None = None, now: dt.datetime | None = None
) -> Period:
    """``all_time`` | ``month`` (this month, or ``month=YYYY-MM``) | ``week`` (this week),
    in the community's time zone."""
    from points.exceptions import FieldError, InvalidPeriod
    from points.models import PeriodKind, PeriodTotal
    from points.timeutils import month_start, today, week_start

    day = today(community.timezone, now)
    if kind == PeriodKind.ALL_TIME:
        return Period(kind, PeriodTotal.ALL_TIME_START)
    if kind == PeriodKind.MONTH:
        if month:
            try:
                start = dt.datetime.strptime(month, "%Y-%m").date()  # noqa: DTZ007 - a date
            except ValueError as exc:
                raise InvalidPeriod([FieldError("month", "invalid", "must be YYYY-MM")]) from exc
            return Period(kind, start)  # a future month is an empty board
        return Period(kind, month_start(day))
    if kind == PeriodKind.WEEK:
        return Period(kind, week_start(day))
    raise InvalidPeriod([FieldError("period", "invalid_choice", "must be all_time, month or week")])


@dataclass(frozen=True)
class BoardRow:
    rank: int
    position: int
    member: str
    display_name: str
    points: int


@dataclass(frozen=True)
class Snapshot:
    built_at: dt.datetime | None
    total: int


def snapshot_info(community: Community, period: Period) -> Snapshot:
    from points.models import RankBuild

    build = RankBuild.objects.filter(
        community=community, kind=period.kind, start=period.start
    ).first()
    if build is None:
        return Snapshot(None, 0)
    return Snapshot(build.built_at, build.ranked)


def _rows(
    community: Community, period: Period, where: str, params: list[Any], limit: int
) -> list[BoardRow]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.rank, s.position, m.external_id, m.display_name, s.points
            FROM points_ranksnapshot s JOIN points_member m ON m.id = s.member_id
            WHERE s.community_id = %s AND s.kind = %s AND s.start = %s AND {where}
            ORDER BY s.position LIMIT %s
            """,  # noqa: S608 - `where` is one of our constant fragments
            [community.pk, period.kind, period.start, *params, limit],
        )
        return [BoardRow(*row) for row in cursor.fetchall()]


def leaderboard_page(
    community: Community, period: Period, after_position: int = 0, size: int = 50
) -> list[BoardRow]:
    """Ranked rows after a position (keyset on the snapshot's position: O(size) per page)."""
    return _rows(community, period, "s.position > %s", [after_position], size)


@dataclass(frozen=True)
class MemberRank:
    period: Period
    rank: int | None
    points: int
    ranked_points: int | None
    total: int
    percentile: float | None
    above: list[BoardRow]
    below: list[BoardRow]
    built_at: dt.datetime | None


def member_rank(
    community: Community, member: Member, period: Period, neighbours: int = 3
) -> MemberRank:
    """A member's rank from the snapshot, their live points beside it, and the ``neighbours``
    members just above and below by display position (see ``member_rank_lookup``)."""
    found = member_rank_lookup(community, member.external_id, period, neighbours)
    if found is None:
        raise MemberNotFound(f"No member '{member.external_id}' in this community.")
    return found


def member_rank_lookup(
    community: Community, external_id: str, period: Period, neighbours: int = 3
) -> MemberRank | None:
    """One statement, index probes only, whatever the member's position: the member row, their
    live period total, their snapshot row, the snapshot's build, and the neighbours by
    position. ``None`` when there is no such member."""
    from django.db import connection

    kind, start = period.kind, period.start
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT CASE WHEN %(kind)s = 'all_time' THEN m.lifetime_points ELSE pt.points END,
                   s.rank, s.position, s.points, b.built_at, b.ranked,
                   (SELECT json_agg(json_build_array(s2.rank, s2.position, m2.external_id,
                                                     m2.display_name, s2.points)
                                    ORDER BY s2.position)
                    FROM points_ranksnapshot s2 JOIN points_member m2 ON m2.id = s2.member_id
                    WHERE s2.community_id = %(community)s AND s2.kind = %(kind)s
                      AND s2.start = %(start)s
                      AND s2.position BETWEEN s.position - %(neighbours)s
                                          AND s.position + %(neighbours)s
                      AND s2.position <> s.position)
            FROM points_member m
            LEFT JOIN points_periodtotal pt
                   ON pt.community_id = m.community_id AND pt.member_id = m.id
                  AND pt.kind = %(kind)s AND pt.start = %(start)s
            LEFT JOIN points_ranksnapshot s
                   ON s.community_id = %(community)s AND s.kind = %(kind)s
                  AND s.start = %(start)s AND s.member_id = m.id
            LEFT JOIN points_rankbuild b
                   ON b.community_id = %(community)s AND b.kind = %(kind)s
                  AND b.start = %(start)s
            WHERE m.community_id = %(community)s AND m.external_id = %(member)s
            """,
            {
                "kind": kind,
                "start": start,
                "community": community.pk,
                "neighbours": neighbours,
                "member": external_id,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    live, rank, position, ranked_points, built_at, total, window = row
    total = total or 0
    if isinstance(window, str):
        import json

        window = json.loads(window)
    rows = [BoardRow(*r) for r in (window or [])]
    if rank is None:
        return MemberRank(period, None, live or 0, None, total, None, [], [], built_at)
    # share of ranked members at or below this member: rank 1 of 200 is 100.0, last is 0.5
    percentile = round(100.0 * (total - rank + 1) / total, 1) if total else None
    return MemberRank(
        period,
        rank,
        live or 0,
        ranked_points,
        total,
        percentile,
        [r for r in rows if r.position < position],
        [r for r in rows if r.position > position],
        built_at,
    )


def member_from_token(token: str) -> Member:
    """The member a token was issued for; ``InvalidMemberToken`` if tampered or expired."""
    import time

    from django.core import signing

    from points.exceptions import InvalidMemberToken

    try:
        payload = signing.loads(token, salt=MEMBER_TOKEN_SALT)
    except signing.BadSignature as exc:
        raise InvalidMemberToken("The link is invalid.") from exc
    if not isinstance(payload, dict) or int(payload.get("exp", 0)) < time.time():
        raise InvalidMemberToken("The link has expired; ask the bot for a new one.")
    member = (
        Member.objects.select_related("community")
        .filter(pk=int(payload.get("m", 0)), community_id=int(payload.get("c", 0)))
        .first()
    )
    if member is None:
        raise InvalidMemberToken("The link is invalid.")
    return member


def member_streak(member: Member, now: dt.datetime | None = None) -> int:
    """The member's check-in streak as it stands today: kept while the last counted day is
    today or yesterday (local), else broken (0)."""
    from points.timeutils import today

    last = member.streak_last_day
    if last is None:
        return 0
    day = today(member.community.timezone, now)
    return member.streak_days if (day - last).days <= 1 else 0


def member_achievements(member: Member) -> list[dict[str, Any]]:
    """Achievements earned (e.g. a month's check-in quota), newest first."""
    from points.models import AwardOnce

    rows = (
        AwardOnce.objects.filter(member=member)
        .exclude(achievement="")
        .order_by("-created_at")
        .values("achievement", "key", "created_at")
    )
    return [
        {
            "code": row["achievement"],
            "period": row["key"].rsplit(":", 1)[-1],
            "awarded_at": row["created_at"].isoformat(),
        }
        for row in rows
    ]


def member_external_ids(member_ids: list[int]) -> dict[int, str]:
    """External ids of many members at once: one array parameter, however many (an ``IN``
    list of 100,000 would exceed PostgreSQL's 65,535 bind parameters)."""
    from django.db import connection

    if not member_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, external_id FROM points_member WHERE id = ANY(%s)", [list(member_ids)]
        )
        return dict(cursor.fetchall())


def event_answer(event: Event) -> dict[str, Any]:
    """The public answer to a stored event, rendered from its scoring record (the answer its
    poster got, and gets again on every replay)."""
    from points.scoring import ScoringRecord

    return ScoringRecord.from_json(event.scoring).render(
        client_id=event.client_id, poster=event.member.external_id, rule_version=event.rule_version
    )
