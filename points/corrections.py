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

from django.db import transaction
from django.db.models import Sum
from django.db.models.functions import Collate
from django.utils import timezone

from points import outbox
from points.exceptions import EventNotFound
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
from points.rules import Room, Tally, cap_points, streak_runs
from points.selectors import rule_versions, rules_in_force
from points.timeutils import month_start, week_start

# Gates decided at ingestion: an event cut by one of these is not counted and never re-scored.
GATES = frozenset(
    {"member_left", "own_content", "once", "duplicate_content", "cooldown", "min_length", "rejoin"}
)


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
            Event.objects.select_for_update(no_key=True)
            .filter(community=community, client_id=client_id)
            .first()
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
        event.save(update_fields=["reversed_at"])

        rescored: list[dict[str, Any]] = []
        if event.beneficiary_id is not None:
            payee = locked[event.beneficiary_id]
            rescored = day_rescore(member=payee, day=event.local_day, cause=client_id, now=now)
            rules = rules_in_force(community, event.occurred_at).rules
            streak_type = rules.streak.type if rules.streak else None
            quota_type = rules.monthly_quota.type if rules.monthly_quota else None
            if event.type in (streak_type, quota_type):
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
        event.save(update_fields=["reversal"])
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


def _main_award(event: Event, member: Member) -> dict[str, Any] | None:
    for award in (event.result or {}).get("awards", []):
        if award.get("member") == member.external_id and str(award["rule"]).startswith("points."):
            return dict(award)
    return None


def _counted(award: dict[str, Any] | None) -> bool:
    return award is None or award.get("cap") not in GATES


def day_rescore(
    *, member: Member, day: dt.date, cause: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """Run the member's ``day`` through the caps again, in occurred order, and post the
    difference per event; rewrite the day's tallies (and the week's and month's by the same
    change). The member row must be locked."""
    events = list(
        Event.objects.filter(beneficiary=member, local_day=day, reversed_at__isnull=True).order_by(
            "occurred_at", "id"
        )
    )
    versions = {v.version: v.rules for v in rule_versions(member.community)}
    old_day = {t.event_type: t for t in DailyTally.objects.filter(member=member, day=day)}
    week = _points_by_type(member, week_start(day), week_start(day) + dt.timedelta(days=6), day)
    month_first = month_start(day)
    month_last = (month_first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    month = _points_by_type(member, month_first, month_last - dt.timedelta(days=1), day)

    counts: dict[str, int] = defaultdict(int)
    points_by_type: dict[str, int] = defaultdict(int)
    total = 0
    changes: list[dict[str, Any]] = []
    for event in events:
        award = _main_award(event, member)
        rule_type = "invite" if event.type == "join" else event.type
        if not _counted(award):
            continue
        counts[rule_type] += 1
        if award is None:  # the event pays nothing by rule: it only counts
            continue
        rules = versions[event.rule_version]
        room = Room(
            type_today=Tally(counts[rule_type] - 1, points_by_type[rule_type]),
            total_today=Tally(0, total),
            type_week=Tally(0, week.get(rule_type, 0) + points_by_type[rule_type]),
            type_month=Tally(0, month.get(rule_type, 0) + points_by_type[rule_type]),
        )
        gross = int(award.get("gross", award["base"]))
        new_points, _cap = cap_points(rules, rule_type, gross, room)
        points_by_type[rule_type] += new_points
        total += new_points
        held = (
            LedgerEntry.objects.filter(
                event=event,
                member=member,
                rule=award["rule"],
                kind__in=[EntryKind.AWARD, EntryKind.REVERSAL],
            ).aggregate(s=Sum("points"))["s"]
            or 0
        )
        delta = new_points - held
        if delta:
            ledger_post(
                member=member,
                points=delta,
                kind=EntryKind.AWARD if delta > 0 else EntryKind.REVERSAL,
                when=now,
                period_day=day,
                event_id=event.pk,
                rule=award["rule"],
                rule_version=event.rule_version,
                reason=f"re-scored after the reversal of event {cause}"[:500],
                allow_owed=True,
            )
            changes.append(
                {"event": event.client_id, "member": member.external_id, "points": delta}
            )

    # The day's tallies as they now stand (weeks and months are sums of days).
    for event_type in sorted((set(old_day) | set(counts)) - {DailyTally.TOTAL}):
        _tally_set(member, day, event_type, counts.get(event_type, 0), points_by_type[event_type])
    _tally_set(member, day, DailyTally.TOTAL, sum(counts.values()), total)
    return changes


def _points_by_type(
    member: Member, first: dt.date, last: dt.date, excluding: dt.date
) -> dict[str, int]:
    """Points per type the member earned from ``first`` to ``last``, but ``excluding`` day."""
    rows = (
        DailyTally.objects.filter(member=member, day__range=(first, last))
        .exclude(day=excluding)
        .values("event_type")
        .annotate(points=Sum("points"))
    )
    return {row["event_type"]: row["points"] for row in rows}


def _tally_set(member: Member, day: dt.date, event_type: str, count: int, points: int) -> None:
    DailyTally.objects.update_or_create(
        member=member,
        day=day,
        event_type=event_type,
        defaults={"count": count, "points": points, "community_id": member.community_id},
    )


def bonuses_rederive(
    *, community: Community, member_id: int, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Make the member's streak and monthly-quota bonuses match the check-in days that still
    stand (rules in force now decide the type, length and bonus). The member row must be
    locked by the caller's transaction; returns the changes posted."""
    now = now or timezone.now()
    member = Member.objects.select_for_update(no_key=True).get(pk=member_id)
    rules = rules_in_force(community, now).rules
    changes: list[dict[str, Any]] = []
    streak, quota = rules.streak, rules.monthly_quota
    for config, kind in ((streak, "streak"), (quota, "quota")):
        if config is None:
            continue
        firsts: dict[dt.date, Event] = {}
        for event in Event.objects.filter(
            community=community, member=member, type=config.type, reversed_at__isnull=True
        ).order_by("occurred_at", "id"):
            if _counted(_main_award(event, member)) and event.local_day not in firsts:
                firsts[event.local_day] = event
        days = sorted(firsts)
        expected: dict[str, tuple[dt.date, int, str]] = {}
        if kind == "streak" and streak is not None:
            runs = streak_runs(days)
            for day, run in runs.items():
                if streak.bonus and run % streak.every == 0:
                    expected[f"streak:{member.pk}:{day.isoformat()}"] = (day, streak.bonus, "")
            member.streak_days = runs[days[-1]] if days else 0
            member.streak_last_day = days[-1] if days else None
            member.save(update_fields=["streak_days", "streak_last_day"])
        elif kind == "quota" and quota is not None:
            per_month: dict[dt.date, list[dt.date]] = defaultdict(list)
            for day in days:
                per_month[month_start(day)].append(day)
            for start, month_days in per_month.items():
                if len(month_days) >= quota.days and quota.bonus:
                    expected[f"quota:{member.pk}:{start:%Y-%m}"] = (
                        month_days[quota.days - 1],
                        quota.bonus,
                        quota.achievement,
                    )
        rule = f"{'streak' if kind == 'streak' else 'monthly_quota'}.bonus"
        existing = {a.key: a for a in AwardOnce.objects.filter(member=member, kind=kind)}
        for key, once in existing.items():
            if key in expected:
                continue
            net = (
                LedgerEntry.objects.filter(
                    event_id=once.event_id, member=member, rule=rule
                ).aggregate(s=Sum("points"))["s"]
                or 0
            )
            if net > 0:
                ledger_post(
                    member=member,
                    points=-net,
                    kind=EntryKind.REVERSAL,
                    when=now,
                    period_day=Event.objects.get(pk=once.event_id).local_day,
                    event_id=once.event_id,
                    rule=rule,
                    reason="the bonus no longer holds after a correction",
                    allow_owed=True,
                )
                changes.append({"member": member.external_id, "rule": rule, "points": -net})
            once.delete()
        for key, (day, bonus, achievement) in sorted(expected.items()):
            if key in existing:
                continue
            event = firsts[day]
            ledger_post(
                member=member,
                points=bonus,
                kind=EntryKind.AWARD,
                when=now,
                period_day=day,
                event_id=event.pk,
                rule=rule,
                rule_version=event.rule_version,
                reason="bonus earned after a correction",
            )
            AwardOnce.objects.create(
                community=community,
                key=key,
                member=member,
                event=event,
                kind=kind,
                achievement=achievement,
                created_at=now,
            )
            changes.append({"member": member.external_id, "rule": rule, "points": bonus})
    return changes
