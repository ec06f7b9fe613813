"""Reads that are more than a ``get``."""

from __future__ import annotations

import datetime as dt
import threading
from bisect import bisect_right
from dataclasses import dataclass

from django.db.models import QuerySet

from points.exceptions import CommunityNotFound, MemberNotFound
from points.models import Community, LedgerEntry, Member, RuleSet
from points.rules import Rules, parse_rules


@dataclass(frozen=True)
class RuleVersion:
    version: int
    effective_from: dt.datetime
    rules: Rules


_cache_lock = threading.Lock()
_rule_cache: dict[int, tuple[int, list[RuleVersion]]] = {}


def rule_versions(community: Community) -> list[RuleVersion]:
    """All rule set versions of a community, oldest first.

    Versions are immutable and every new one bumps ``community.rules_revision`` in the same
    transaction, so a per-process cache keyed by that revision is never stale for a community
    row read in the current request.
    """
    cached = _rule_cache.get(community.pk)
    if cached is not None and cached[0] == community.rules_revision:
        return cached[1]
    versions = [
        RuleVersion(rs.version, rs.effective_from, parse_rules(rs.rules))
        for rs in RuleSet.objects.filter(community=community).order_by("effective_from", "version")
    ]
    with _cache_lock:
        _rule_cache[community.pk] = (community.rules_revision, versions)
    return versions


def rules_in_force(community: Community, at: dt.datetime) -> RuleVersion:
    """The version whose ``effective_from`` is the latest not after ``at`` (else the first)."""
    versions = rule_versions(community)
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
