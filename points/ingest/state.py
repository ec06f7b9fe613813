"""Step 2 of ingestion: lock every member the batch touches, then read what scoring needs
(tallies, once-only keys, counted content hashes, events inside cooldowns), each in one
round trip. The reads come after the lock, so each sees every transaction committed before."""

from __future__ import annotations

import datetime as dt
from typing import Any

from points.ingest import statements
from points.ingest.records import MemberState, Plan, TallyKey
from points.ingest.scorer import DAY, MONTH, MONTH_DAYS, WEEK, Reads
from points.ingest.validate import display_name_clean
from points.models import Community
from points.scoring import StreakState, Tally, quota_key, streak_key
from points.timeutils import month_start, week_start


class RulesChanged(Exception):
    """A rule set version was published since the community row was read: start over."""


def lock_and_read(
    community: Community, plans: list[Plan], now: dt.datetime
) -> tuple[dict[str, MemberState], Reads]:
    """Create unknown members, lock every member row the batch touches (posters and the
    members paid) in ``external_id`` byte order, and read what scoring needs: one round trip.

    The reads name members by external id (joined to their rows), so they need nothing from
    the lock's answer and go in the same pipeline, after it: each runs once the lock is
    granted and sees every transaction committed before it started."""
    first_seen: dict[str, dt.datetime] = {}
    last_seen: dict[str, dt.datetime] = {}
    names: dict[str, str] = {}
    for plan in plans:
        poster = plan.event.member
        if poster not in last_seen or plan.occurred > last_seen[poster]:
            last_seen[poster] = plan.occurred
        for ext in (poster, plan.payee):
            if ext is not None and (ext not in first_seen or plan.occurred < first_seen[ext]):
                first_seen[ext] = plan.occurred
        if plan.event.display_name and (clean := display_name_clean(plan.event.display_name)):
            names[poster] = clean
    ordered = sorted(first_seen)
    new = [(ext, names.get(ext, ""), first_seen[ext]) for ext in ordered]
    found = statements.run(
        [
            statements.generic_plans(),
            statements.members_insert(community.pk, now, new),
            statements.members_lock(community.pk, ordered),
            *_reads(community.pk, plans),
        ]
    )
    rows = found["members"]
    revision = rows[0][9]
    if revision != community.rules_revision:
        # The API key cache keeps the community row a few seconds: score with the current
        # versions.
        community.rules_revision = revision
        raise RulesChanged
    members: dict[str, MemberState] = {}
    for ext, member_id, balance, lifetime, status, left_at, owed, days, last_day, _r in rows:
        members[ext] = MemberState(
            id=member_id,
            external_id=ext,
            balance=balance,
            lifetime=lifetime,
            status=status,
            left_at=left_at,
            owed=owed,
            streak=StreakState(days, last_day),
            last_seen=last_seen.get(ext),
            display_name=names.get(ext, ""),
        )
    return members, _reads_found(found)


def _reads(community_id: int, plans: list[Plan]) -> list[statements.Statement]:
    """What scoring needs, by external id. Only day tallies are stored; a week's or month's
    is summed from them, and only where a rule needs it. Look-ups per (member, …) are index
    probes: the cost follows the batch, never the size of the event table."""
    spans: set[tuple[str, str, dt.date, dt.date, str]] = set()
    keys: set[str] = set()
    member_keys: set[tuple[str, str, str]] = set()  # (prefix, member, suffix): keys of ids
    hashed: list[tuple[str, str, dt.datetime]] = []
    cooled: list[tuple[str, str, dt.datetime, int]] = []
    for plan in plans:
        rules, kind = plan.version.rules, plan.rule_type
        poster = plan.event.member
        payee = plan.payee or poster
        spans.add((payee, DAY, plan.day, plan.day, ""))
        if kind in rules.weekly_caps:
            start = week_start(plan.day)
            spans.add((payee, WEEK, start, start + dt.timedelta(days=6), kind))
        quota = rules.monthly_quota
        if kind in rules.monthly_caps or (quota and quota.type == kind):
            start = month_start(plan.day)
            stop = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            spans.add((payee, MONTH, start, stop - dt.timedelta(days=1), kind))
        if plan.once_key:
            keys.add(plan.once_key)
        if rules.streak is not None and rules.streak.type == kind:
            prefix, suffix = streak_key(0, plan.day).split(":0:")
            member_keys.add((f"{prefix}:", poster, f":{suffix}"))
        if quota is not None and quota.type == kind:
            prefix, suffix = quota_key(0, plan.day).split(":0:")
            member_keys.add((f"{prefix}:", poster, f":{suffix}"))
        if plan.content_hash:
            since = plan.occurred - dt.timedelta(days=rules.duplicate_window_days)
            hashed.append((poster, plan.content_hash, since))
        if kind in rules.cooldowns and not plan.fixed_gate:
            cooled.append((poster, kind, plan.occurred, rules.cooldowns[kind]))
    wanted = [statements.tallies_read(community_id, sorted(spans))]
    if keys or member_keys:
        wanted.append(statements.keys_read(community_id, sorted(keys), sorted(member_keys)))
    if hashed:
        wanted.append(statements.hashes_read(community_id, hashed))
    if cooled:
        wanted.append(statements.scored_read(community_id, cooled))
    return wanted


def _reads_found(found: dict[str, list[tuple[Any, ...]]]) -> Reads:
    reads = Reads()
    for member_id, span, start, event_type, count, points, days in found["tallies"]:
        reads.tallies[TallyKey(member_id, span, start, event_type)] = Tally(count, points)
        if span == MONTH:
            reads.tallies[TallyKey(member_id, MONTH_DAYS, start, event_type)] = Tally(days, 0)
    reads.once_keys = {row[0] for row in found.get("keys", [])}
    for member_id, content_hash, at in found.get("hashes", []):
        reads.hashes[(member_id, content_hash)].append(at)
    for member_id, event_type, at in found.get("scored", []):
        reads.scored_at[(member_id, event_type)].append(at)
    return reads
