"""Event ingestion, the orchestrator: store, score and post a batch of events, each exactly once.

A single event costs three round trips and the COMMIT after the API key, and so does each
part of a batch (one part up to 199 events, at most four from 400 on):

0. *Replays*, no lock: ids already stored answer with their first result (or 409). The key
   table says which ids are stored; only then are their events read, from the months their
   keys name (a replay costs one round trip more than a new event, decision 49).
1. *Plan* (``plan``): shape checks per event; who is paid, which day, which rules. A large
   batch is split (``parts``) into parts that share no member, each written in its own
   transaction by steps 2-4, so that concurrent batches need not wait for each other whole.
2. *Lock and read* (``state``), one pipeline: lock every member touched, in ``external_id``
   order, then read tallies, once-only keys, counted content hashes and cooldowns.
3. *Score* (``scorer``) in memory with ``points.scoring``, event after event.
4. *Write* (``statements``), one pipeline: events, tallies, once-only keys, ledger entries,
   members, period totals. If another transaction committed one of our ids or keys
   meanwhile, an insert says so and we start over with the events not yet written: each id
   is scored once, and an event's outcome is set only once its part has committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from points import outbox
from points.exceptions import FieldError
from points.ingest import statements
from points.ingest.parts import plan_parts
from points.ingest.plan import plan_events
from points.ingest.records import EventInput, IngestOutcome, IngestStatus, MemberState, Plan
from points.ingest.scorer import Scorer
from points.ingest.state import RulesChanged, lock_and_read
from points.models import Community, MemberStatus
from points.scoring import ScoringRecord

ATTEMPTS = 5


class _ConcurrentDuplicate(Exception):
    """Another transaction committed one of our ids or once-only keys while we scored."""


def event_ingest(*, community: Community, event: EventInput) -> IngestOutcome:
    return events_ingest(community=community, events=[event])[0]


def events_ingest(
    *, community: Community, events: Sequence[EventInput], now: dt.datetime | None = None
) -> list[IngestOutcome]:
    """Store, score and post a batch of events, each exactly once.

    Every item is independent: an invalid item, a replay or a conflict does not affect the
    others. A batch of a few hundred events is written in parts that share no member, one
    transaction each (``parts``, decision 53); a smaller one in one transaction. Locks: the
    rows of every member a part touches, in ``external_id`` order; nothing else. A concurrent
    commit of one of our ids or keys makes us start over with what is not yet written."""
    now = now or timezone.now()
    outcomes: list[IngestOutcome | None] = [None] * len(events)
    hashes = [e.body_hash() for e in events]
    first_index: dict[str, int] = {}  # the first copy of an id in the batch is the one scored
    for i, event in enumerate(events):
        first_index.setdefault(event.client_id, i)
    firsts = sorted(first_index.values())
    stored: dict[str, Any] = {}
    for _attempt in range(ATTEMPTS):
        todo = [i for i in firsts if outcomes[i] is None and events[i].client_id not in stored]
        try:
            _ingest_new(community, events, hashes, todo, now, outcomes, stored)
        except (_ConcurrentDuplicate, RulesChanged):
            continue
        break
    else:
        raise RuntimeError("event ingestion kept racing with concurrent duplicates")
    answered = _copies_answered(events, hashes, first_index, outcomes, stored)
    if any(o.status == IngestStatus.ACCEPTED for o in answered):
        transaction.on_commit(partial(_refresh_ranks, community.pk))
    return answered


def _refresh_ranks(community_id: int) -> None:
    from points.services import rank_refresh_soon

    rank_refresh_soon(community_id)


def _ingest_new(
    community: Community,
    events: Sequence[EventInput],
    hashes: list[str],
    todo: list[int],
    now: dt.datetime,
    outcomes: list[IngestOutcome | None],
    stored: dict[str, Any],
) -> None:
    """Score and write the events of ``todo`` not stored yet; each gets its outcome once the
    transaction that wrote it committed (a part that fails leaves its events to the retry)."""
    stored.update(
        _stored(
            community.pk,
            [events[i].client_id for i in todo],
            sorted({o for i in todo if (o := events[i].occurred_at) is not None}),
        )
    )
    pending = [i for i in todo if events[i].client_id not in stored]
    if not pending:
        return
    plans = plan_events(community, events, hashes, pending, now, outcomes)
    for part in plan_parts(plans):
        with transaction.atomic():
            accepted = _score_and_write(community, part, now)
        for plan, result in zip(part, accepted, strict=True):
            outcomes[plan.index] = IngestOutcome(
                plan.event.client_id, IngestStatus.ACCEPTED, result
            )


def _copies_answered(
    events: Sequence[EventInput],
    hashes: list[str],
    first_index: dict[str, int],
    outcomes: list[IngestOutcome | None],
    stored: dict[str, Any],
) -> list[IngestOutcome]:
    """Every outcome: replays and conflicts answered from the stored events, later copies of
    an id in the batch from the first copy's outcome."""
    for i, event in enumerate(events):
        if outcomes[i] is not None:
            continue
        if (found := stored.get(event.client_id)) is not None:
            if found is ARCHIVED:
                outcomes[i] = IngestOutcome(
                    event.client_id, IngestStatus.INVALID, None, [_archived_error()]
                )
            else:
                outcomes[i] = _against(event.client_id, hashes[i], *found)
            continue
        first = outcomes[first_index[event.client_id]]
        if first is None:
            raise RuntimeError("the first copy of an id always has an outcome")
        if first.status == IngestStatus.INVALID:
            outcomes[i] = IngestOutcome(event.client_id, IngestStatus.INVALID, None, first.errors)
        else:
            outcomes[i] = _against(
                event.client_id, hashes[i], hashes[first_index[event.client_id]], first.result
            )
    return [o for o in outcomes if o is not None]


def _score_and_write(
    community: Community, plans: list[Plan], now: dt.datetime
) -> list[dict[str, Any]]:
    """Lock, read, score and write one part; the answer of each of its events, in order."""
    members, reads = lock_and_read(community, plans, now)
    scorer = Scorer(members, reads)
    results = [scorer.score(plan) for plan in plans]
    written = statements.run(_statements(community.pk, now, scorer, list(members.values())))
    if len(written["events"]) != len(scorer.writes.events):
        raise _ConcurrentDuplicate
    if scorer.writes.keys and len(written["keys_insert"]) != len(scorer.writes.keys):
        raise _ConcurrentDuplicate
    outbox.publish(community, [("event.accepted", result) for result in results])
    late = sorted((m for m in members.values() if m.late_check_in), key=lambda m: m.id)
    if late:
        from points.corrections import bonuses_rederive

        for member in late:
            bonuses_rederive(community=community, member_id=member.id)
    return results


def _statements(
    community_id: int, now: dt.datetime, scorer: Scorer, members: list[MemberState]
) -> list[statements.Statement]:
    """The writes, in an order that lets each find the rows it refers to."""
    writes, tallies = scorer.writes, scorer.reads.tallies
    out = [statements.events_insert(community_id, now, writes.events)]
    if writes.day_tallies:
        day = [(k, tallies[k].count, tallies[k].points) for k in sorted(writes.day_tallies)]
        out.append(statements.tallies_write(community_id, day))
    if writes.keys:
        out.append(statements.keys_insert(community_id, now, writes.keys))
    if writes.entries:
        out.append(statements.entries_insert(community_id, now, writes.entries))
    members = sorted(members, key=lambda m: m.id)
    out.append(statements.members_update(members))
    active = {m.id: m.status == MemberStatus.ACTIVE for m in members}
    if writes.periods:
        deltas = [(*k, points, active[k[0]]) for k, points in sorted(writes.periods.items())]
        out.append(statements.periods_add(community_id, deltas))
    changed = {m.id: active[m.id] for m in members if m.status != m.initial_status}
    if changed:
        out.append(statements.periods_active(community_id, changed))
        out.append(statements.rank_snapshots_stale(community_id))
    return out


# A stored id whose event is in an archived month (its key stays, ``points.history``).
ARCHIVED: Any = ("archived",)


def _stored(community_id: int, client_ids: list[str], hinted: list[dt.datetime]) -> dict[str, Any]:
    """Stored events by id: (body hash, answer rendered from the scoring record), or
    ``ARCHIVED``. One round trip for new ids and for replays that repeat their time; a second
    one for the other stored ids (decision 49)."""
    if not client_ids:
        return {}
    keys = statements.run([statements.stored_keys(community_id, client_ids, hinted)])["keys_stored"]
    found = {k[1]: k[3:] for k in keys if k[3] is not None}
    missing = [k for k in keys if k[3] is None]
    if missing:
        rows = statements.run([statements.stored_events([(k[1], k[2]) for k in missing])])["stored"]
        found.update({row[0]: row[1:] for row in rows})
    stored: dict[str, Any] = {}
    for client_id, event_id, *_rest in keys:
        if event_id not in found:  # its month was archived; the key stays
            stored[client_id] = ARCHIVED
            continue
        body_hash, scoring, rule_version, poster = found[event_id]
        stored[client_id] = (
            body_hash,
            ScoringRecord.from_json(scoring).render(
                client_id=client_id, poster=poster, rule_version=rule_version
            ),
        )
    return stored


def _archived_error() -> FieldError:
    return FieldError(
        "id", "archived", "this id was used by an event whose month is archived; use a new id"
    )


def _against(client_id: str, body_hash: str, first_hash: str, first: Any) -> IngestOutcome:
    """A copy of an id answers the first result when its body is the same, else a conflict."""
    if body_hash == first_hash:
        return IngestOutcome(client_id, IngestStatus.REPLAYED, first)
    message = "this id was already used with a different body"
    return IngestOutcome(
        client_id, IngestStatus.CONFLICT, None, [FieldError("id", "conflict", message)]
    )
