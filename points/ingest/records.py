"""The typed records that travel through one ingestion: what came in, the plan for each event,
the members it touches, and the rows it writes. Read by name everywhere, never by position."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from points.exceptions import FieldError
from points.models import MemberStatus
from points.scoring import Gate, ScoringRecord, StreakState
from points.selectors import RuleVersion

# The canonical body's encoder, built once (``json.dumps`` with options builds one per call).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class EventInput:
    """One event as a bot sent it (JSON types checked by the API; shape by ``validate``)."""

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
        canonical = _CANONICAL_JSON.encode(body)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def content_id(self) -> str:
        content_id = (self.content or {}).get("id")
        return self.target or (content_id if isinstance(content_id, str) else "")

    @property
    def display_name(self) -> str | None:
        name = self.meta.get("display_name") if isinstance(self.meta, dict) else None
        return name if isinstance(name, str) else None


class IngestStatus:
    ACCEPTED = "accepted"
    REPLAYED = "replayed"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass
class IngestOutcome:
    """What happened to one event. ``result`` is the public answer, rendered from the event's
    scoring record, the same on every replay."""

    client_id: str
    status: str
    result: dict[str, Any] | None = None
    errors: list[FieldError] = field(default_factory=list)


@dataclass
class Plan:
    """One valid event, planned: who is paid, on which local day, under which rules."""

    index: int  # position in the request
    event: EventInput
    hash: str  # the body hash
    occurred: dt.datetime
    day: dt.date
    version: RuleVersion
    payee: str | None  # external id of the member paid; None: nobody
    rule_type: str  # the type whose rule pays (a join pays its inviter by ``invite``)
    fixed_gate: Gate | None = None  # a gate known from the event alone
    content_hash: str = ""
    once_key: str | None = None


@dataclass
class MemberState:
    """A locked member row, changed in memory and written back once."""

    id: int
    external_id: str
    balance: int
    lifetime: int
    status: str
    left_at: dt.datetime | None
    owed: int
    streak: StreakState
    initial_status: str = ""
    late_check_in: bool = False  # re-derive streak bonuses after the writes
    last_seen: dt.datetime | None = None  # the member's latest event in the batch
    display_name: str = ""  # a name sent in the batch

    def __post_init__(self) -> None:
        self.initial_status = self.status

    @property
    def left(self) -> bool:
        return self.status == MemberStatus.LEFT


class TallyKey(NamedTuple):
    """One tally the scoring reads or moves: a member's count and points of a type (or ``*``)
    over a span (``day``, ``week``, ``month``; ``month_days``: days with a counted event)."""

    member_id: int
    span: str
    start: dt.date
    event_type: str


class EventRow(NamedTuple):
    plan: Plan
    member_id: int
    payee_id: int | None
    points: int  # everything the event paid, to anyone
    record: ScoringRecord
    content_hash: str  # kept only when the event counted (what the recycled check looks up)


class LedgerRow(NamedTuple):
    client_id: str
    member_id: int
    kind: str
    points: int
    balance_after: int
    rule: str
    rule_version: int | None
    reason: str


class OnceKey(NamedTuple):
    key: str
    member_id: int
    client_id: str
    kind: str
    achievement: str
