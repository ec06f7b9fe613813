"""Corrections: reversing an event and re-deriving everything that depended on it.

A reversal never edits the ledger: it appends entries. What an event awarded is taken back
(the balance goes to zero at worst and the rest is owed, see ``points.ledger``); then

* the beneficiary's day is *re-scored*: that day's other events are run through the caps again
  in the order they occurred, so an event that a cap cut gets the room the reversal freed
  (Stack Exchange's cap-plus-reversal bug loses those points for good; we must not);
* streak and monthly-quota bonuses are *re-derived* from the check-in days that still stand:
  a bonus that no longer holds is reversed, one that now holds is paid.

Both re-derivations are idempotent: they compare what the ledger holds with what should be,
and post only the difference.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum
from django.db.models.functions import Collate
from django.utils import timezone

from points import outbox, scoring
from points.exceptions import EventNotFound
from points.ingest.validate import MAX_CLOCK_SKEW
from points.ledger import ledger_post
from points.models import (
    AuditLog,
    AwardOnce,
    Community,
    DailyTally,
    EntryKind,
    Event,
    LedgerEntry,
    Member,
)
from points.rules import Rules
from points.scoring import DayEvent, Tally, bonuses_expected
from points.selectors import rule_versions
from points.timeutils import month_start, week_start


def event_reverse(
    *,
    community: Community,
    client_id: str,
    reason: str = "",
    actor: str = "",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Reverse an event (see ``event_reverse_once``); returns the reversal's result."""
    return event_reverse_once(
        community=community, client_id=client_id, reason=reason, actor=actor, now=now
    )[0]


def event_reverse_once(
    *,
    community: Community,
    client_id: str,
    reason: str = "",
    actor: str = "",
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Reverse an event: take back what it awarded, re-score its day, re-derive bonuses.
    Returns (result, whether this call reversed it).

    Idempotent: a later call returns the first reversal's result and writes nothing.
    Locks: the event row ``FOR NO KEY UPDATE`` (so the foreign-key checks of entries that other
    reversals write for this event's day do not wait on it), then every member it paid, in
    ``external_id`` order (the order ingestion locks members in).
    """
    now = now or timezone.now()
    with transaction.atomic():
        event = (
            Event.objects.select_for_update(no_key=True).by_client_id(community, client_id).first()
        )
        if event is None:
            raise EventNotFound(f"No event '{client_id}' in this community.")
        if event.reversed_at is not None and event.reversal is not None:
            return dict(event.reversal), False
        paid_ids = set(LedgerEntry.objects.filter(event=event).values_list("member_id", flat=True))
        if event.beneficiary_id is not None:
            paid_ids.add(event.beneficiary_id)
        locked = {
            m.pk: m
            for m in Member.objects.select_for_update(no_key=True)
            .filter(pk__in=paid_ids)
            .order_by(Collate("external_id", "C"))
        }
        why = reason or f"reversal of event {client_id}"
        taken: list[dict[str, Any]] = []
        nets = (
            LedgerEntry.objects.filter(event=event, kind__in=[EntryKind.AWARD, EntryKind.REVERSAL])
            .values("member_id")
            .annotate(net=Sum("points"))
            .order_by("member_id")
        )
        for row in nets:
            if row["net"] > 0:
                member = locked[row["member_id"]]
                posted = ledger_post(
                    member=member,
                    points=-row["net"],
                    kind=EntryKind.REVERSAL,
                    when=now,
                    period_day=event.local_day,
                    event_id=event.pk,
                    rule="reversal",
                    reason=why[:500],
                    actor=actor,
                    allow_owed=True,
                )
                taken.append(
                    {
                        "member": member.external_id,
                        "points": -row["net"],
                        "owed": posted.owed_added,
                    }
                )
        AwardOnce.objects.filter(event=event).delete()
        event.reversed_at = now
        # By id and partition key: one partition, not a probe of every month.
        Event.objects.filter(pk=event.pk, occurred_at=event.occurred_at).update(reversed_at=now)

        rescored: list[dict[str, Any]] = []
        if event.beneficiary_id is not None:
            payee = locked[event.beneficiary_id]
            rescored = day_rescore(member=payee, day=event.local_day, cause=client_id, now=now)
            if event.type in _bonus_types(community):
                rescored += bonuses_rederive(community=community, member_id=payee.pk, now=now)
        result = {
            "id": client_id,
            "status": "reversed",
            "reversed_at": now.isoformat(),
            "reason": why,
            "reversed": taken,
            "rescored": rescored,
        }
        event.reversal = result
        Event.objects.filter(pk=event.pk, occurred_at=event.occurred_at).update(reversal=result)
        # Operators find reversals where they find adjustments: one audit row per reversed
        # event (its id is the row's client_id), written with the entries it explains.
        AuditLog.objects.create(
            community=community,
            actor=actor or "system",
            action="event.reverse",
            target=f"event:{client_id}",
            client_id=client_id,
            data={
                "reason": why,
                "reversed": taken,
                "rescored": len(rescored),
                "points": sum(t["points"] for t in taken),
            },
            created_at=now,
        )
        outbox.publish(community, [("event.reversed", result)])
        return result, True


def _utc_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC times that surely contain a local day in any time zone (offsets reach ±14 h)."""
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return midnight - dt.timedelta(days=1), midnight + dt.timedelta(days=2)


def day_rescore(
    *, member: Member, day: dt.date, cause: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """Run the member's ``day`` through the caps again (``points.scoring.day_rescore``) and
    post the difference per event; rewrite the day's tallies. The member row must be locked.

    Set-wise: one statement reads the day's events with what each main award holds in the
    ledger (the gross and the rule type come out of the scoring record in PostgreSQL); only
    the events whose points change get entries, so a reversal costs what it changes."""
    versions = {v.version: v.rules for v in rule_versions(member.community)}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.client_id, e.rule_version, e.scoring->>'rule_type',
                   (e.scoring->>'counted')::boolean, a.gross, a.rule, COALESCE(h.held, 0)
            FROM points_event e
            LEFT JOIN LATERAL (  -- the main award to this member: [member, rule, base, gross, …]
                SELECT (x->>3)::int AS gross, x->>1 AS rule
                FROM jsonb_array_elements(e.scoring->'awards') x
                WHERE x->>0 = %s AND x->>1 LIKE 'points.%%' LIMIT 1
            ) a ON true
            LEFT JOIN LATERAL (
                SELECT sum(l.points)::int AS held FROM points_ledgerentry l
                WHERE l.event_id = e.id AND l.member_id = %s
                  AND l.kind IN ('award', 'reversal') AND l.rule LIKE 'points.%%'
                  -- an event's entries are never older than its receipt, and it was
                  -- received at most MAX_CLOCK_SKEW before it occurred: the literal bound
                  -- keeps the planner to the ledger months since (partitioned by month)
                  AND l.created_at >= e.received_at AND l.created_at >= %s
            ) h ON true
            WHERE e.beneficiary_id = %s AND e.local_day = %s AND e.reversed_at IS NULL
              -- a local day lies within these UTC bounds: the events' months only
              AND e.occurred_at >= %s AND e.occurred_at < %s
            ORDER BY e.occurred_at, e.id
            """,
            [
                member.external_id,
                member.pk,
                _utc_bounds(day)[0] - MAX_CLOCK_SKEW,
                member.pk,
                day,
                *_utc_bounds(day),
            ],
        )
        rows = cursor.fetchall()
    week = _points_by_type(member, week_start(day), week_start(day) + dt.timedelta(days=6), day)
    month_first = month_start(day)
    month_next = (month_first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    month = _points_by_type(member, month_first, month_next - dt.timedelta(days=1), day)
    events = [
        DayEvent(rule_type=kind, counted=counted, gross=gross, rules=versions[version])
        for _id, _client_id, version, kind, counted, gross, _rule, _held in rows
    ]
    points_now, tallies = scoring.day_rescore(events, week_before=week, month_before=month)
    changes: list[dict[str, Any]] = []
    for row, points in zip(rows, points_now, strict=True):
        event_id, client_id, version, _kind, _counted, _gross, rule, held = row
        if points is None or points == held:
            continue
        ledger_post(
            member=member,
            points=points - held,
            kind=EntryKind.AWARD if points > held else EntryKind.REVERSAL,
            when=now,
            period_day=day,
            event_id=event_id,
            rule=rule,
            rule_version=version,
            reason=f"re-scored after the reversal of event {cause}"[:500],
            allow_owed=True,
        )
        changes.append({"event": client_id, "member": member.external_id, "points": points - held})
    _day_tallies_set(member, day, tallies)
    return changes


def _points_by_type(
    member: Member, first: dt.date, last: dt.date, excluding: dt.date
) -> dict[str, int]:
    """Points per type the member earned from ``first`` to ``last``, but ``excluding`` day."""
    rows = (
        DailyTally.objects.filter(
            community_id=member.community_id, member=member, day__range=(first, last)
        )
        .exclude(day=excluding)
        .values("event_type")
        .annotate(points=Sum("points"))
    )
    return {row["event_type"]: row["points"] for row in rows}


def _day_tallies_set(member: Member, day: dt.date, tallies: dict[str, Tally]) -> None:
    """The day's tallies as they now stand, in one statement: types no longer counted that
    day go to zero."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH now_standing AS (
                SELECT * FROM unnest(%s::text[], %s::int[], %s::int[])
                              AS x(event_type, count, points)
            )
            INSERT INTO points_dailytally AS t
                (community_id, member_id, day, event_type, count, points)
            SELECT %s, %s, %s, COALESCE(x.event_type, o.event_type), COALESCE(x.count, 0),
                   COALESCE(x.points, 0)
            FROM now_standing x
            FULL JOIN (SELECT event_type FROM points_dailytally
                       WHERE community_id = %s AND member_id = %s AND day = %s) o
                   ON o.event_type = x.event_type
            ON CONFLICT (community_id, member_id, day, event_type) DO UPDATE
                SET count = EXCLUDED.count, points = EXCLUDED.points
                WHERE t.count <> EXCLUDED.count OR t.points <> EXCLUDED.points
            """,
            [
                list(tallies),
                [t.count for t in tallies.values()],
                [t.points for t in tallies.values()],
                member.community_id,
                member.pk,
                day,
                member.community_id,
                member.pk,
                day,
            ],
        )


def bonuses_rederive(
    *, community: Community, member_id: int, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Make the member's streak and monthly-quota bonuses match the days that still stand,
    each day judged by the rule version of its first counted event (decision 40, as at
    ingestion: ``points.scoring.bonuses_expected``). The member row must be locked by the
    caller's transaction; returns the changes posted."""
    now = now or timezone.now()
    member = Member.objects.select_for_update(no_key=True).get(pk=member_id)
    versions = {v.version: v.rules for v in rule_versions(community)}
    types = sorted(_bonus_types(community))
    # (type, day) -> the day's first counted event and its rule version
    firsts: dict[tuple[str, dt.date], tuple[int, int]] = {}
    first_days: dict[str, list[tuple[dt.date, Rules]]] = defaultdict(list)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (e.type, e.local_day) e.type, e.local_day, e.id, e.rule_version
            FROM points_event e
            WHERE e.community_id = %s AND e.member_id = %s AND e.type = ANY(%s)
              AND e.reversed_at IS NULL AND (e.scoring->>'counted')::boolean
            ORDER BY e.type, e.local_day, e.occurred_at, e.id
            """,
            [community.pk, member.pk, types],
        )
        for event_type, day, event_id, version in cursor.fetchall():
            firsts[(event_type, day)] = (event_id, version)
            first_days[event_type].append((day, versions[version]))
    expected, streak = bonuses_expected(member.pk, first_days)
    if (member.streak_days, member.streak_last_day) != (streak.days, streak.last_day):
        member.streak_days, member.streak_last_day = streak.days, streak.last_day
        member.save(update_fields=["streak_days", "streak_last_day"])
    changes: list[dict[str, Any]] = []
    held = {
        once.key: once
        for once in AwardOnce.objects.filter(
            member=member, kind__in=["streak", "quota"]
        ).select_related("event")
    }
    nets = {
        (row["event_id"], row["rule"]): row["net"]
        for row in LedgerEntry.objects.filter(
            event_id__in=[o.event_id for o in held.values()],
            member=member,
            rule__in=list(BONUS_RULES.values()),
        )
        .values("event_id", "rule")
        .annotate(net=Sum("points"))
    }
    for key, once in sorted(held.items()):
        if key in expected:
            continue
        rule = BONUS_RULES[once.kind]
        net = nets.get((once.event_id, rule), 0)
        if net > 0:
            ledger_post(
                member=member,
                points=-net,
                kind=EntryKind.REVERSAL,
                when=now,
                period_day=once.event.local_day,
                event_id=once.event_id,
                rule=rule,
                reason="the bonus no longer holds after a correction",
                allow_owed=True,
            )
            changes.append({"member": member.external_id, "rule": rule, "points": -net})
        once.delete()
    for key, bonus in sorted(expected.items()):
        if key in held:
            continue
        event_id, version = firsts[(bonus.event_type, bonus.day)]
        rule = BONUS_RULES[bonus.kind]
        ledger_post(
            member=member,
            points=bonus.bonus,
            kind=EntryKind.AWARD,
            when=now,
            period_day=bonus.day,
            event_id=event_id,
            rule=rule,
            rule_version=version,
            reason="bonus earned after a correction",
        )
        AwardOnce.objects.create(
            community=community,
            key=key,
            member=member,
            event_id=event_id,
            kind=bonus.kind,
            achievement=bonus.achievement,
            created_at=now,
        )
        changes.append({"member": member.external_id, "rule": rule, "points": bonus.bonus})
    return changes


BONUS_RULES = {"streak": "streak.bonus", "quota": "monthly_quota.bonus"}


def _bonus_types(community: Community) -> set[str]:
    """Event types that carry a streak or a quota in any rule version of the community."""
    versions = [v.rules for v in rule_versions(community)]
    return {r.streak.type for r in versions if r.streak} | {
        r.monthly_quota.type for r in versions if r.monthly_quota
    }
