"""Every write to the ledger goes through these functions; each owns its transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from points.exceptions import FieldError
from points.models import (
    Community,
    CommunityApiKey,
    DailyTally,
    EntryKind,
    EventType,
    Member,
    MemberStatus,
    PeriodKind,
    PeriodTotal,
    RuleSet,
    Scope,
)
from points.rules import DEFAULT_RULES, Tally, parse_rules, score_event
from points.selectors import MEMBER_TOKEN_SALT, RuleVersion, rules_in_force
from points.timeutils import local_day, month_start, week_start

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)


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


@transaction.atomic
def rule_set_publish(
    *, community: Community, rules: dict[str, Any], effective_from: dt.datetime, note: str = ""
) -> RuleSet:
    """Add a new immutable rule set version. Locks the community row to number versions."""
    parse_rules(rules)
    locked = Community.objects.select_for_update().get(pk=community.pk)
    last = RuleSet.objects.filter(community=locked).order_by("-version").first()
    version = (last.version if last else 0) + 1
    rule_set = RuleSet.objects.create(
        community=locked, version=version, effective_from=effective_from, rules=rules, note=note
    )
    locked.rules_revision += 1
    locked.save(update_fields=["rules_revision"])
    community.rules_revision = locked.rules_revision
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


# --- event ingestion ------------------------------------------------------------------------


@dataclass(frozen=True)
class EventInput:
    """One validated event as a bot sent it (shape validation is the API's job)."""

    client_id: str
    type: str
    member: str
    occurred_at: dt.datetime | None = None
    target: str = ""
    content: dict[str, Any] | None = None
    score: int | None = None
    group: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def body_hash(self) -> str:
        """Hash of the canonical body: the same id with another body is a conflict."""
        body = {
            "id": self.client_id,
            "type": self.type,
            "member": self.member,
            "occurred_at": self.occurred_at.astimezone(dt.UTC).isoformat()
            if self.occurred_at
            else None,
            "target": self.target,
            "content": self.content,
            "score": self.score,
            "group": self.group,
            "meta": self.meta,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


class IngestStatus:
    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass
class IngestOutcome:
    """What happened to one event. ``result`` is the body stored with the event and returned
    again, unchanged, on every replay."""

    client_id: str
    status: str
    result: dict[str, Any] | None = None
    errors: list[FieldError] = field(default_factory=list)


class _ConcurrentDuplicate(Exception):
    """Another transaction committed one of our event ids while we scored: start over."""


@dataclass
class _MemberState:
    id: int
    balance: int
    lifetime: int
    status: str
    left_at: dt.datetime | None
    changed: bool = False
    initial_status: str = ""

    def __post_init__(self) -> None:
        self.initial_status = self.status


def event_ingest(*, community: Community, event: EventInput) -> IngestOutcome:
    return events_ingest(community=community, events=[event])[0]


def events_ingest(
    *, community: Community, events: Sequence[EventInput], now: dt.datetime | None = None
) -> list[IngestOutcome]:
    """Store, score and post a batch of events, each exactly once, in one transaction.

    Every item is independent: an invalid item, a replay or a conflict does not affect the
    others. Locks: the members' rows, in ``external_id`` order (the upsert takes them), then
    their daily tally rows; no other rows are locked. A concurrent commit of one of our ids is
    detected by the event insert and makes us start over, so each id is scored exactly once.
    """
    now = now or timezone.now()
    for _attempt in range(5):
        try:
            return _ingest_once(community, events, now)
        except _ConcurrentDuplicate:
            continue
    raise RuntimeError("event ingestion kept racing with concurrent duplicates")


def _ingest_once(
    community: Community, events: Sequence[EventInput], now: dt.datetime
) -> list[IngestOutcome]:
    outcomes: list[IngestOutcome | None] = [None] * len(events)
    hashes = [e.body_hash() for e in events]

    # Within the batch: the first occurrence of an id wins, a later copy replays or conflicts.
    first_index: dict[str, int] = {}
    fresh: list[int] = []
    for i, event in enumerate(events):
        seen = first_index.get(event.client_id)
        if seen is None:
            first_index[event.client_id] = i
            fresh.append(i)
    # Already stored (committed) ids: the replay fast path, no lock taken.
    stored = _stored_events(community.pk, [events[i].client_id for i in fresh])
    pending: list[int] = []
    for i in fresh:
        found = stored.get(events[i].client_id)
        if found is None:
            pending.append(i)
        else:
            outcomes[i] = _replay_or_conflict(events[i], hashes[i], found[0], found[1])

    if pending:
        with transaction.atomic():
            _score_and_post(community, events, hashes, pending, outcomes, now)

    for i, event in enumerate(events):
        if outcomes[i] is None:
            first = outcomes[first_index[event.client_id]]
            if first is None:
                raise RuntimeError("the first copy of an id always has an outcome")
            if first.status == IngestStatus.INVALID:
                outcomes[i] = IngestOutcome(
                    event.client_id, IngestStatus.INVALID, None, first.errors
                )
            elif hashes[i] == hashes[first_index[event.client_id]]:
                outcomes[i] = IngestOutcome(event.client_id, IngestStatus.REPLAYED, first.result)
            else:
                outcomes[i] = _conflict(event.client_id)
    return [o for o in outcomes if o is not None]


def _stored_events(community_id: int, client_ids: list[str]) -> dict[str, tuple[str, Any]]:
    if not client_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_id, body_hash, result FROM points_event "
            "WHERE community_id = %s AND client_id = ANY(%s)",
            [community_id, client_ids],
        )
        rows = cursor.fetchall()
    return {
        row[0]: (row[1], row[2] if not isinstance(row[2], str) else json.loads(row[2]))
        for row in rows
    }


def _replay_or_conflict(
    event: EventInput, body_hash: str, stored_hash: str, stored_result: dict[str, Any]
) -> IngestOutcome:
    if stored_hash == body_hash:
        return IngestOutcome(event.client_id, IngestStatus.REPLAYED, stored_result)
    return _conflict(event.client_id)


def _conflict(client_id: str) -> IngestOutcome:
    return IngestOutcome(
        client_id,
        IngestStatus.CONFLICT,
        None,
        [FieldError("id", "conflict", "this id was already used with a different body")],
    )


def _score_and_post(
    community: Community,
    events: Sequence[EventInput],
    hashes: list[str],
    pending: list[int],
    outcomes: list[IngestOutcome | None],
    now: dt.datetime,
) -> None:
    tz = community.timezone
    occurred = {i: events[i].occurred_at or now for i in pending}
    versions: dict[int, RuleVersion] = {i: rules_in_force(community, occurred[i]) for i in pending}

    valid: list[int] = []
    for i in pending:
        if events[i].type not in versions[i].rules.known_types:
            outcomes[i] = IngestOutcome(
                events[i].client_id,
                IngestStatus.INVALID,
                None,
                [
                    FieldError(
                        "type", "unknown_event_type", f"unknown event type '{events[i].type}'"
                    )
                ],
            )
        else:
            valid.append(i)
    if not valid:
        return

    members = _lock_members(community.pk, [events[i] for i in valid], occurred, now)
    days = {i: local_day(occurred[i], tz) for i in valid}
    tallies = _read_tallies({(members[events[i].member].id, days[i]) for i in valid})
    touched_tallies: set[tuple[int, dt.date, str]] = set()
    period_deltas: dict[tuple[int, str, dt.date], int] = defaultdict(int)

    event_rows: list[tuple[Any, ...]] = []
    entries: list[tuple[str, int, int, int, str, int]] = []
    for i in valid:
        event = events[i]
        state = members[event.member]
        day = days[i]
        type_key = (state.id, day, event.type)
        total_key = (state.id, day, DailyTally.TOTAL)
        if event.type == EventType.JOIN and state.status == MemberStatus.LEFT:
            state.status, state.left_at, state.changed = MemberStatus.ACTIVE, None, True
        awards = score_event(
            versions[i].rules,
            event_type=event.type,
            member_left=state.status == MemberStatus.LEFT,
            type_today=tallies.get(type_key, Tally()),
            total_today=tallies.get(total_key, Tally()),
        )
        points = sum(a.points for a in awards)
        before_type, before_total = tallies.get(type_key, Tally()), tallies.get(total_key, Tally())
        tallies[type_key] = Tally(before_type.count + 1, before_type.points + points)
        tallies[total_key] = Tally(before_total.count + 1, before_total.points + points)
        touched_tallies.update((type_key, total_key))
        if points:
            state.balance += points
            state.lifetime += points
            state.changed = True
            for kind, start in _periods_of(day):
                period_deltas[(state.id, kind, start)] += points
            for award in awards:
                if award.points:
                    entries.append(
                        (
                            event.client_id,
                            state.id,
                            award.points,
                            state.balance,
                            award.rule,
                            versions[i].version,
                        )
                    )
        if event.type == EventType.LEAVE and state.status != MemberStatus.LEFT:
            state.status, state.left_at, state.changed = MemberStatus.LEFT, occurred[i], True
        result = {
            "id": event.client_id,
            "status": IngestStatus.ACCEPTED,
            "points": points,
            "balance": state.balance,
            "rule_version": versions[i].version,
            "awards": [a.as_dict() for a in awards],
        }
        outcomes[i] = IngestOutcome(event.client_id, IngestStatus.ACCEPTED, result)
        event_rows.append(
            (
                event.client_id,
                state.id,
                event.type,
                occurred[i],
                day,
                event.target,
                _json(event.content),
                event.score,
                event.group,
                _json(event.meta),
                hashes[i],
                versions[i].version,
                points,
                _json(result),
            )
        )

    event_ids = _insert_events(community.pk, event_rows, now)
    if len(event_ids) != len(event_rows):
        raise _ConcurrentDuplicate
    _write_tallies(community.pk, {k: tallies[k] for k in touched_tallies})
    _insert_entries(community.pk, entries, event_ids, now)
    changed = [s for s in members.values() if s.changed]
    _write_members(changed)
    _add_period_points(community.pk, period_deltas, members)


def _periods_of(day: dt.date) -> tuple[tuple[str, dt.date], ...]:
    return (
        (PeriodKind.ALL_TIME.value, PeriodTotal.ALL_TIME_START),
        (PeriodKind.MONTH.value, month_start(day)),
        (PeriodKind.WEEK.value, week_start(day)),
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _lock_members(
    community_id: int,
    events: list[EventInput],
    occurred: dict[int, dt.datetime],
    now: dt.datetime,
) -> dict[str, _MemberState]:
    """Create unknown members and lock every member row of the batch, in external_id order."""
    first_seen: dict[str, dt.datetime] = {}
    names: dict[str, str] = {}
    for event in events:
        when = event.occurred_at or now
        if event.member not in first_seen or when < first_seen[event.member]:
            first_seen[event.member] = when
        name = event.meta.get("display_name") if isinstance(event.meta, dict) else None
        if isinstance(name, str) and name.strip():
            names[event.member] = name.strip()[:200]
    ordered = sorted(first_seen)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_member AS m
                (community_id, external_id, display_name, status, balance, held,
                 lifetime_points, joined_at, last_event_at, created_at)
            SELECT %s, x.external_id, x.display_name, 'active', 0, 0, 0, x.first_seen,
                   x.first_seen, %s
            FROM unnest(%s::text[], %s::text[], %s::timestamptz[])
                 WITH ORDINALITY AS x(external_id, display_name, first_seen, n)
            ORDER BY x.n
            ON CONFLICT (community_id, external_id) DO UPDATE SET
                display_name = CASE WHEN EXCLUDED.display_name <> ''
                                    THEN EXCLUDED.display_name ELSE m.display_name END,
                last_event_at = GREATEST(m.last_event_at, EXCLUDED.last_event_at)
            RETURNING m.external_id, m.id, m.balance, m.lifetime_points, m.status, m.left_at
            """,
            [
                community_id,
                now,
                ordered,
                [names.get(m, "") for m in ordered],
                [first_seen[m] for m in ordered],
            ],
        )
        return {
            row[0]: _MemberState(
                id=row[1], balance=row[2], lifetime=row[3], status=row[4], left_at=row[5]
            )
            for row in cursor.fetchall()
        }


def _read_tallies(keys: set[tuple[int, dt.date]]) -> dict[tuple[int, dt.date, str], Tally]:
    if not keys:
        return {}
    member_ids, days = zip(*sorted(keys), strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.member_id, t.day, t.event_type, t.count, t.points
            FROM points_dailytally t
            JOIN unnest(%s::bigint[], %s::date[]) AS k(member_id, day)
              ON t.member_id = k.member_id AND t.day = k.day AND t.span = 'day'
            """,
            [list(member_ids), list(days)],
        )
        return {(r[0], r[1], r[2]): Tally(r[3], r[4]) for r in cursor.fetchall()}


def _insert_events(
    community_id: int, rows: list[tuple[Any, ...]], now: dt.datetime
) -> dict[str, int]:
    """Insert the scored events; an id committed meanwhile by another request is skipped
    (and detected by the caller from the missing id)."""
    columns = list(zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_event
                (community_id, client_id, member_id, type, occurred_at, received_at, local_day,
                 target, content, score, "group", meta, body_hash, rule_version, points, result)
            SELECT %s, x.client_id, x.member_id, x.type, x.occurred_at, %s, x.local_day,
                   x.target, x.content::jsonb, x.score, x.grp, COALESCE(x.meta::jsonb, '{}'),
                   x.body_hash, x.rule_version, x.points, x.result::jsonb
            FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::timestamptz[], %s::date[],
                        %s::text[], %s::text[], %s::smallint[], %s::text[], %s::text[],
                        %s::text[], %s::int[], %s::int[], %s::text[])
                 AS x(client_id, member_id, type, occurred_at, local_day, target, content,
                      score, grp, meta, body_hash, rule_version, points, result)
            ON CONFLICT (community_id, client_id) DO NOTHING
            RETURNING client_id, id
            """,
            [community_id, now, *[list(c) for c in columns]],
        )
        return {row[0]: row[1] for row in cursor.fetchall()}


def _write_tallies(community_id: int, tallies: dict[tuple[int, dt.date, str], Tally]) -> None:
    if not tallies:
        return
    keys = sorted(tallies)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_dailytally AS t (community_id, member_id, day, event_type, count,
                                                points)
            SELECT %s, x.member_id, x.day, x.event_type, x.count, x.points
            FROM unnest(%s::bigint[], %s::date[], %s::text[], %s::int[], %s::int[])
                 AS x(member_id, day, event_type, count, points)
            ON CONFLICT (member_id, span, day, event_type) DO UPDATE
                SET count = EXCLUDED.count, points = EXCLUDED.points
            """,
            [
                community_id,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [tallies[k].count for k in keys],
                [tallies[k].points for k in keys],
            ],
        )


def _insert_entries(
    community_id: int,
    entries: list[tuple[str, int, int, int, str, int]],
    event_ids: dict[str, int],
    now: dt.datetime,
) -> None:
    if not entries:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_ledgerentry
                (community_id, member_id, event_id, kind, points, balance_after, rule,
                 rule_version, reason, created_at)
            SELECT %s, x.member_id, x.event_id, %s, x.points, x.balance_after, x.rule,
                   x.rule_version, '', %s
            FROM unnest(%s::bigint[], %s::bigint[], %s::int[], %s::bigint[], %s::text[],
                        %s::int[]) WITH ORDINALITY
                 AS x(member_id, event_id, points, balance_after, rule, rule_version, n)
            ORDER BY x.n
            """,
            [
                community_id,
                EntryKind.AWARD.value,
                now,
                [e[1] for e in entries],
                [event_ids[e[0]] for e in entries],
                [e[2] for e in entries],
                [e[3] for e in entries],
                [e[4] for e in entries],
                [e[5] for e in entries],
            ],
        )


def _add_period_points(
    community_id: int,
    deltas: dict[tuple[int, str, dt.date], int],
    members: dict[str, _MemberState],
) -> None:
    """Add the batch's points to each member's period totals and keep ``active`` in step
    with the member's status (left members are not ranked)."""
    status_changed = {
        s.id: s.status == MemberStatus.ACTIVE
        for s in members.values()
        if s.status != s.initial_status
    }
    if not deltas and not status_changed:
        return
    active = {s.id: s.status == MemberStatus.ACTIVE for s in members.values()}
    keys = sorted(deltas)
    with connection.cursor() as cursor:
        if keys:
            cursor.execute(
                """
                INSERT INTO points_periodtotal AS p (community_id, member_id, kind, start, points,
                                                     active)
                SELECT %s, x.member_id, x.kind, x.start, x.points, x.active
                FROM unnest(%s::bigint[], %s::text[], %s::date[], %s::bigint[], %s::boolean[])
                     AS x(member_id, kind, start, points, active)
                ON CONFLICT (member_id, kind, start) DO UPDATE
                    SET points = p.points + EXCLUDED.points, active = EXCLUDED.active
                """,
                [
                    community_id,
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [k[2] for k in keys],
                    [deltas[k] for k in keys],
                    [active[k[0]] for k in keys],
                ],
            )
        if status_changed:
            ids = sorted(status_changed)
            cursor.execute(
                """
                UPDATE points_periodtotal AS p SET active = x.active
                FROM unnest(%s::bigint[], %s::boolean[]) AS x(member_id, active)
                WHERE p.member_id = x.member_id AND p.active IS DISTINCT FROM x.active
                """,
                [ids, [status_changed[i] for i in ids]],
            )


def _write_members(states: list[_MemberState]) -> None:
    if not states:
        return
    states = sorted(states, key=lambda s: s.id)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE points_member AS m
            SET balance = x.balance, lifetime_points = x.lifetime, status = x.status,
                left_at = x.left_at
            FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[],
                        %s::timestamptz[]) AS x(id, balance, lifetime, status, left_at)
            WHERE m.id = x.id
            """,
            [
                [s.id for s in states],
                [s.balance for s in states],
                [s.lifetime for s in states],
                [s.status for s in states],
                [s.left_at for s in states],
            ],
        )


# --- reconciliation ---------------------------------------------------------------------------


def ledger_reconcile(*, community: Community, period: str) -> dict[str, Any]:
    """Check, in one set-based query, that every balance equals the sum of its entries and
    that the latest entry's ``balance_after`` agrees. Records one ``JobRun`` per community and
    period; a re-run of a finished period returns the recorded result and writes nothing."""
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
                SELECT count(*) AS members,
                       count(*) FILTER (WHERE m.balance <> COALESCE(s.total, 0)) AS mismatched,
                       COALESCE(array_agg(m.external_id) FILTER (
                           WHERE m.balance <> COALESCE(s.total, 0)), '{}') AS examples
                FROM points_member m
                LEFT JOIN (
                    SELECT member_id, sum(points) AS total
                    FROM points_ledgerentry WHERE community_id = %s GROUP BY member_id
                ) s ON s.member_id = m.id
                WHERE m.community_id = %s
                """,
                [community.pk, community.pk],
            )
            members, mismatched, examples = cursor.fetchone()
        result = {"members": members, "mismatched": mismatched, "examples": list(examples)[:20]}
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
            return False
        cursor.execute(
            "DELETE FROM points_ranksnapshot WHERE community_id = %s AND kind = %s AND start = %s",
            [community.pk, kind, start],
        )
        cursor.execute(
            """
            INSERT INTO points_ranksnapshot (community_id, kind, start, member_id, rank, position,
                                             points)
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
                "built_at": timezone.now(),
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
    for kind, start in _periods_of(day):
        built += rank_snapshot_build(community=community, kind=kind, start=start)
    return built


def rank_snapshot_ensure(*, community: Community, kind: str, start: dt.date) -> None:
    """Make sure a read finds a snapshot: build the first one now; if the one there is older
    than a minute (the beat job normally keeps current periods within 30 s), queue a rebuild
    and serve the one there meanwhile."""
    import logging

    from points.models import RankBuild

    build = RankBuild.objects.filter(community=community, kind=kind, start=start).first()
    if build is None:
        rank_snapshot_build(community=community, kind=kind, start=start, force=True)
        return
    if timezone.now() - build.built_at > 2 * RANK_FRESHNESS:
        from points.tasks import rank_snapshot_build_period

        try:
            rank_snapshot_build_period.delay(community.pk, kind, start.isoformat())
        except Exception:  # noqa: BLE001 - a broker outage must not fail a read
            logging.getLogger(__name__).warning("could not queue a rank rebuild", exc_info=True)


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
