"""Read replicas (docs/scaling.md, "Read replicas").

Only reads marked replica-tolerant may go to the ``replica`` alias, and only when

* the code runs inside ``reads_from_replica()`` (a context manager and decorator that sets a
  context variable: per thread and per asyncio task),
* a ``replica`` alias is configured (``DATABASE_REPLICA_URL``), and
* ``default`` is not inside an atomic block (a read inside a transaction must see that
  transaction's writes and its snapshot).

Everything else (writes, reads inside a transaction, unmarked reads) goes to ``default``.

The rule covers the ORM (``ReplicaRouter``) and raw SQL alike: much of the read side runs
``django.db.connection.cursor()`` directly, which no router sees, so ``django.db.connection``
is pointed at ``_RoutedConnections``, which resolves ``default`` by the same rule. Outside a
marked region it resolves exactly as before. Code that names ``connections["default"]`` or
``.using("default")`` always gets the primary.

Member-facing reads (``reads_from_replica(member=…)``) add the lag rule: the replica is used
only when it has replayed everything the primary had written when the region's first read
ran, or its last replayed commit is at most ``REPLICA_MAX_LAG_SECONDS`` old, and only when
the member has not written within ``REPLICA_MEMBER_WRITE_SECONDS`` (``member_wrote``, called
on the event ingestion path). A region decides once, at its first routed read, and keeps that
decision: the reads of one page come from one server.
"""

from __future__ import annotations

import contextvars
import logging
import math
from collections.abc import Iterable
from contextlib import ContextDecorator
from dataclasses import dataclass, field
from typing import Any

import django.db
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from config.redis_client import redis_client

REPLICA = "replica"
DEFAULT_MAX_LAG_SECONDS = 2.0
DEFAULT_MEMBER_WRITE_SECONDS = 5.0

log = logging.getLogger(__name__)

MemberKey = tuple[int, str]  # (community id, member external id)


@dataclass
class _Region:
    member: MemberKey | None  # None: lag-tolerant reads (boards, reports)
    alias: str | None = None  # decided at the region's first routed read
    reasons: list[str] = field(default_factory=list)  # why it went to default (for tests, logs)


_region: contextvars.ContextVar[_Region | None] = contextvars.ContextVar(
    "reads_from_replica", default=None
)


def _member_key(member: Any) -> MemberKey:
    if isinstance(member, tuple):
        return int(member[0]), str(member[1])
    return int(member.community_id), str(member.external_id)


class reads_from_replica(ContextDecorator):  # noqa: N801 - used like contextlib's helpers
    """Mark the reads inside as tolerant of replica lag.

    ``@reads_from_replica()`` or ``with reads_from_replica():`` for reads that tolerate any
    lag (leaderboards, reports); ``with reads_from_replica(member=member)`` (a ``Member`` or
    ``(community_id, external_id)``) for a member's own view, which adds the lag rule. Nested
    regions keep the outer decision unless the inner one is stricter (a member region inside
    a plain one)."""

    def __init__(self, member: Any = None) -> None:
        self.member = None if member is None else _member_key(member)
        self._token: contextvars.Token[_Region | None] | None = None

    def _recreate_cm(self) -> reads_from_replica:
        # A fresh object per decorated call: the reset token is per entry (threads, re-entry).
        return reads_from_replica(self.member)

    def __enter__(self) -> reads_from_replica:
        outer = _region.get()
        if outer is None or (self.member is not None and outer.member != self.member):
            self._token = _region.set(_Region(self.member))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _region.reset(self._token)
            self._token = None


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def read_alias() -> str:
    """The alias a read runs on here and now (the routing rule in one place)."""
    region = _region.get()
    if region is None:
        return DEFAULT_DB_ALIAS
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    if region.alias is None:
        region.alias = _decide(region)
    return region.alias


def _decide(region: _Region) -> str:
    if not replica_configured():
        return DEFAULT_DB_ALIAS
    if region.member is not None:
        if member_wrote_recently(*region.member):
            region.reasons.append("member wrote recently")
            return DEFAULT_DB_ALIAS
        lag = replica_lag()
        if lag > max_lag_seconds():
            region.reasons.append(f"replica lag {lag:.3f}s")
            return DEFAULT_DB_ALIAS
    try:
        connections[REPLICA].ensure_connection()
    except DatabaseError:
        log.warning("replica unreachable: reading from the primary", exc_info=True)
        region.reasons.append("replica unreachable")
        return DEFAULT_DB_ALIAS
    return REPLICA


def max_lag_seconds() -> float:
    return float(getattr(settings, "REPLICA_MAX_LAG_SECONDS", DEFAULT_MAX_LAG_SECONDS))


def member_write_seconds() -> float:
    # Never shorter than the lag the replica may have, else a member could miss their write.
    chosen = float(getattr(settings, "REPLICA_MEMBER_WRITE_SECONDS", DEFAULT_MEMBER_WRITE_SECONDS))
    return max(chosen, max_lag_seconds() + 1.0)


def replica_lag() -> float:
    """How stale the replica may be, in seconds: 0 when it has replayed all the WAL the
    primary had written a moment ago (an idle primary writes none, however old the last
    replayed commit is); else the age of its last replayed commit; infinite when it cannot
    say (not a standby, nothing replayed yet, unreachable)."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            primary_lsn = cursor.fetchone()[0]
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn,"
                " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
                [primary_lsn],
            )
            caught_up, age = cursor.fetchone()
    except DatabaseError:
        log.warning("replica lag unknown: reading from the primary", exc_info=True)
        return math.inf
    if caught_up:
        return 0.0
    return math.inf if age is None else max(float(age), 0.0)


# --- the member's own writes -----------------------------------------------------------------


def _mark_key(community_id: int, external_id: str) -> str:
    return f"replica:wrote:{community_id}:{external_id}"


def member_wrote(community_id: int, events: Iterable[Any], outcomes: Iterable[Any] = ()) -> None:
    """After ingestion: mark the members it touched (each event's member and target, each
    member an award credited) as having written, for ``REPLICA_MEMBER_WRITE_SECONDS``; their
    own reads go to the primary meanwhile. Shared across processes through Redis when
    ``REDIS_URL`` is set, else Django's default cache. No-op without a replica; never fails
    the write it follows."""
    if not replica_configured():
        return
    members: set[str] = set()
    for event in events:
        members.update(m for m in (event.member, event.target) if m)
    for outcome in outcomes:
        for award in (outcome.result or {}).get("awards", []):
            if award.get("member"):
                members.add(award["member"])
    if not members:
        return
    keys = [_mark_key(community_id, m) for m in sorted(members)]
    seconds = member_write_seconds()
    try:
        url = getattr(settings, "REDIS_URL", "")
        if url:
            pipe = redis_client(url).pipeline(transaction=False)
            for key in keys:
                pipe.set(key, 1, px=int(seconds * 1000))
            pipe.execute()
        else:
            from django.core.cache import cache

            cache.set_many(dict.fromkeys(keys, 1), seconds)
    except Exception:  # noqa: BLE001 - the write is done; the mark must not fail it
        log.warning("could not mark members as having written", exc_info=True)


def member_wrote_recently(community_id: int, external_id: str) -> bool:
    """Whether ``member_wrote`` marked the member within the window (True when unsure)."""
    key = _mark_key(community_id, external_id)
    try:
        url = getattr(settings, "REDIS_URL", "")
        if url:
            return bool(redis_client(url).exists(key))
        from django.core.cache import cache

        return cache.get(key) is not None
    except Exception:  # noqa: BLE001 - unsure: the primary is always right
        log.warning("could not read the member's write mark", exc_info=True)
        return True


# --- routing -----------------------------------------------------------------------------------


class ReplicaRouter:
    """``DATABASE_ROUTERS``: reads by ``read_alias()``, every write to ``default``."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return read_alias()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        both = {obj1._state.db or DEFAULT_DB_ALIAS, obj2._state.db or DEFAULT_DB_ALIAS}
        return True if both <= {DEFAULT_DB_ALIAS, REPLICA} else None  # the same data

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        return db != REPLICA  # the replica gets its schema by streaming


class _RoutedConnections:
    """What ``django.db.connection`` resolves through: ``connections``, but ``default`` by
    ``read_alias()`` (raw SQL on ``connection`` inside a marked region reads the replica)."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    def __getitem__(self, alias: str) -> Any:
        if alias == DEFAULT_DB_ALIAS and _region.get() is not None:
            alias = read_alias()
        return self._handler[alias]


def _install() -> None:
    proxy = django.db.connection
    if not isinstance(proxy.__dict__.get("_connections"), _RoutedConnections):
        proxy.__dict__["_connections"] = _RoutedConnections(connections)


_install()
