"""Event ingestion: store, score and post a batch of events, each exactly once.

The shape of one call, chosen so that a single event costs three round trips to PostgreSQL
after the API key (replay check; lock + read state, pipelined; write everything + commit,
pipelined) and a batch of 1,000 costs the same three:

1. *Replay check*, no lock: ids already stored answer with their first result (or 409).
2. *Lock and read*, one pipeline: upsert-and-lock every member the batch touches (posters and
   the members paid: a reacted-to author, an inviter) in ``external_id`` order, then read
   their tallies (day, week, month), the once-only keys, recent content hashes and the
   scoring events inside cooldown windows. The reads are separate statements after the
   lock, so each sees every transaction that committed before we got the lock.
3. *Score* in Python with ``points.rules`` (pure), event after event, in memory.
4. *Write*, one pipeline: events, tallies, once-only keys, ledger entries, members, period
   totals. If another transaction committed one of our ids (or keys) meanwhile, the insert
   says so and we start over: each id is scored once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from points import outbox
from points.exceptions import FieldError
from points.models import (
    Community,
    DailyTally,
    EntryKind,
    EventType,
    MemberStatus,
    PeriodKind,
    PeriodTotal,
)
from points.rules import Award, Room, Rules, Tally, content_gate, score_event, streak_after
from points.selectors import RuleVersion, rules_in_force
from points.timeutils import local_day, month_start, week_start

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
# How far before its community's creation an event may have happened (a bot importing a
# group's history); ``EVENTS_BACKFILL_DAYS`` in the settings.
DEFAULT_BACKFILL_DAYS = 365
MEMBER_ID_MAX_LENGTH = 64
DISPLAY_NAME_MAX_LENGTH = 200
# Printable to Python yet blank to a reader: Hangul fillers, the blank Braille pattern, Khmer
# inherent vowels, the combining grapheme joiner. Member ids also refuse variation selectors.
_BLANK_LETTERS = "\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
_BLANK_IN_NAMES = re.compile(f"[{_BLANK_LETTERS}]")
_BLANK_IN_IDS = re.compile(f"[{_BLANK_LETTERS}\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_COMBINING = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_COMBINING_PILE = re.compile(f"([{_COMBINING}]{{2}})[{_COMBINING}]+")
_ZWJ = "\u200d"
# In-memory tally spans; only DAY rows are stored. MONTH_DAYS: days of a month with a counted
# event of the type (what a monthly quota counts).
DAY, WEEK, MONTH, MONTH_DAYS = "day", "week", "month", "month_days"


def member_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a member id, or None.

    A member id is 1 to 64 printable characters (any script), without spaces, '/' or '\\',
    and not '.' or '..': every accepted id can be read back through
    ``…/members/<id>`` (percent-encoded where needed), and none hides control, bidirectional
    or zero-width characters from the members who see it on a board."""
    if not value:
        return "must not be empty"
    if len(value) > MEMBER_ID_MAX_LENGTH:
        return f"must be at most {MEMBER_ID_MAX_LENGTH} characters"
    if value in (".", ".."):
        return "must not be '.' or '..' (a URL path cannot carry them)"
    if "/" in value or "\\" in value:
        return "must not contain '/' or '\\' (a URL path cannot carry them)"
    if not value.isprintable() or " " in value or _BLANK_IN_IDS.search(value):
        return (
            "must not contain spaces, control characters, bidirectional or zero-width "
            "formatting, or other invisible characters"
        )
    return None


def display_name_clean(name: str) -> str:
    """A display name as other members may see it: NFC; without control characters,
    bidirectional overrides and isolates, zero-width characters (a zero-width joiner is kept
    between two emoji) or blank letters; whitespace runs as one space; at most two combining
    marks on a letter; at most 200 characters. Empty when nothing visible is left."""
    if not (name.isascii() and name.isprintable()):
        name = unicodedata.normalize("NFC", name)
        kept: list[str] = []
        for i, char in enumerate(name):
            if char.isprintable():
                if not _BLANK_IN_NAMES.match(char):
                    kept.append(char)
            elif char.isspace():
                kept.append(" ")
            elif char == _ZWJ and _joins_emoji(name, i):
                kept.append(char)
        name = _COMBINING_PILE.sub(r"\1", "".join(kept))
    return " ".join(name.split())[:DISPLAY_NAME_MAX_LENGTH]


def _joins_emoji(text: str, i: int) -> bool:
    before = text[i - 1] if i > 0 else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    emoji_before = before == "\ufe0f" or unicodedata.category(before or " ") in ("So", "Sk")
    return emoji_before and unicodedata.category(after or " ") == "So"


def occurred_at_window(community: Community, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """When an event may have happened: not before the community's creation minus its
    backfill limit (``EVENTS_BACKFILL_DAYS``, 365 by default), not after ``now`` plus
    ``MAX_CLOCK_SKEW`` (a bot's clock may run a little ahead). docs/rules.md says why."""
    days = getattr(settings, "EVENTS_BACKFILL_DAYS", DEFAULT_BACKFILL_DAYS)
    return community.created_at - dt.timedelta(days=days), now + MAX_CLOCK_SKEW


def _month_end(start: dt.date) -> dt.date:
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


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

    @property
    def content_id(self) -> str:
        content_id = (self.content or {}).get("id")
        return self.target or (content_id if isinstance(content_id, str) else "")


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
    """Another transaction committed one of our event ids or once-only keys while we scored:
    start over (the retry sees it)."""


@dataclass
class _MemberState:
    id: int
    balance: int
    lifetime: int
    status: str
    left_at: dt.datetime | None
    owed: int
    streak_days: int
    streak_last_day: dt.date | None
    changed: bool = False
    initial_status: str = ""
    recompute_streak: bool = False

    def __post_init__(self) -> None:
        self.initial_status = self.status


def event_ingest(*, community: Community, event: EventInput) -> IngestOutcome:
    return events_ingest(community=community, events=[event])[0]


def events_ingest(
    *, community: Community, events: Sequence[EventInput], now: dt.datetime | None = None
) -> list[IngestOutcome]:
    """Store, score and post a batch of events, each exactly once, in one transaction.

    Every item is independent: an invalid item, a replay or a conflict does not affect the
    others. Locks: the rows of every member the batch touches, in ``external_id`` order (the
    upsert takes them); nothing else is locked. A concurrent commit of one of our ids or
    once-only keys is detected by the inserts and makes us start over.
    """
    now = now or timezone.now()
    for _attempt in range(5):
        try:
            outcomes = _ingest_once(community, events, now)
        except _ConcurrentDuplicate:
            continue
        if any(o.status == IngestStatus.ACCEPTED for o in outcomes):
            transaction.on_commit(partial(_refresh_ranks, community.pk))
        return outcomes
    raise RuntimeError("event ingestion kept racing with concurrent duplicates")


def _refresh_ranks(community_id: int) -> None:
    from points.services import rank_refresh_soon

    rank_refresh_soon(community_id)


def _ingest_once(
    community: Community, events: Sequence[EventInput], now: dt.datetime
) -> list[IngestOutcome]:
    outcomes: list[IngestOutcome | None] = [None] * len(events)
    hashes = [e.body_hash() for e in events]

    # Within the batch: the first occurrence of an id wins, a later copy replays or conflicts.
    first_index: dict[str, int] = {}
    fresh: list[int] = []
    for i, event in enumerate(events):
        if event.client_id not in first_index:
            first_index[event.client_id] = i
            fresh.append(i)
    stored = _stored_events(community.pk, [events[i].client_id for i in fresh])
    pending: list[int] = []
    for i in fresh:
        found = stored.get(events[i].client_id)
        if found is None:
            pending.append(i)
        elif found[0] == hashes[i]:
            outcomes[i] = IngestOutcome(events[i].client_id, IngestStatus.REPLAYED, found[1])
        else:
            outcomes[i] = _conflict(events[i].client_id)

    if pending:
        with transaction.atomic():
            _Batch(community, events, hashes, now).run(pending, outcomes)

    # Later copies of an id: an id already stored is compared with the stored event (as its
    # first copy was), never with a copy that conflicted with it; else with the first copy.
    for i, event in enumerate(events):
        if outcomes[i] is None:
            found = stored.get(event.client_id)
            if found is not None:
                outcomes[i] = (
                    IngestOutcome(event.client_id, IngestStatus.REPLAYED, found[1])
                    if found[0] == hashes[i]
                    else _conflict(event.client_id)
                )
                continue
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
    return {row[0]: (row[1], _loads(row[2])) for row in rows}


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _conflict(client_id: str) -> IngestOutcome:
    return IngestOutcome(
        client_id,
        IngestStatus.CONFLICT,
        None,
        [FieldError("id", "conflict", "this id was already used with a different body")],
    )


def _invalid(client_id: str, path: str, code: str, message: str) -> IngestOutcome:
    return IngestOutcome(client_id, IngestStatus.INVALID, None, [FieldError(path, code, message)])


def pipelined(statements: list[tuple[str, list[Any]]]) -> list[list[tuple[Any, ...]]]:
    """Run statements in one psycopg pipeline (one round trip); return each one's rows
    (empty for statements that return none). Errors surface here, aborting the transaction."""
    raw = connection.connection
    if raw is None:
        connection.ensure_connection()
        raw = connection.connection
    results: list[list[tuple[Any, ...]]] = []
    # Errors raised by the pipeline itself come from psycopg, not through Django's cursor:
    # wrap them as Django's (so a broken connection is marked and replaced, as usual).
    with connection.wrap_database_errors, raw.pipeline() as pipeline:
        cursors = []
        for sql, params in statements:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            cursors.append(cursor)
        pipeline.sync()
        for cursor in cursors:
            results.append(list(cursor.fetchall()) if cursor.description else [])
            cursor.close()
    return results


def periods_of(day: dt.date) -> tuple[tuple[str, dt.date], ...]:
    return (
        (PeriodKind.ALL_TIME.value, PeriodTotal.ALL_TIME_START),
        (PeriodKind.MONTH.value, month_start(day)),
        (PeriodKind.WEEK.value, week_start(day)),
    )


def _recordset(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as one JSON parameter for ``json_to_recordset``: one C-speed ``json.dumps``
    instead of adapting one array per column in Python (dates and times as ISO text).

    The planner guesses 100 rows for any ``json_to_recordset``, and with that guess it joins
    a table by hash (scanning every event or member of the community). So every statement
    that joins a table to such rows also filters that table by ``= ANY(<key array>)``: an
    index scan whatever the plan (generic or custom)."""
    return json.dumps(
        [dict(zip(names, row, strict=True)) for row in rows], default=str, ensure_ascii=False
    )


EVENT_COLUMNS = (
    "client_id",
    "member_id",
    "type",
    "occurred_at",
    "local_day",
    "target",
    "content",
    "score",
    "grp",
    "meta",
    "body_hash",
    "rule_version",
    "points",
    "result",
    "beneficiary_id",
    "content_hash",
)
ENTRY_COLUMNS = (
    "client_id",
    "member_id",
    "kind",
    "points",
    "balance_after",
    "rule",
    "rule_version",
    "reason",
    "n",
)
MEMBER_COLUMNS = (
    "id",
    "balance",
    "lifetime",
    "status",
    "left_at",
    "owed",
    "streak_days",
    "streak_last_day",
    "last_event_at",
    "display_name",
)


@dataclass
class _Plan:
    """One event after validation: who pays whom, on which day, under which rules."""

    index: int
    event: EventInput
    occurred: dt.datetime
    day: dt.date
    version: RuleVersion
    beneficiary: str | None  # external id of the member paid, None: nobody
    rule_type: str = ""  # the type whose rule pays (a join pays its inviter by ``invite``)
    gate: str | None = None
    content_hash: str = ""
    once_key: str | None = None


class _Batch:
    """The state of one ingestion transaction (see the module docstring for its steps)."""

    def __init__(
        self,
        community: Community,
        events: Sequence[EventInput],
        hashes: list[str],
        now: dt.datetime,
    ) -> None:
        self.community = community
        self.events = events
        self.hashes = hashes
        self.now = now
        self.tz = community.timezone
        self.names: dict[str, str] = {}  # display names sent in the batch, by member
        self.last_seen: dict[str, dt.datetime] = {}  # each poster's latest event in the batch

    # -- 1. validate and plan ------------------------------------------------------------

    def run(self, pending: list[int], outcomes: list[IngestOutcome | None]) -> None:
        plans: list[_Plan] = []
        for i in pending:
            plan = self._plan(i, outcomes)
            if plan is not None:
                plans.append(plan)
        if not plans:
            return
        self._plan_joins(plans)
        members = self._lock_members(plans)
        state = self._read_state(plans, members)
        self._score(plans, members, state, outcomes)
        self._write(plans, members, state, outcomes)

    def _plan(self, i: int, outcomes: list[IngestOutcome | None]) -> _Plan | None:
        event = self.events[i]
        occurred = event.occurred_at or self.now
        version = rules_in_force(self.community, occurred)
        rules = version.rules
        if event.type not in rules.known_types:
            outcomes[i] = _invalid(
                event.client_id, "type", "unknown_event_type", f"unknown event type '{event.type}'"
            )
            return None
        plan = _Plan(
            i, event, occurred, local_day(occurred, self.tz), version, event.member, event.type
        )
        if event.type == EventType.REACTION:
            author = (event.content or {}).get("author")
            if not isinstance(author, str) or not author:
                outcomes[i] = _invalid(
                    event.client_id,
                    "content.author",
                    "required",
                    "is required for reaction (the member who is paid)",
                )
                return None
            plan.beneficiary = author
            if author == event.member:
                plan.gate = "own_content"
            else:
                plan.once_key = f"reaction:{event.target}:{event.member}"
        elif event.type == EventType.CONTENT_FEATURED:
            if not event.content_id:
                outcomes[i] = _invalid(
                    event.client_id,
                    "target",
                    "required",
                    "is required for content_featured (the featured content's id)",
                )
                return None
            plan.once_key = f"featured:{event.content_id}"
        elif event.type in (EventType.INVITE, EventType.PEER_SCORE, EventType.LEAVE):
            plan.beneficiary = None
        elif event.type == EventType.JOIN:
            plan.beneficiary = None  # set by _plan_joins when an inviter is owed points
        gate, content_hash = content_gate(rules, event.type, event.content)
        plan.gate = plan.gate or gate
        plan.content_hash = content_hash
        return plan

    def _plan_joins(self, plans: list[_Plan]) -> None:
        """A join pays the member who invited the joiner first, once per invitee, never for a
        re-join (the joiner joined before) nor a self-invite (refused by the API)."""
        joins = [p for p in plans if p.event.type == EventType.JOIN]
        if not joins:
            return
        joiners = sorted({p.event.member for p in joins})
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT j.ext,
                       (SELECT m.external_id FROM points_event e
                          JOIN points_member m ON m.id = e.member_id
                         WHERE e.community_id = %s AND e.type = 'invite' AND e.target = j.ext
                           AND e.reversed_at IS NULL AND m.external_id <> j.ext
                         ORDER BY e.occurred_at, e.id LIMIT 1),
                       EXISTS (SELECT 1 FROM points_event e
                          JOIN points_member m ON m.id = e.member_id
                         WHERE e.community_id = %s AND e.type = 'join' AND m.community_id = %s
                           AND m.external_id = j.ext)
                FROM unnest(%s::text[]) AS j(ext)
                """,
                [self.community.pk, self.community.pk, self.community.pk, joiners],
            )
            found = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        # Invites earlier in this batch count too (they are not stored yet).
        batch_inviter: dict[str, str] = {}
        for plan in plans:
            event = plan.event
            if event.type == EventType.INVITE and event.target and event.target != event.member:
                batch_inviter.setdefault(event.target, event.member)
        seen: set[str] = set()
        for plan in sorted(joins, key=lambda p: (p.occurred, p.index)):
            inviter, joined_before = found.get(plan.event.member, (None, False))
            inviter = inviter or batch_inviter.get(plan.event.member)
            if inviter is None:
                continue
            plan.beneficiary = inviter
            plan.rule_type = EventType.INVITE.value
            if joined_before or plan.event.member in seen:
                plan.gate = "rejoin"
            else:
                plan.once_key = f"invite:{plan.event.member}"
            seen.add(plan.event.member)

    # -- 2. lock members, read their state ------------------------------------------------

    def _lock_members(self, plans: list[_Plan]) -> dict[str, _MemberState]:
        """Create unknown members and lock every member row the batch touches, in
        ``external_id`` order, byte-wise (``COLLATE "C"``, as every service that locks several
        members does; one statement, so the order holds)."""
        first_seen: dict[str, dt.datetime] = {}
        last_seen: dict[str, dt.datetime] = {}
        names: dict[str, str] = {}
        for plan in plans:
            actor = plan.event.member
            if actor not in last_seen or plan.occurred > last_seen[actor]:
                last_seen[actor] = plan.occurred
            for ext in (plan.event.member, plan.beneficiary):
                if ext is not None and (ext not in first_seen or plan.occurred < first_seen[ext]):
                    first_seen[ext] = plan.occurred
            name = (
                plan.event.meta.get("display_name") if isinstance(plan.event.meta, dict) else None
            )
            if isinstance(name, str) and (clean := display_name_clean(name)):
                names[plan.event.member] = clean
        ordered = sorted(first_seen)
        # New members are inserted (DO NOTHING leaves existing rows untouched: no dead row
        # version per event), then every row is locked in order; both in one round trip.
        _inserted, rows = pipelined(
            [
                (
                    """
                    INSERT INTO points_member
                        (community_id, external_id, display_name, status, balance, held,
                         lifetime_points, joined_at, last_event_at, created_at)
                    SELECT %s, x.external_id, x.display_name, 'active', 0, 0, 0, x.first_seen,
                           x.first_seen, %s
                    FROM json_to_recordset(%s::json)
                         AS x(external_id text, display_name text, first_seen timestamptz)
                    ORDER BY x.external_id COLLATE "C"
                    ON CONFLICT (community_id, external_id) DO NOTHING
                    """,
                    [
                        self.community.pk,
                        self.now,
                        _recordset(
                            ("external_id", "display_name", "first_seen"),
                            [(m, names.get(m, ""), first_seen[m]) for m in ordered],
                        ),
                    ],
                ),
                (
                    """
                    SELECT m.external_id, m.id, m.balance, m.lifetime_points, m.status,
                           m.left_at, m.owed, m.streak_days, m.streak_last_day,
                           (SELECT rules_revision FROM points_community WHERE id = %s)
                    FROM points_member m
                    WHERE m.community_id = %s AND m.external_id = ANY(%s)
                    ORDER BY m.external_id COLLATE "C"
                    FOR NO KEY UPDATE OF m
                    """,
                    [self.community.pk, self.community.pk, ordered],
                ),
            ]
        )
        revision = rows[0][9]
        if revision != self.community.rules_revision:
            # A rule set version was published since this community row was read (the API
            # key cache keeps it a few seconds): score with the current versions.
            self.community.rules_revision = revision
            raise _ConcurrentDuplicate
        self.names, self.last_seen = names, last_seen
        return {
            row[0]: _MemberState(
                id=row[1],
                balance=row[2],
                lifetime=row[3],
                status=row[4],
                left_at=row[5],
                owed=row[6],
                streak_days=row[7],
                streak_last_day=row[8],
            )
            for row in rows
        }

    def _read_state(self, plans: list[_Plan], members: dict[str, _MemberState]) -> _State:
        cid = self.community.pk
        # Only day tallies are stored; a week's or month's is summed from them, and only where
        # a rule needs it (a weekly or monthly cap on the type, a monthly quota).
        spans: set[tuple[int, str, dt.date, dt.date, str]] = set()
        for plan in plans:
            rules = plan.version.rules
            payee = members[plan.beneficiary or plan.event.member].id
            spans.add((payee, DAY, plan.day, plan.day, ""))
            if plan.rule_type in rules.weekly_caps:
                start = week_start(plan.day)
                spans.add((payee, WEEK, start, start + dt.timedelta(days=6), plan.rule_type))
            quota = rules.monthly_quota
            if plan.rule_type in rules.monthly_caps or (quota and quota.type == plan.rule_type):
                start = month_start(plan.day)
                spans.add((payee, MONTH, start, _month_end(start), plan.rule_type))
        span_list = sorted(spans)
        statements: list[tuple[str, list[Any]]] = [
            (
                """
                SELECT k.member_id, k.span, k.start, t.event_type, sum(t.count)::int,
                       sum(t.points)::int, (count(*) FILTER (WHERE t.count > 0))::int
                FROM unnest(%s::bigint[], %s::text[], %s::date[], %s::date[], %s::text[])
                     AS k(member_id, span, start, stop, type)
                JOIN points_dailytally t
                  ON t.member_id = k.member_id AND t.day BETWEEN k.start AND k.stop
                 AND (k.type = '' OR t.event_type = k.type)
                GROUP BY k.member_id, k.span, k.start, t.event_type
                """,
                [[s[i] for s in span_list] for i in range(5)],
            )
        ]
        wanted = {p.once_key for p in plans if p.once_key}
        for plan in plans:
            rules, mid = plan.version.rules, members[plan.event.member].id
            if rules.streak is not None and rules.streak.type == plan.event.type:
                wanted.add(f"streak:{mid}:{plan.day.isoformat()}")
            if rules.monthly_quota is not None and rules.monthly_quota.type == plan.event.type:
                wanted.add(f"quota:{mid}:{month_start(plan.day):%Y-%m}")
        keys = sorted(k for k in wanted if k)
        named = ["tallies"]
        if keys:
            named.append("keys")
            statements.append(
                (
                    "SELECT key FROM points_awardonce WHERE community_id = %s AND key = ANY(%s)",
                    [cid, keys],
                )
            )
        # Look-ups per (member, …) through LATERAL index probes: the cost follows the batch,
        # never the size of the event table.
        hashed = [p for p in plans if p.content_hash]
        if hashed:
            named.append("hashes")
            statements.append(
                (
                    """
                    SELECT k.member_id, e.content_hash, e.occurred_at
                    FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[])
                         AS k(member_id, content_hash, since)
                    CROSS JOIN LATERAL (
                        SELECT e.content_hash, e.occurred_at FROM points_event e
                        WHERE e.member_id = k.member_id AND e.content_hash = k.content_hash
                          AND e.content_hash <> '' AND e.occurred_at >= k.since
                          AND e.reversed_at IS NULL
                    ) e
                    """,
                    [
                        [members[p.event.member].id for p in hashed],
                        [p.content_hash for p in hashed],
                        [
                            p.occurred - dt.timedelta(days=p.version.rules.duplicate_window_days)
                            for p in hashed
                        ],
                    ],
                )
            )
        cooled = [p for p in plans if p.rule_type in p.version.rules.cooldowns and not p.gate]
        if cooled:
            named.append("scored")
            statements.append(
                (
                    """
                    SELECT k.member_id, k.type, e.occurred_at
                    FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::int[])
                         AS k(member_id, type, at, gap)
                    CROSS JOIN LATERAL (
                        SELECT e.occurred_at FROM points_event e
                        WHERE e.community_id = %s AND e.member_id = k.member_id
                          AND e.occurred_at > k.at - k.gap * interval '1 second'
                          AND e.occurred_at < k.at + k.gap * interval '1 second'
                          AND e.type = k.type AND e.points > 0 AND e.reversed_at IS NULL
                    ) e
                    """,
                    [
                        [members[p.event.member].id for p in cooled],
                        [p.rule_type for p in cooled],
                        [p.occurred for p in cooled],
                        [p.version.rules.cooldowns[p.rule_type] for p in cooled],
                        cid,
                    ],
                )
            )
        results = dict(zip(named, pipelined(statements), strict=True))
        state = _State()
        for member_id, span, day, event_type, count, points, days in results["tallies"]:
            state.tallies[(member_id, span, day, event_type)] = Tally(count, points)
            if span == MONTH:
                state.tallies[(member_id, MONTH_DAYS, day, event_type)] = Tally(days, 0)
        state.once_keys = {row[0] for row in results.get("keys", [])}
        for member_id, content_hash, at in results.get("hashes", []):
            state.hashes[(member_id, content_hash)].append(at)
        for member_id, event_type, at in results.get("scored", []):
            state.scored_at[(member_id, event_type)].append(at)
        return state

    # -- 3. score -------------------------------------------------------------------------

    def _score(
        self,
        plans: list[_Plan],
        members: dict[str, _MemberState],
        state: _State,
        outcomes: list[IngestOutcome | None],
    ) -> None:
        ext_of = {state_.id: ext for ext, state_ in members.items()}
        for plan in plans:
            event = plan.event
            rules = plan.version.rules
            actor = members[event.member]
            if event.type == EventType.JOIN and actor.status == MemberStatus.LEFT:
                actor.status, actor.left_at, actor.changed = MemberStatus.ACTIVE, None, True
            payee = members[plan.beneficiary] if plan.beneficiary else None
            awards: list[tuple[_MemberState, Award]] = []
            counted = False
            if payee is not None:
                gate = plan.gate or self._db_gate(plan, rules, actor, state)
                room = state.room(payee.id, plan.day, plan.rule_type)
                main = score_event(
                    rules,
                    event_type=plan.rule_type,
                    member_left=payee.status == MemberStatus.LEFT,
                    type_today=room.type_today,
                    total_today=room.total_today,
                    type_week=room.type_week,
                    type_month=room.type_month,
                    gate=gate,
                    pays_actor=payee is actor
                    and plan.rule_type == event.type
                    and event.type != EventType.REACTION,
                )
                awards.extend((payee, a) for a in main)
                counted = gate is None and payee.status != MemberStatus.LEFT
                points = sum(a.points for a in main)
                if counted:
                    state.count(payee.id, plan.day, plan.rule_type, points)
                    if plan.once_key:
                        state.once_keys.add(plan.once_key)
                        state.new_keys.append((plan, payee.id, "once", ""))
                    if plan.content_hash:
                        state.hashes[(actor.id, plan.content_hash)].append(plan.occurred)
                    if points > 0 and plan.rule_type in rules.cooldowns:
                        state.scored_at[(actor.id, plan.rule_type)].append(plan.occurred)
                if counted and payee is actor:
                    awards.extend((actor, b) for b in self._bonuses(plan, rules, actor, state))
            self._post(plan, awards, state)
            if event.type == EventType.LEAVE and actor.status != MemberStatus.LEFT:
                actor.status, actor.left_at, actor.changed = MemberStatus.LEFT, plan.occurred, True
            total = sum(a.points for m, a in awards if m is actor)
            result = {
                "id": event.client_id,
                "status": IngestStatus.ACCEPTED,
                "points": total,
                "balance": actor.balance,
                "rule_version": plan.version.version,
                "awards": [{**a.as_dict(), "member": ext_of[m.id]} for m, a in awards],
            }
            outcomes[plan.index] = IngestOutcome(event.client_id, IngestStatus.ACCEPTED, result)
            state.events.append((plan, payee, sum(a.points for _m, a in awards), result))

    def _db_gate(self, plan: _Plan, rules: Rules, actor: _MemberState, state: _State) -> str | None:
        if plan.once_key and plan.once_key in state.once_keys:
            return "once"
        if plan.content_hash:
            window = dt.timedelta(days=rules.duplicate_window_days)
            for at in state.hashes.get((actor.id, plan.content_hash), []):
                if plan.occurred - window <= at <= plan.occurred:
                    return "duplicate_content"
        cooldown = rules.cooldowns.get(plan.rule_type)
        if cooldown:
            gap = dt.timedelta(seconds=cooldown)
            for at in state.scored_at.get((actor.id, plan.rule_type), []):
                if abs(plan.occurred - at) < gap:
                    return "cooldown"
        return None

    def _bonuses(
        self, plan: _Plan, rules: Rules, member: _MemberState, state: _State
    ) -> list[Award]:
        """Streak and monthly-quota bonuses earned by this event (first counted event of its
        type that day, for the configured type). Bonuses are not cut by caps."""
        out: list[Award] = []
        if state.tallies[(member.id, DAY, plan.day, plan.event.type)].count != 1:
            return out
        streak, quota = rules.streak, rules.monthly_quota
        if streak is not None and streak.type == plan.event.type:
            if member.streak_last_day is not None and plan.day < member.streak_last_day:
                member.recompute_streak = True
            else:
                days, last = streak_after(member.streak_last_day, member.streak_days, plan.day)
                if (days, last) != (member.streak_days, member.streak_last_day):
                    member.streak_days, member.streak_last_day, member.changed = days, last, True
                    key = f"streak:{member.id}:{plan.day.isoformat()}"
                    if streak.bonus and days % streak.every == 0 and key not in state.once_keys:
                        out.append(Award("streak.bonus", streak.bonus, streak.bonus))
                        state.once_keys.add(key)
                        state.new_keys.append((plan, member.id, "streak", "", key))
        if quota is not None and quota.type == plan.event.type:
            month = month_start(plan.day)
            days_key = (member.id, MONTH_DAYS, month, quota.type)
            before = state.tallies[days_key]
            state.tallies[days_key] = Tally(before.count + 1, before.points)
            key = f"quota:{member.id}:{month:%Y-%m}"
            if before.count + 1 == quota.days and key not in state.once_keys:
                out.append(Award("monthly_quota.bonus", quota.bonus, quota.bonus))
                state.once_keys.add(key)
                state.new_keys.append((plan, member.id, "quota", quota.achievement, key))
        return out

    def _post(self, plan: _Plan, awards: list[tuple[_MemberState, Award]], state: _State) -> None:
        """Credit each award (paying back what the member owes first) in memory."""
        for member, award in awards:
            if not award.points:
                continue
            member.balance += award.points
            member.lifetime += award.points
            member.changed = True
            for kind, start in periods_of(plan.day):
                state.period_deltas[(member.id, kind, start)] += award.points
            state.entries.append(
                (
                    plan.event.client_id,
                    member.id,
                    EntryKind.AWARD.value,
                    award.points,
                    member.balance,
                    award.rule,
                    plan.version.version,
                    "",
                )
            )
            settle = min(member.owed, award.points)
            if settle:
                member.owed -= settle
                member.balance -= settle
                state.entries.append(
                    (
                        plan.event.client_id,
                        member.id,
                        EntryKind.SETTLEMENT.value,
                        -settle,
                        member.balance,
                        "owed",
                        None,
                        "pays back points owed from an earlier reversal",
                    )
                )

    # -- 4. write -------------------------------------------------------------------------

    def _write(
        self,
        plans: list[_Plan],
        members: dict[str, _MemberState],
        state: _State,
        outcomes: list[IngestOutcome | None],
    ) -> None:
        cid, now = self.community.pk, self.now
        rows = [
            (
                plan.event.client_id,
                members[plan.event.member].id,
                plan.event.type,
                plan.occurred,
                plan.day,
                plan.event.target,
                plan.event.content,
                plan.event.score,
                plan.event.group,
                plan.event.meta or {},
                self.hashes[plan.index],
                plan.version.version,
                points,
                result,
                payee.id if payee is not None else None,
                plan.content_hash,
            )
            for plan, payee, points, result in state.events
        ]
        statements: list[tuple[str, list[Any]]] = [
            (
                """
                INSERT INTO points_event
                    (community_id, client_id, member_id, type, occurred_at, received_at,
                     local_day, target, content, score, "group", meta, body_hash, rule_version,
                     points, result, beneficiary_id, content_hash)
                SELECT %s, x.client_id, x.member_id, x.type, x.occurred_at, %s, x.local_day,
                       x.target, x.content, x.score, x.grp, x.meta, x.body_hash,
                       x.rule_version, x.points, x.result, x.beneficiary_id, x.content_hash
                FROM json_to_recordset(%s::json)
                     AS x(client_id text, member_id bigint, type text, occurred_at timestamptz,
                          local_day date, target text, content jsonb, score smallint, grp text,
                          meta jsonb, body_hash text, rule_version int, points int,
                          result jsonb, beneficiary_id bigint, content_hash text)
                ON CONFLICT (community_id, client_id) DO NOTHING
                RETURNING client_id
                """,
                [cid, now, _recordset(EVENT_COLUMNS, rows)],
            )
        ]
        tally_keys = sorted(state.touched)
        if tally_keys:
            statements.append(
                (
                    """
                    INSERT INTO points_dailytally AS t
                        (community_id, member_id, day, event_type, count, points)
                    SELECT %s, x.member_id, x.day, x.event_type, x.count, x.points
                    FROM json_to_recordset(%s::json)
                         AS x(member_id bigint, day date, event_type text, count int,
                              points int)
                    ON CONFLICT (member_id, day, event_type) DO UPDATE
                        SET count = EXCLUDED.count, points = EXCLUDED.points
                    """,
                    [
                        cid,
                        _recordset(
                            ("member_id", "day", "event_type", "count", "points"),
                            [
                                (k[0], k[2], k[3], state.tallies[k].count, state.tallies[k].points)
                                for k in tally_keys
                            ],
                        ),
                    ],
                )
            )
        new_keys = [_key_row(k) for k in state.new_keys]
        if new_keys:
            statements.append(
                (
                    """
                    INSERT INTO points_awardonce
                        (community_id, key, member_id, event_id, kind, achievement, created_at)
                    SELECT %s, x.key, x.member_id, e.id, x.kind, x.achievement, %s
                    FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[])
                         AS x(key, member_id, client_id, kind, achievement)
                    JOIN points_event e ON e.community_id = %s AND e.client_id = x.client_id
                    WHERE e.community_id = %s AND e.client_id = ANY(%s::text[])
                    ON CONFLICT (community_id, key) DO NOTHING
                    RETURNING key
                    """,
                    [
                        cid,
                        now,
                        [k[0] for k in new_keys],
                        [k[1] for k in new_keys],
                        [k[2] for k in new_keys],
                        [k[3] for k in new_keys],
                        [k[4] for k in new_keys],
                        cid,
                        cid,
                        sorted({k[2] for k in new_keys}),
                    ],
                )
            )
        if state.entries:
            entries = state.entries
            statements.append(
                (
                    """
                    INSERT INTO points_ledgerentry
                        (community_id, member_id, event_id, kind, points, balance_after, rule,
                         rule_version, reason, created_at)
                    SELECT %s, x.member_id, e.id, x.kind, x.points, x.balance_after, x.rule,
                           x.rule_version, x.reason, %s
                    FROM json_to_recordset(%s::json)
                         AS x(client_id text, member_id bigint, kind text, points int,
                              balance_after bigint, rule text, rule_version int, reason text,
                              n int)
                    JOIN points_event e ON e.community_id = %s AND e.client_id = x.client_id
                    WHERE e.community_id = %s AND e.client_id = ANY(%s::text[])
                    ORDER BY x.n
                    """,
                    [
                        cid,
                        now,
                        _recordset(ENTRY_COLUMNS, [(*e, n) for n, e in enumerate(entries)]),
                        cid,
                        cid,
                        sorted({e[0] for e in entries}),
                    ],
                )
            )
        ext_of = {state_.id: ext for ext, state_ in members.items()}
        touched = sorted(members.values(), key=lambda s: s.id)
        statements.append(
            (
                """
                UPDATE points_member AS m
                SET balance = x.balance, lifetime_points = x.lifetime, status = x.status,
                    left_at = x.left_at, owed = x.owed, streak_days = x.streak_days,
                    streak_last_day = x.streak_last_day,
                    last_event_at = GREATEST(m.last_event_at, x.last_event_at),
                    display_name = COALESCE(NULLIF(x.display_name, ''), m.display_name)
                FROM json_to_recordset(%s::json)
                     AS x(id bigint, balance bigint, lifetime bigint, status text,
                          left_at timestamptz, owed bigint, streak_days int,
                          streak_last_day date, last_event_at timestamptz, display_name text)
                WHERE m.id = x.id AND m.id = ANY(%s::bigint[])
                """,
                [
                    _recordset(
                        MEMBER_COLUMNS,
                        [
                            (
                                s.id,
                                s.balance,
                                s.lifetime,
                                s.status,
                                s.left_at,
                                s.owed,
                                s.streak_days,
                                s.streak_last_day,
                                self.last_seen.get(ext_of[s.id]),
                                self.names.get(ext_of[s.id], ""),
                            )
                            for s in touched
                        ],
                    ),
                    [s.id for s in touched],
                ],
            )
        )
        statements.extend(_period_statements(cid, state.period_deltas, members))
        results = pipelined(statements)
        if len(results[0]) != len(rows):
            raise _ConcurrentDuplicate
        if new_keys and len(results[2 if tally_keys else 1]) != len(new_keys):
            raise _ConcurrentDuplicate
        outbox.publish(
            self.community, [("event.accepted", result) for _p, _m, _n, result in state.events]
        )
        recompute = [s for s in members.values() if s.recompute_streak]
        if recompute:
            from points.corrections import bonuses_rederive

            for member_state in sorted(recompute, key=lambda s: s.id):
                bonuses_rederive(community=self.community, member_id=member_state.id)


def _key_row(key: tuple[Any, ...]) -> tuple[str, int, str, str, str]:
    if len(key) == 4:  # (plan, member id, kind, achievement): the plan's own once-only key
        plan, member_id, kind, achievement = key
        return (plan.once_key, member_id, plan.event.client_id, plan.rule_type, achievement)
    plan, member_id, kind, achievement, name = key
    return (name, member_id, plan.event.client_id, kind, achievement)


@dataclass
class _State:
    """What the batch read, and what it changes, in memory."""

    tallies: defaultdict[tuple[int, str, dt.date, str], Tally] = field(
        default_factory=lambda: defaultdict(Tally)
    )
    touched: set[tuple[int, str, dt.date, str]] = field(default_factory=set)
    once_keys: set[str] = field(default_factory=set)
    new_keys: list[tuple[Any, ...]] = field(default_factory=list)
    hashes: defaultdict[tuple[int, str], list[dt.datetime]] = field(
        default_factory=lambda: defaultdict(list)
    )
    scored_at: defaultdict[tuple[int, str], list[dt.datetime]] = field(
        default_factory=lambda: defaultdict(list)
    )
    period_deltas: defaultdict[tuple[int, str, dt.date], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    entries: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[_Plan, _MemberState | None, int, dict[str, Any]]] = field(
        default_factory=list
    )

    def room(self, member_id: int, day: dt.date, event_type: str) -> Room:
        return Room(
            type_today=self.tallies[(member_id, DAY, day, event_type)],
            total_today=self.tallies[(member_id, DAY, day, DailyTally.TOTAL)],
            type_week=self.tallies[(member_id, WEEK, week_start(day), event_type)],
            type_month=self.tallies[(member_id, MONTH, month_start(day), event_type)],
        )

    def count(self, member_id: int, day: dt.date, event_type: str, points: int) -> None:
        """One more counted event of ``event_type`` for the member, worth ``points``."""
        for key in (
            (member_id, DAY, day, event_type),
            (member_id, DAY, day, DailyTally.TOTAL),
            (member_id, WEEK, week_start(day), event_type),
            (member_id, MONTH, month_start(day), event_type),
        ):
            before = self.tallies[key]
            self.tallies[key] = Tally(before.count + 1, before.points + points)
            if key[1] == DAY:
                self.touched.add(key)


def _period_statements(
    community_id: int,
    deltas: dict[tuple[int, str, dt.date], int],
    members: dict[str, _MemberState],
) -> list[tuple[str, list[Any]]]:
    """Add the batch's points to each member's period totals and keep ``active`` in step
    with the member's status (left members are not ranked)."""
    statements: list[tuple[str, list[Any]]] = []
    active = {s.id: s.status == MemberStatus.ACTIVE for s in members.values()}
    keys = sorted(deltas)
    if keys:
        statements.append(
            (
                """
                INSERT INTO points_periodtotal AS p (community_id, member_id, kind, start, points,
                                                     active)
                SELECT %s, x.member_id, x.kind, x.start, x.points, x.active
                FROM json_to_recordset(%s::json)
                     AS x(member_id bigint, kind text, start date, points bigint, active boolean)
                ON CONFLICT (member_id, kind, start) DO UPDATE
                    SET points = p.points + EXCLUDED.points, active = EXCLUDED.active
                """,
                [
                    community_id,
                    _recordset(
                        ("member_id", "kind", "start", "points", "active"),
                        [(*k, deltas[k], active[k[0]]) for k in keys],
                    ),
                ],
            )
        )
    status_changed = {
        s.id: s.status == MemberStatus.ACTIVE
        for s in members.values()
        if s.status != s.initial_status
    }
    if status_changed:
        ids = sorted(status_changed)
        statements.append(
            (
                """
                UPDATE points_periodtotal AS p SET active = x.active
                FROM unnest(%s::bigint[], %s::boolean[]) AS x(member_id, active)
                WHERE p.member_id = x.member_id AND p.active IS DISTINCT FROM x.active
                """,
                [ids, [status_changed[i] for i in ids]],
            )
        )
        # A leave or a re-join changes who is ranked without a ledger entry: mark the
        # community's snapshots stale so the next refresh rebuilds them.
        statements.append(
            (
                "UPDATE points_rankbuild SET ledger_high_water = -1 "
                "WHERE community_id = %s AND ledger_high_water <> -1",
                [community_id],
            )
        )
    return statements
