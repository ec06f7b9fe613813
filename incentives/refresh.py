"""The monthly member refresh (换血): silent members are warned, then listed for an operator.

Rule (``docs/incentives.md``), per community, once per local month, over the ``window_days``
local days ending on the run's day (today; for a past period, the period's last day):

- *speaking days*: local days with at least one ``message`` event (not the number of messages,
  which is easy to inflate); *check-in days*: local days with a counted check-in (the daily
  tallies, as the tier job reads them);
- a member is flagged when they are under **both** thresholds (fewer than
  ``min_speaking_days`` speaking days *and* fewer than ``min_check_in_days`` check-in days: a
  member who checks in but is quiet, or talks but never checks in, still takes part) **and** in
  the community's bottom ``bottom_share`` by activity (speaking days + check-in days; a
  ``percent_rank`` among the members judged, so ties at the bottom are all in it; 1 turns the
  condition off);
- not judged: members who left, newcomers who joined within ``grace_days``, members with a role
  (owner, staff, KOL) and confirmed KOCs;
- flagged with no ``at_risk``/``to_refresh`` row in the previous period: ``at_risk``, warned
  through the outbox (``refresh.at_risk``) with ``recovery_until`` = now + ``recovery_days``;
  flagged again after such a row: ``to_refresh``. For a member warned last period the window
  reaches back to the day of the warning, so nothing done after the warning is missed. A member
  who recovered is simply not flagged.

An operator then confirms (``refresh.confirmed`` is announced so that a bot removes the member
and posts ``leave``) or spares each candidate. Confirming needs ``to_refresh`` (nobody is
removed without a warning and a second flagged run); sparing works from ``at_risk`` or
``to_refresh``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from incentives.config import _int, _number, _unknown_keys
from incentives.honors import parse_month
from incentives.jobs import run_once
from incentives.models import RefreshCandidate, RefreshStatus
from points import outbox
from points.adjustments import audit_record
from points.exceptions import DomainError, FieldError, ValidationFailed
from points.models import Community, Member
from points.timeutils import community_zone, month_start, today

JOB = "refresh"
# Members warned per ``refresh.at_risk`` message: a bot warns each one; a community that
# flags 900,000 members at once gets 1,800 messages, not 900,000.
WARNINGS_PER_MESSAGE = 500
NOTE_MAX = 500
DECISIONS = {"confirm": RefreshStatus.CONFIRMED, "spare": RefreshStatus.SPARED}
# the statuses each decision may start from
DECIDABLE = {
    "confirm": (RefreshStatus.TO_REFRESH,),
    "spare": (RefreshStatus.AT_RISK, RefreshStatus.TO_REFRESH),
}

DEFAULT_REFRESH: dict[str, Any] = {
    "window_days": 30,
    "min_speaking_days": 2,
    "min_check_in_days": 4,
    "bottom_share": 0.2,
    "grace_days": 14,
    "recovery_days": 7,
}


@dataclass(frozen=True)
class RefreshSettings:
    window_days: int
    min_speaking_days: int
    min_check_in_days: int
    bottom_share: float
    grace_days: int
    recovery_days: int


class RefreshCandidateNotFound(DomainError):
    code = "refresh_candidate_not_found"
    status = 404
    title = "Refresh candidate not found"


class RefreshNotDecidable(DomainError):
    code = "refresh_not_decidable"
    status = 409
    title = "The refresh candidate cannot be decided so"


def parse_refresh(doc: Any, prefix: str = "refresh.") -> RefreshSettings:
    """Validate a community's refresh settings (missing keys take the defaults); raises
    ``ValidationFailed`` naming every bad field."""
    errors: list[FieldError] = []
    if not isinstance(doc, dict):
        raise ValidationFailed(
            "The refresh settings are invalid.",
            [FieldError(prefix.rstrip("."), "invalid", "must be an object")],
        )
    _unknown_keys(errors, prefix, doc, set(DEFAULT_REFRESH))
    merged = {**DEFAULT_REFRESH, **doc}
    window = _int(errors, f"{prefix}window_days", merged["window_days"], 1, 366)
    speaking = _int(errors, f"{prefix}min_speaking_days", merged["min_speaking_days"], 0, 366)
    check_in = _int(errors, f"{prefix}min_check_in_days", merged["min_check_in_days"], 0, 366)
    for name, value in (("min_speaking_days", speaking), ("min_check_in_days", check_in)):
        if value > window:
            errors.append(
                FieldError(f"{prefix}{name}", "out_of_range", "must be at most window_days")
            )
    share = _number(errors, f"{prefix}bottom_share", merged["bottom_share"], 0.0, 1.0)
    if share == 0.0 and not any(e.field == f"{prefix}bottom_share" for e in errors):
        errors.append(
            FieldError(f"{prefix}bottom_share", "out_of_range", "must be above 0 (and at most 1)")
        )
    settings = RefreshSettings(
        window_days=window,
        min_speaking_days=speaking,
        min_check_in_days=check_in,
        bottom_share=share,
        grace_days=_int(errors, f"{prefix}grace_days", merged["grace_days"], 0, 366),
        recovery_days=_int(errors, f"{prefix}recovery_days", merged["recovery_days"], 1, 366),
    )
    if errors:
        raise ValidationFailed("The refresh settings are invalid.", errors)
    return settings


def community_refresh_settings(community_id: int) -> RefreshSettings:
    """The community's refresh settings (the defaults when it has none)."""
    from incentives.models import IncentiveConfig

    doc = (
        IncentiveConfig.objects.filter(community_id=community_id)
        .values_list("refresh", flat=True)
        .first()
    )
    return parse_refresh(doc or {})


def _period(community: Community, period: str | None, now: dt.datetime) -> dt.date:
    """The first day of the run's local month; a month that has not started is refused."""
    current = month_start(today(community.timezone, now))
    start = current if period is None else parse_month(period, "period")
    if start > current:
        raise ValidationFailed(
            "The period has not started.",
            [
                FieldError(
                    "period", "not_started", "the month has not started in the community's zone"
                )
            ],
        )
    return start


def refresh_run(
    *, community: Community, period: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Flag the period's silent members (``YYYY-MM``; default: the current local month).

    Set-based, in one transaction: the figures of every active member (one pass over the
    window's ``message`` events and one over its check-in tallies), the flags, the
    ``RefreshCandidate`` rows and the ``refresh.at_risk`` messages. Fenced by ``run_once`` on
    (community, "refresh", period): a re-run, or a run racing it, returns the recorded result.
    """
    now = now or timezone.now()
    start = _period(community, period, now)
    settings = community_refresh_settings(community.pk)
    label = f"{start:%Y-%m}"

    def compute() -> dict[str, Any]:
        return _run(community, settings, start, now)

    return run_once(community=community, job=JOB, period=label, compute=compute)


def _run(
    community: Community, settings: RefreshSettings, start: dt.date, now: dt.datetime
) -> dict[str, Any]:
    zone = community_zone(community.timezone)
    last_of_month = start.replace(day=calendar.monthrange(start.year, start.month)[1])
    last_day = min(today(community.timezone, now), last_of_month)
    first_day = last_day - dt.timedelta(days=settings.window_days - 1)
    previous = f"{month_start(start - dt.timedelta(days=1)):%Y-%m}"
    params: dict[str, Any] = {
        "c": community.pk,
        "tz": community.timezone,
        "period": f"{start:%Y-%m}",
        "previous": previous,
        "first_day": first_day,
        "last_day": last_day,
        "grace_cutoff": now - dt.timedelta(days=settings.grace_days),
        "min_speaking": settings.min_speaking_days,
        "min_check_in": settings.min_check_in_days,
        "share": settings.bottom_share,
        "now": now,
        "recovery_until": now + dt.timedelta(days=settings.recovery_days),
    }
    with connection.cursor() as cursor:
        # members warned last period are judged from the day of their warning when it is earlier
        cursor.execute(
            "SELECT min(flagged_at) FROM incentives_refreshcandidate"
            " WHERE community_id = %s AND period = %s AND status = 'at_risk'",
            [community.pk, previous],
        )
        warned = cursor.fetchone()[0]
        earliest = min(first_day, warned.astimezone(zone).date()) if warned else first_day
        params["earliest"] = earliest
        params["t_from"] = dt.datetime.combine(earliest, dt.time(), tzinfo=zone)
        params["t_end"] = min(
            now, dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        )
        cursor.execute("DROP TABLE IF EXISTS refresh_eval")
        cursor.execute(
            """
            CREATE TEMP TABLE refresh_eval ON COMMIT DROP AS
            WITH members AS (
                SELECT m.id AS member_id,
                       CASE WHEN r.member_id IS NOT NULL THEN r.role
                            WHEN k.member_id IS NOT NULL THEN 'koc'
                            WHEN m.joined_at > %(grace_cutoff)s THEN 'newcomer' END AS protected,
                       p.status AS previous,
                       CASE WHEN p.status = 'at_risk'
                            THEN LEAST(%(first_day)s, (p.flagged_at AT TIME ZONE %(tz)s)::date)
                            ELSE %(first_day)s END AS first_day
                FROM points_member m
                LEFT JOIN incentives_memberrole r
                       ON r.community_id = %(c)s AND r.member_id = m.id
                LEFT JOIN incentives_koccandidate k
                       ON k.community_id = %(c)s AND k.member_id = m.id
                      AND k.status = 'confirmed'
                LEFT JOIN incentives_refreshcandidate p
                       ON p.community_id = %(c)s AND p.member_id = m.id
                      AND p.period = %(previous)s
                WHERE m.community_id = %(c)s AND m.status = 'active'
            ), spoke AS (
                SELECT DISTINCT member_id, local_day AS day
                FROM points_event
                WHERE community_id = %(c)s AND type = 'message' AND reversed_at IS NULL
                  AND occurred_at >= %(t_from)s AND occurred_at < %(t_end)s
                  AND local_day <= %(last_day)s
            ), speaking AS (
                SELECT s.member_id, count(*) AS days
                FROM spoke s JOIN members m ON m.member_id = s.member_id
                WHERE s.day >= m.first_day
                GROUP BY s.member_id
            ), checking AS (
                SELECT t.member_id, count(*) AS days
                FROM points_dailytally t JOIN members m ON m.member_id = t.member_id
                WHERE t.community_id = %(c)s AND t.event_type = 'check_in' AND t.count > 0
                  AND t.day >= %(earliest)s AND t.day <= %(last_day)s
                  AND t.day >= m.first_day
                GROUP BY t.member_id
            )
            SELECT m.member_id, m.protected, m.previous, m.first_day,
                   COALESCE(s.days, 0) AS speaking_days,
                   COALESCE(c.days, 0) AS check_in_days,
                   percent_rank() OVER (
                       PARTITION BY m.protected IS NULL
                       ORDER BY COALESCE(s.days, 0) + COALESCE(c.days, 0)
                   ) AS percent_rank
            FROM members m
            LEFT JOIN speaking s ON s.member_id = m.member_id
            LEFT JOIN checking c ON c.member_id = m.member_id
            """,
            params,
        )
        cursor.execute(
            "SELECT COALESCE(protected, ''), count(*) FROM refresh_eval GROUP BY 1 ORDER BY 1"
        )
        counts = dict(cursor.fetchall())
        params["judged"] = counts.pop("", 0)
        cursor.execute(
            """
            WITH flagged AS (
            INSERT INTO incentives_refreshcandidate
                   (community_id, member_id, period, status, speaking_days, check_in_days,
                    window_days, figures, flagged_at, recovery_until, decided_by, decided_at,
                    note)
            SELECT %(c)s, e.member_id, %(period)s,
                   CASE WHEN e.previous IN ('at_risk', 'to_refresh') THEN 'to_refresh'
                        ELSE 'at_risk' END,
                   e.speaking_days, e.check_in_days, %(last_day)s - e.first_day + 1,
                   jsonb_build_object(
                       'window_from', e.first_day, 'window_to', %(last_day)s,
                       'speaking_days', e.speaking_days, 'min_speaking_days', %(min_speaking)s,
                       'check_in_days', e.check_in_days, 'min_check_in_days', %(min_check_in)s,
                       'activity', e.speaking_days + e.check_in_days,
                       'percent_rank', round(e.percent_rank::numeric, 4),
                       'bottom_share', %(share)s, 'judged', %(judged)s,
                       'previous', e.previous),
                   %(now)s,
                   CASE WHEN e.previous IN ('at_risk', 'to_refresh') THEN NULL
                        ELSE %(recovery_until)s END,
                   '', NULL, ''
            FROM refresh_eval e
            WHERE e.protected IS NULL
              AND e.speaking_days < %(min_speaking)s AND e.check_in_days < %(min_check_in)s
              AND (e.percent_rank < %(share)s OR %(share)s >= 1)
            ORDER BY e.speaking_days + e.check_in_days, e.member_id
            ON CONFLICT (community_id, member_id, period) DO NOTHING
            RETURNING member_id, status, speaking_days, check_in_days,
                      figures ->> 'window_from' AS window_from
            )
            SELECT f.status, m.external_id, f.speaking_days, f.check_in_days, f.window_from
            FROM flagged f JOIN points_member m ON m.id = f.member_id
            ORDER BY f.speaking_days + f.check_in_days, f.member_id
            """,
            params,
        )
        flagged = cursor.fetchall()
    warnings = [row[1:] for row in flagged if row[0] == RefreshStatus.AT_RISK]
    if warnings:
        common = {
            "period": params["period"],
            "recovery_until": params["recovery_until"].astimezone(zone).isoformat(),
            "min_speaking_days": params["min_speaking"],
            "min_check_in_days": params["min_check_in"],
            "window_to": last_day.isoformat(),
        }
        outbox.publish(
            community,
            [
                (
                    "refresh.at_risk",
                    {
                        **common,
                        "members": [
                            {
                                "member": external_id,
                                "speaking_days": speaking,
                                "check_in_days": check_ins,
                                "window_from": window_from,
                            }
                            for external_id, speaking, check_ins, window_from in warnings[
                                start : start + WARNINGS_PER_MESSAGE
                            ]
                        ],
                    },
                )
                for start in range(0, len(warnings), WARNINGS_PER_MESSAGE)
            ],
        )
    return {
        "period": params["period"],
        "window_from": first_day.isoformat(),
        "window_to": last_day.isoformat(),
        "judged": params["judged"],
        "protected": counts,
        "at_risk": len(warnings),
        "to_refresh": len(flagged) - len(warnings),
    }


# --- decisions -----------------------------------------------------------------------------------


def refresh_decide(
    *,
    community: Community,
    member: Member,
    period: str,
    decision: str,
    actor: str,
    note: str = "",
) -> RefreshCandidate:
    """Confirm (from ``to_refresh``) or spare (from ``at_risk`` or ``to_refresh``) a member's
    refresh row of ``period``.

    Decided under the row's lock (``SELECT … FOR UPDATE``), so two operators at once decide
    once and announce once; audited as ``refresh.confirm`` / ``refresh.spare``; a confirmation
    is announced as ``refresh.confirmed`` so that a bot removes the member.
    """
    errors: list[FieldError] = []
    if decision not in DECISIONS:
        errors.append(FieldError("decision", "invalid_choice", f"must be one of {list(DECISIONS)}"))
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        errors.append(FieldError("note", "invalid", f"text of at most {NOTE_MAX} characters"))
    if errors:
        raise ValidationFailed("Invalid decision.", errors)
    label = f"{parse_month(period, 'period'):%Y-%m}"
    with transaction.atomic():
        row = (
            RefreshCandidate.objects.select_for_update()
            .filter(community=community, member=member, period=label)
            .first()
        )
        if row is None:
            raise RefreshCandidateNotFound(
                f"'{member.external_id}' was not flagged by the refresh job in {label}."
            )
        if row.status not in DECIDABLE[decision]:
            allowed = " or ".join(DECIDABLE[decision])
            by = f" by {row.decided_by}" if row.decided_by else ""
            raise RefreshNotDecidable(
                f"'{member.external_id}' is {row.status}{by} in {label}; "
                f"{decision} needs {allowed}."
            )
        now = timezone.now()
        before = row.status
        row.status, row.decided_by, row.decided_at, row.note = (
            DECISIONS[decision],
            actor,
            now,
            note,
        )
        row.save(update_fields=["status", "decided_by", "decided_at", "note"])
        audit_record(
            community=community,
            actor=actor,
            action=f"refresh.{decision}",
            target=member.external_id,
            data={
                "period": label,
                "from": before,
                "speaking_days": row.speaking_days,
                "check_in_days": row.check_in_days,
                "note": note,
            },
            now=now,
        )
        if decision == "confirm":
            outbox.publish(
                community,
                [
                    (
                        "refresh.confirmed",
                        {
                            "member": member.external_id,
                            "period": label,
                            "confirmed_by": actor,
                            "speaking_days": row.speaking_days,
                            "check_in_days": row.check_in_days,
                            "note": note,
                        },
                    )
                ],
            )
    return row


# --- reads ---------------------------------------------------------------------------------------


def refresh_candidates(
    community: Community,
    period: str,
    status: str | None = None,
    after_id: int = 0,
) -> QuerySet[RefreshCandidate]:
    """A period's rows with their member, least active first (the job inserts them in that
    order, so the row id is the order and the cursor)."""
    rows = RefreshCandidate.objects.filter(
        community=community, period=period, id__gt=after_id
    ).select_related("member")
    if status:
        rows = rows.filter(status=status)
    return rows.order_by("id")
