"""Posting one member's ledger entries outside event ingestion (reversals, adjustments, expiry,
re-scoring): the row-at-a-time counterpart of the set-based writes in ``events_ingest``.

Every function here runs inside the caller's transaction and expects the member row to be
locked by ``member_lock`` first; the invariants they keep are the ledger's:

* a balance never goes below zero nor below ``held`` (points reserved by pending
  redemptions): a debit larger than what is spendable is refused (``InsufficientPoints``) or,
  where the caller allows it (reversals), takes what is spendable and records the rest as
  ``owed``;
* ``owed`` is paid back from the next credits, as a ``settlement`` entry written right after
  the credit, so what a member owes is never spendable;
* each entry's ``balance_after`` is the balance right after it, so the sum of a member's
  entries always equals their balance;
* period totals (leaderboards) move with credits and debits of earned points.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection

from points.exceptions import InsufficientPoints
from points.models import EntryKind, LedgerEntry, Member, MemberStatus, PeriodKind
from points.scoring import EARNED_KINDS, SETTLEMENT_REASON, credit, debit
from points.timeutils import month_start, week_start


def member_lock(*, member_id: int) -> Member:
    """Lock and return one member row (the lock that serialises all of a member's entries).

    ``FOR NO KEY UPDATE``, as everywhere a member is locked: it serialises writers of the row
    but not the foreign-key checks (``KEY SHARE``) that other transactions' inserts make at
    COMMIT (Django's foreign keys are deferred), which would otherwise wait outside our lock
    order and deadlock."""
    return Member.objects.select_for_update(no_key=True).get(pk=member_id)


@dataclass(frozen=True)
class Posted:
    """What one ``ledger_post`` wrote: the entries, and the part of a debit left owed."""

    entries: list[LedgerEntry]
    owed_added: int = 0


def ledger_post(
    *,
    member: Member,
    points: int,
    kind: str,
    when: dt.datetime,
    period_day: dt.date | None,
    event_id: int | None = None,
    rule: str = "",
    rule_version: int | None = None,
    reason: str = "",
    actor: str = "",
    allow_owed: bool = False,
) -> Posted:
    """Post ``points`` (signed, non-zero) for a locked ``member`` and save the member row.

    ``period_day`` is the local day whose month and week totals the points count in (the
    original event's day for a reversal); ``None`` leaves the leaderboards alone (settlements,
    expiry, spending). A debit beyond the spendable balance raises ``InsufficientPoints``
    unless ``allow_owed``, in which case the spendable part is taken and the rest is owed.
    """
    if points == 0:
        return Posted([])
    if points > 0:
        posting = credit(balance=member.balance, owed=member.owed, points=points, kind=kind)
    else:
        posting = debit(
            balance=member.balance,
            held=member.held,
            owed=member.owed,
            points=points,
            kind=kind,
            allow_owed=allow_owed,
        )
        if posting.refused:
            raise InsufficientPoints(
                f"Only {member.spendable} points are spendable; {-points} were asked for."
            )
    entries = [
        _entry(member, move.points, move.balance_after, move.kind, when, event_id, rule,
               rule_version, reason, actor)
        if move.kind != EntryKind.SETTLEMENT
        else _entry(member, move.points, move.balance_after, move.kind, when, event_id,
                    "owed", None, SETTLEMENT_REASON, "")
        for move in posting.movements
    ]  # fmt: skip
    member.balance, member.owed = posting.balance, posting.owed
    if kind in EARNED_KINDS:
        member.lifetime_points += points
    LedgerEntry.objects.bulk_create(entries)
    member.save(update_fields=["balance", "owed", "lifetime_points"])
    if period_day is not None:
        period_totals_add(member=member, points=points, day=period_day)
    return Posted(entries, posting.owed_added)


def _entry(
    member: Member,
    points: int,
    balance_after: int,
    kind: str,
    when: dt.datetime,
    event_id: int | None,
    rule: str,
    rule_version: int | None,
    reason: str,
    actor: str,
) -> LedgerEntry:
    return LedgerEntry(
        community_id=member.community_id,
        member=member,
        event_id=event_id,
        kind=kind,
        points=points,
        balance_after=balance_after,
        rule=rule,
        rule_version=rule_version,
        reason=reason,
        actor=actor,
        created_at=when,
    )


def period_totals_add(*, member: Member, points: int, day: dt.date) -> None:
    """Add ``points`` to the member's month and week totals of ``day`` (the all-time total is
    the member's lifetime points, decision 48). Totals are exact sums, never floored
    (decision 42): a penalty can take a week below zero."""
    periods = ((PeriodKind.MONTH.value, month_start(day)), (PeriodKind.WEEK.value, week_start(day)))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_periodtotal AS p (community_id, member_id, kind, start, points,
                                                 active)
            SELECT %s, %s, x.kind, x.start, %s, %s
            FROM unnest(%s::text[], %s::date[]) AS x(kind, start)
            ON CONFLICT (community_id, member_id, kind, start) DO UPDATE
                SET points = p.points + %s
            """,
            [
                member.community_id,
                member.pk,
                points,
                member.status == MemberStatus.ACTIVE,
                [p[0] for p in periods],
                [p[1] for p in periods],
                points,
            ],
        )
