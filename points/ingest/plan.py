"""Step 1 of ingestion: check each new event's shape and plan it: who is paid, on which local
day, under which rule version, which gates are already known from the event alone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from points.exceptions import FieldError
from points.ingest import statements
from points.ingest.records import EventInput, IngestOutcome, IngestStatus, Plan
from points.ingest.validate import event_shape_errors, occurred_at_window
from points.models import Community, EventType
from points.scoring import Gate, content_gate
from points.selectors import rules_in_force
from points.timeutils import local_day

# Types that pay nobody when posted (a join pays its inviter once ``_plan_joins`` finds one).
_PAY_NOBODY = (EventType.INVITE, EventType.PEER_SCORE, EventType.LEAVE, EventType.JOIN)


def plan_events(
    community: Community,
    events: Sequence[EventInput],
    hashes: list[str],
    pending: list[int],
    now: dt.datetime,
    outcomes: list[IngestOutcome | None],
) -> list[Plan]:
    """Plans for the valid events among ``pending`` (indexes into ``events``), in batch order;
    an invalid event gets its outcome, naming each field, and no plan."""
    window = occurred_at_window(community, now)
    plans: list[Plan] = []
    for i in pending:
        event = events[i]
        occurred = event.occurred_at or now
        version = rules_in_force(community, occurred)
        errors = event_shape_errors(event, window=window)
        if event.type not in version.rules.known_types:
            message = f"unknown event type '{event.type}'"
            errors.insert(0, FieldError("type", "unknown_event_type", message))
        if errors:
            outcomes[i] = IngestOutcome(event.client_id, IngestStatus.INVALID, None, errors)
            continue
        plan = Plan(
            index=i,
            event=event,
            hash=hashes[i],
            occurred=occurred,
            day=local_day(occurred, community.timezone),
            version=version,
            payee=event.member,
            rule_type=event.type,
        )
        if event.type == EventType.REACTION:
            author = str((event.content or {})["author"])
            plan.payee = author
            if author == event.member:
                plan.fixed_gate = Gate.OWN_CONTENT
            else:
                plan.once_key = f"reaction:{event.target}:{event.member}"
        elif event.type == EventType.CONTENT_FEATURED:
            plan.once_key = f"featured:{event.content_id}"
        elif event.type in _PAY_NOBODY:
            plan.payee = None
        gate, plan.content_hash = content_gate(version.rules, event.type, event.content)
        plan.fixed_gate = plan.fixed_gate or gate
        plans.append(plan)
    if any(p.event.type == EventType.JOIN for p in plans):
        _plan_joins(community.pk, plans)
    return plans


def _plan_joins(community_id: int, plans: list[Plan]) -> None:
    """A join pays the member whose invite of the joiner arrived first, before the join (a
    stored invite, or one earlier in this batch), once per invitee; a re-join (the joiner
    joined before, stored or earlier in the batch) pays nothing (``rejoin``)."""
    joiners = sorted({p.event.member for p in plans if p.event.type == EventType.JOIN})
    found = {
        ext: (inviter, joined)
        for ext, inviter, joined in statements.run([statements.prior_joins(community_id, joiners)])[
            "joins"
        ]
    }
    invited_by: dict[str, str] = {}  # invites earlier in this batch
    joined: set[str] = set()  # joins earlier in this batch
    for plan in plans:  # batch order is scoring order
        event = plan.event
        if event.type == EventType.INVITE and event.target != event.member:
            invited_by.setdefault(event.target, event.member)
            continue
        if event.type != EventType.JOIN:
            continue
        stored_inviter, joined_before = found[event.member]
        inviter = stored_inviter or invited_by.get(event.member)
        if inviter is not None:
            plan.payee, plan.rule_type = inviter, EventType.INVITE.value
            if joined_before or event.member in joined:
                plan.fixed_gate = Gate.REJOIN
            else:
                plan.once_key = f"invite:{event.member}"
        joined.add(event.member)
