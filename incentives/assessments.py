"""Assessment rounds (群门槛 / reviews): a set of members, a window, weights and a pass mark.

A member's result has up to three parts, each on 0-100:

- **peer**: the ``peer_score`` events (rater = the event's member, rated = its ``target``,
  score 1-5) that occurred in ``[window_start, window_end)`` and were not reversed. A rater's
  scores of themselves never count, and only a rater's *latest* score of a member counts
  (latest ``occurred_at``, then latest stored). With ``TRIM_MIN_RATERS`` (5) raters or more
  the part is the 20% trimmed mean (``n // 5`` scores cut at each end, as
  ``scipy.stats.trim_mean(x, 0.2)``); with 1-4 raters the IMDb Bayesian average
  ``(v·R + m·C) / (v + m)``, ``m`` = ``BAYES_M`` (5), ``R`` the member's mean, ``C`` the mean of
  every counted rating of the round; with no rater the part is missing.
- **owner**: the owner's score (1-5) given through ``owner_scores_set``; missing until given.
- **activity**: units per counted event in the window (check-in *days*, shares with a repeated
  content counted once, help events, invitees who joined through the member), summed, capped at
  ``cap`` and scaled to 0-100. Never missing: no activity is a score of 0.

Scores 1-5 map to 0-100 as ``(s - 1) / 4 × 100``. The total is the weighted mean of the parts
that exist: the weights of the parts that have a value are normalised to sum 1
(``weights_used``), and a missing part is listed in ``missing`` instead of counting 0 (a
forgotten owner score does not fail a member; nobody rating a member does not either). A member
passes when the total, rounded to 2 decimals, is at least the pass mark. Defaults (weights,
pass mark, activity units) come from ``IncentiveConfig.assessment``, else ``DEFAULT_SETTINGS``.

Closing a round freezes its results in the close's audit row (append-only), and later reads
answer that snapshot: the window alone would not freeze them, as events may still arrive
backdated into the window, or be reversed, after the close.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from incentives.models import Assessment, AssessmentMember, AssessmentStatus
from points.adjustments import audit_record
from points.exceptions import DomainError, FieldError, MemberNotFound
from points.models import AuditLog, Community, Member

TRIM_MIN_RATERS = 5
TRIM_SHARE = 0.2  # cut n // 5 scores at each end
BAYES_M = 5
MAX_MEMBERS = 1000
MAX_WINDOW = dt.timedelta(days=366)
MAX_UNITS = 1000
MAX_CAP = 100_000
ACTIVITY_KINDS = ("check_in", "share", "invite", "help")
DEFAULT_ACTIVITY: dict[str, int] = {"check_in": 1, "share": 2, "invite": 3, "help": 2, "cap": 20}
DEFAULT_SETTINGS: dict[str, Any] = {
    "w_peer": 0.6,
    "w_owner": 0.4,
    "w_activity": 0.0,
    "pass_mark": 60.0,
    "activity": DEFAULT_ACTIVITY,
}
OPEN_ACTION = "assessment.open"
CLOSE_ACTION = "assessment.close"
OWNER_SCORES_ACTION = "assessment.owner_scores"


class AssessmentNotFound(DomainError):
    code = "assessment_not_found"
    status = 404
    title = "Assessment not found"


class AssessmentConflict(DomainError):
    code = "assessment_conflict"
    status = 409
    title = "Assessment id already used"


class AssessmentInvalid(DomainError):
    code = "invalid_assessment"
    title = "The assessment is invalid"


class AssessmentClosed(DomainError):
    code = "assessment_closed"
    status = 409
    title = "The assessment is closed"


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssessmentSettings:
    w_peer: float
    w_owner: float
    w_activity: float
    pass_mark: float
    activity: dict[str, int]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check_number(
    errors: list[FieldError], path: str, value: Any, low: float, high: float
) -> float:
    if not _is_number(value):
        errors.append(FieldError(path, "invalid", "must be a number"))
        return low
    if not low <= value <= high:
        errors.append(FieldError(path, "out_of_range", f"must be between {low:g} and {high:g}"))
        return low
    return float(value)


def _check_activity(errors: list[FieldError], path: str, doc: Any) -> dict[str, int]:
    """A full activity document (every kind and ``cap``), each an integer in range."""
    if not isinstance(doc, dict):
        errors.append(FieldError(path, "invalid", "must be an object"))
        return dict(DEFAULT_ACTIVITY)
    out: dict[str, int] = {}
    for key in sorted(set(doc) - set(DEFAULT_ACTIVITY)):
        errors.append(
            FieldError(
                f"{path}.{key}",
                "unknown_key",
                f"unknown key; the keys are {', '.join(DEFAULT_ACTIVITY)}",
            )
        )
    for key in DEFAULT_ACTIVITY:
        value = doc.get(key)
        low, high = (1, MAX_CAP) if key == "cap" else (0, MAX_UNITS)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(f"{path}.{key}", "invalid", "must be an integer"))
        elif not low <= value <= high:
            errors.append(
                FieldError(f"{path}.{key}", "out_of_range", f"must be between {low} and {high}")
            )
        else:
            out[key] = value
    return out


def _check_settings(errors: list[FieldError], prefix: str, doc: dict[str, Any]) -> Any:
    weights = {
        name: _check_number(errors, f"{prefix}{name}", doc[name], 0.0, 1.0)
        for name in ("w_peer", "w_owner", "w_activity")
    }
    if not any(e.field.startswith(f"{prefix}w_") for e in errors) and sum(weights.values()) <= 0:
        errors.append(
            FieldError(
                f"{prefix}w_peer", "zero_weights", "w_peer + w_owner + w_activity must be > 0"
            )
        )
    pass_mark = _check_number(errors, f"{prefix}pass_mark", doc["pass_mark"], 0.0, 100.0)
    activity = _check_activity(errors, f"{prefix}activity", doc["activity"])
    return AssessmentSettings(**weights, pass_mark=pass_mark, activity=activity)


def parse_assessment_settings(doc: Any, prefix: str = "assessment.") -> AssessmentSettings:
    """A community's assessment defaults (``IncentiveConfig.assessment``): any subset of
    ``DEFAULT_SETTINGS``, ``activity`` merged key by key; errors name every bad field."""
    errors: list[FieldError] = []
    if not isinstance(doc, dict):
        raise AssessmentInvalid(
            "The assessment settings are invalid.",
            [FieldError(prefix.rstrip("."), "invalid", "must be an object")],
        )
    for key in sorted(set(doc) - set(DEFAULT_SETTINGS)):
        errors.append(FieldError(f"{prefix}{key}", "unknown_key", "unknown key"))
    merged = {**DEFAULT_SETTINGS, **doc}
    if isinstance(doc.get("activity"), dict):
        merged["activity"] = {**DEFAULT_ACTIVITY, **doc["activity"]}
    settings = _check_settings(errors, prefix, merged)
    if errors:
        raise AssessmentInvalid("The assessment settings are invalid.", errors)
    return settings


def community_assessment_settings(community_id: int) -> AssessmentSettings:
    """The community's defaults for new rounds (``DEFAULT_SETTINGS`` when it has none)."""
    from incentives.models import IncentiveConfig

    doc = (
        IncentiveConfig.objects.filter(community_id=community_id)
        .values_list("assessment", flat=True)
        .first()
    )
    return parse_assessment_settings(doc or {})


# --- opening -------------------------------------------------------------------------------------


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def assessment_get(community: Community, client_id: str) -> Assessment:
    row = Assessment.objects.filter(community=community, client_id=client_id).first()
    if row is None:
        raise AssessmentNotFound(f"No assessment '{client_id}' in this community.")
    return row


def _request_document(
    *,
    title: str,
    members: list[str],
    window_start: dt.datetime,
    window_end: dt.datetime,
    w_peer: float | None,
    w_owner: float | None,
    w_activity: float | None,
    pass_mark: float | None,
    activity: dict[str, Any] | None,
) -> dict[str, Any]:
    """The body as sent, normalised (members as a sorted set, times in UTC), kept in the
    opening's audit row: a retry is compared with it, so that a change of the community's
    defaults between two sends of one body does not turn the retry into a conflict."""
    return {
        "title": title,
        "members": sorted(set(members)),
        "window_start": _iso(window_start),
        "window_end": _iso(window_end),
        "w_peer": w_peer,
        "w_owner": w_owner,
        "w_activity": w_activity,
        "pass_mark": pass_mark,
        "activity": activity,
    }


def _replay(community: Community, client_id: str, request: dict[str, Any]) -> Assessment | None:
    row = Assessment.objects.filter(community=community, client_id=client_id).first()
    if row is None:
        return None
    opened = (
        AuditLog.objects.filter(community=community, action=OPEN_ACTION, client_id=client_id)
        .values_list("data", flat=True)
        .first()
    )
    stored = (opened or {}).get("request", {})
    differ = [name for name in request if stored.get(name) != request[name]]
    if differ:
        raise AssessmentConflict(
            f"Assessment '{client_id}' was already opened with a different body.",
            [FieldError("id", "conflict", "this id was already used with a different body")]
            + [FieldError(name, "conflict", "differs from the first request") for name in differ],
        )
    return row


def assessment_open(
    *,
    community: Community,
    client_id: str,
    title: str,
    members: list[str],
    window_start: dt.datetime,
    window_end: dt.datetime,
    actor: str,
    w_peer: float | None = None,
    w_owner: float | None = None,
    w_activity: float | None = None,
    pass_mark: float | None = None,
    activity: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> tuple[Assessment, bool]:
    """Open a round; returns (round, created). Omitted weights, pass mark and activity units
    come from the community's settings (``activity`` is merged key by key) and are frozen in
    the round. Idempotent by ``client_id``: the same body answers the stored round (False);
    another body is ``AssessmentConflict`` naming the fields that differ. Refusals name the
    field (400; unknown members: 404 naming each). Audited. Takes no lock: a concurrent open
    with the same id loses on the unique key and answers as a replay."""
    request = _request_document(
        title=title,
        members=members,
        window_start=window_start,
        window_end=window_end,
        w_peer=w_peer,
        w_owner=w_owner,
        w_activity=w_activity,
        pass_mark=pass_mark,
        activity=activity,
    )
    existing = _replay(community, client_id, request)
    if existing is not None:
        return existing, False

    errors: list[FieldError] = []
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 128:
        errors.append(FieldError("id", "invalid", "1 to 128 characters"))
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        errors.append(FieldError("title", "invalid", "1 to 200 characters"))
    if not 1 <= len(members) <= MAX_MEMBERS:
        errors.append(FieldError("members", "invalid", f"1 to {MAX_MEMBERS} member ids"))
    seen: set[str] = set()
    for index, external_id in enumerate(members):
        if external_id in seen:
            errors.append(FieldError(f"members[{index}]", "duplicate", "listed twice"))
        seen.add(external_id)
    if window_end <= window_start:
        errors.append(FieldError("window_end", "before_start", "must be after window_start"))
    elif window_end - window_start > MAX_WINDOW:
        errors.append(FieldError("window_end", "too_long", "the window is at most 366 days"))
    defaults = community_assessment_settings(community.pk)
    sent = {
        "w_peer": defaults.w_peer if w_peer is None else w_peer,
        "w_owner": defaults.w_owner if w_owner is None else w_owner,
        "w_activity": defaults.w_activity if w_activity is None else w_activity,
        "pass_mark": defaults.pass_mark if pass_mark is None else pass_mark,
        "activity": defaults.activity if activity is None else activity,
    }
    if isinstance(activity, dict):
        sent["activity"] = {**defaults.activity, **activity}
    settings: AssessmentSettings = _check_settings(errors, "", sent)
    if errors:
        raise AssessmentInvalid("The assessment is invalid.", errors)

    found = dict(
        Member.objects.filter(community=community, external_id__in=members).values_list(
            "external_id", "pk"
        )
    )
    unknown = [(i, m) for i, m in enumerate(members) if m not in found]
    if unknown:
        raise MemberNotFound(
            f"No member '{unknown[0][1]}' in this community."
            if len(unknown) == 1
            else f"{len(unknown)} members are not in this community.",
            [FieldError(f"members[{i}]", "not_found", f"no member '{m}'") for i, m in unknown],
        )

    now = now or timezone.now()
    try:
        with transaction.atomic():
            row = Assessment.objects.create(
                community=community,
                client_id=client_id,
                title=title,
                window_start=window_start,
                window_end=window_end,
                w_peer=settings.w_peer,
                w_owner=settings.w_owner,
                w_activity=settings.w_activity,
                pass_mark=settings.pass_mark,
                activity=settings.activity,
                status=AssessmentStatus.OPEN,
                created_by=actor,
                created_at=now,
            )
            AssessmentMember.objects.bulk_create(
                AssessmentMember(community=community, assessment=row, member_id=found[m])
                for m in sorted(found)
            )
            audit_record(
                community=community,
                actor=actor,
                action=OPEN_ACTION,
                target=client_id,
                client_id=client_id,
                data={
                    "request": request,
                    "settings": {
                        "w_peer": settings.w_peer,
                        "w_owner": settings.w_owner,
                        "w_activity": settings.w_activity,
                        "pass_mark": settings.pass_mark,
                        "activity": settings.activity,
                    },
                    "members": len(found),
                },
                now=now,
            )
    except IntegrityError:
        replayed = _replay(community, client_id, request)
        if replayed is None:
            raise
        return replayed, False
    return row, True


def assessment_members(assessment: Assessment) -> list[AssessmentMember]:
    """The round's members with their owner scores, by member id."""
    return list(
        AssessmentMember.objects.filter(assessment=assessment)
        .select_related("member")
        .order_by("member__external_id")
    )


# --- owner scores, closing -----------------------------------------------------------------------


def _locked_open(community: Community, client_id: str) -> Assessment:
    row = (
        Assessment.objects.select_for_update()
        .filter(community=community, client_id=client_id)
        .first()
    )
    if row is None:
        raise AssessmentNotFound(f"No assessment '{client_id}' in this community.")
    if row.status != AssessmentStatus.OPEN:
        raise AssessmentClosed(f"Assessment '{client_id}' is closed; its results are frozen.")
    return row


def owner_scores_set(
    *,
    community: Community,
    client_id: str,
    scores: dict[str, Any],
    actor: str,
    now: dt.datetime | None = None,
) -> Assessment:
    """Give (or change) the owner's scores, 1-5, of members of an open round. All or nothing:
    a score outside 1-5 or a member not in the round is refused (400 naming
    ``scores.<member>``). Locks the round's row, then its member rows in primary-key order
    (``assessment_close`` takes the same round lock, so no score lands after the snapshot).
    Audited with each change (from, to); a score given again unchanged changes nothing."""
    errors: list[FieldError] = []
    if not isinstance(scores, dict) or not scores:
        raise AssessmentInvalid(
            "No scores.", [FieldError("scores", "empty", "give at least one member's score")]
        )
    for external_id, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
            errors.append(
                FieldError(f"scores.{external_id}", "out_of_range", "must be an integer 1 to 5")
            )
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_open(community, client_id)
        rows = list(
            AssessmentMember.objects.select_for_update(of=("self",))
            .filter(assessment=row, member__external_id__in=list(scores))
            .select_related("member")
            .order_by("pk")
        )
        present = {r.member.external_id for r in rows}
        errors.extend(
            FieldError(f"scores.{m}", "not_in_round", "is not a member of this round")
            for m in scores
            if m not in present
        )
        if errors:
            raise AssessmentInvalid("The owner's scores are invalid.", errors)
        changed: dict[str, dict[str, Any]] = {}
        for member_row in rows:
            score = scores[member_row.member.external_id]
            if member_row.owner_score == score:
                continue
            changed[member_row.member.external_id] = {"from": member_row.owner_score, "to": score}
            member_row.owner_score = score
            member_row.owner_scored_by = actor
            member_row.owner_scored_at = now
        if changed:
            AssessmentMember.objects.bulk_update(
                [r for r in rows if r.member.external_id in changed],
                ["owner_score", "owner_scored_by", "owner_scored_at"],
            )
            audit_record(
                community=community,
                actor=actor,
                action=OWNER_SCORES_ACTION,
                target=client_id,
                data={"scores": changed},
                now=now,
            )
    return row


def assessment_close(
    *, community: Community, client_id: str, actor: str, now: dt.datetime | None = None
) -> tuple[Assessment, dict[str, Any]]:
    """Close an open round: its results are computed under the round's lock and stored in the
    close's audit row (append-only, one per round by the audit log's unique key); later reads
    answer that snapshot. A closed round takes no more owner scores. 409 when already
    closed."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_open(community, client_id)
        row.status = AssessmentStatus.CLOSED
        row.save(update_fields=["status"])
        results = _compute(row, now)
        audit_record(
            community=community,
            actor=actor,
            action=CLOSE_ACTION,
            target=client_id,
            client_id=client_id,
            data={"results": results},
            now=now,
        )
    return row, results


# --- results -------------------------------------------------------------------------------------


def scale(score: float) -> float:
    """A score on 1-5 as 0-100."""
    return (score - 1.0) / 4.0 * 100.0


def trimmed_mean(scores: list[int]) -> float:
    """Mean after cutting ``n // 5`` (20%) of the scores at each end."""
    ordered = sorted(scores)
    cut = len(ordered) // 5
    kept = ordered[cut : len(ordered) - cut]
    return sum(kept) / len(kept)


def bayesian_average(scores: list[int], prior_mean: float, m: int = BAYES_M) -> float:
    """IMDb's weighted rating (v·R + m·C) / (v + m)."""
    v = len(scores)
    return (sum(scores) + m * prior_mean) / (v + m)


def peer_part(scores: list[int], prior_mean: float | None) -> tuple[str | None, float | None]:
    """(method, score on 1-5) of one member's counted ratings."""
    if not scores:
        return None, None
    if len(scores) >= TRIM_MIN_RATERS:
        return "trimmed_mean", trimmed_mean(scores)
    # with a rating of this member, the round has a mean (``prior_mean``)
    prior = sum(scores) / len(scores) if prior_mean is None else prior_mean
    return "bayesian", bayesian_average(scores, prior)


def _round2(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


_PEER_SQL = """
WITH rm AS (
    SELECT am.member_id, m.external_id
    FROM incentives_assessmentmember am JOIN points_member m ON m.id = am.member_id
    WHERE am.assessment_id = %(a)s
), ev AS (
    SELECT rm.member_id AS rated, e.member_id AS rater, e.score, e.occurred_at, e.id
    FROM points_event e JOIN rm ON rm.external_id = e.target
    WHERE e.community_id = %(c)s AND e.type = 'peer_score' AND e.target <> ''
      AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
      AND e.reversed_at IS NULL AND e.score IS NOT NULL
), latest AS (
    SELECT DISTINCT ON (rated, rater) rated, rater, score
    FROM ev WHERE rater <> rated
    ORDER BY rated, rater, occurred_at DESC, id DESC
), counts AS (
    SELECT rated, count(*) FILTER (WHERE rater <> rated) AS ratings,
           count(*) FILTER (WHERE rater = rated) AS own
    FROM ev GROUP BY rated
), scores AS (
    SELECT rated, array_agg(score ORDER BY score) AS scores FROM latest GROUP BY rated
)
SELECT rm.member_id, COALESCE(c.ratings, 0), COALESCE(c.own, 0), COALESCE(s.scores, '{}')
FROM rm LEFT JOIN counts c ON c.rated = rm.member_id LEFT JOIN scores s ON s.rated = rm.member_id
"""

_ACTIVITY_SQL = """
WITH rm AS (
    SELECT member_id FROM incentives_assessmentmember WHERE assessment_id = %(a)s
)
SELECT e.member_id, 'check_in', count(DISTINCT e.local_day)
FROM points_event e JOIN rm ON rm.member_id = e.member_id
WHERE e.community_id = %(c)s AND e.type = 'check_in' AND e.reversed_at IS NULL
  AND (e.scoring->>'counted')::boolean
  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
GROUP BY e.member_id
UNION ALL
SELECT e.member_id, 'share', count(DISTINCT COALESCE(NULLIF(e.content_hash, ''), e.id::text))
FROM points_event e JOIN rm ON rm.member_id = e.member_id
WHERE e.community_id = %(c)s AND e.type = 'share' AND e.reversed_at IS NULL
  AND (e.scoring->>'counted')::boolean
  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
GROUP BY e.member_id
UNION ALL
SELECT e.member_id, 'help', count(*)
FROM points_event e JOIN rm ON rm.member_id = e.member_id
WHERE e.community_id = %(c)s AND e.type = 'help' AND e.reversed_at IS NULL
  AND (e.scoring->>'counted')::boolean
  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
GROUP BY e.member_id
UNION ALL
SELECT e.beneficiary_id, 'invite', count(DISTINCT e.member_id)
FROM points_event e JOIN rm ON rm.member_id = e.beneficiary_id
WHERE e.community_id = %(c)s AND e.type = 'join' AND e.reversed_at IS NULL
  AND e.member_id <> e.beneficiary_id
  AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
GROUP BY e.beneficiary_id
"""


def _compute(row: Assessment, now: dt.datetime) -> dict[str, Any]:
    """Every member's parts, total and pass, from two set-based queries (peer ratings of the
    window; activity of the window), plus the round's member rows."""
    params: dict[str, Any] = {
        "a": row.pk,
        "c": row.community_id,
        "start": row.window_start,
        "end": row.window_end,
    }
    with connection.cursor() as cursor:
        cursor.execute(_PEER_SQL, params)
        peers = {r[0]: (int(r[1]), int(r[2]), [int(s) for s in r[3]]) for r in cursor.fetchall()}
        cursor.execute(_ACTIVITY_SQL, params)
        counted: dict[int, dict[str, int]] = {}
        for member_id, kind, n in cursor.fetchall():
            counted.setdefault(member_id, {})[kind] = int(n)
    everyone = [s for _r, _o, scores in peers.values() for s in scores]
    prior = sum(everyone) / len(everyone) if everyone else None
    units = row.activity
    cap = int(units.get("cap", DEFAULT_ACTIVITY["cap"]))
    weights = {"peer": row.w_peer, "owner": row.w_owner, "activity": row.w_activity}

    results: list[dict[str, Any]] = []
    for member_row in assessment_members(row):
        ratings, own, scores = peers.get(member_row.member_id, (0, 0, []))
        method, peer_raw = peer_part(scores, prior)
        peer = None if peer_raw is None else scale(peer_raw)
        owner = None if member_row.owner_score is None else scale(member_row.owner_score)
        counts = {k: counted.get(member_row.member_id, {}).get(k, 0) for k in ACTIVITY_KINDS}
        activity_units = sum(counts[k] * int(units.get(k, 0)) for k in ACTIVITY_KINDS)
        activity = min(activity_units, cap) / cap * 100.0
        parts = {"peer": peer, "owner": owner, "activity": activity}
        missing = [k for k, w in weights.items() if w > 0 and parts[k] is None]
        present = {k: w for k, w in weights.items() if w > 0 and parts[k] is not None}
        weight_sum = sum(present.values())
        used = {k: (present.get(k, 0.0) / weight_sum if weight_sum else 0.0) for k in weights}
        total = sum(used[k] * (parts[k] or 0.0) for k in present) if weight_sum > 0 else None
        total = _round2(total)
        results.append(
            {
                "member": member_row.member.external_id,
                "display_name": member_row.member.display_name,
                "peer": {
                    "ratings": ratings,
                    "self_ratings_ignored": own,
                    "raters": len(scores),
                    "scores": scores,
                    "method": method,
                    "mean": _round2(None if not scores else scale(sum(scores) / len(scores))),
                    "score": _round2(peer),
                },
                "owner": {
                    "score_1_5": member_row.owner_score,
                    "score": _round2(owner),
                    "scored_by": member_row.owner_scored_by,
                    "scored_at": (
                        _iso(member_row.owner_scored_at) if member_row.owner_scored_at else None
                    ),
                },
                "activity": {
                    "counts": counts,
                    "units": activity_units,
                    "cap": cap,
                    "score": _round2(activity),
                },
                "weights_used": {k: round(v, 4) for k, v in used.items()},
                "missing": missing,
                "complete": not missing,
                "total": total,
                "passed": None if total is None else total >= row.pass_mark,
            }
        )
    results.sort(key=lambda r: (r["total"] is None, -(r["total"] or 0.0), r["member"]))
    return {
        "assessment": row.client_id,
        "status": row.status,
        "frozen": row.status == AssessmentStatus.CLOSED,
        "computed_at": _iso(now),
        "window_start": _iso(row.window_start),
        "window_end": _iso(row.window_end),
        "weights": weights,
        "pass_mark": row.pass_mark,
        "activity_units": units,
        "method": {
            "trim_min_raters": TRIM_MIN_RATERS,
            "trim_share": TRIM_SHARE,
            "bayes_m": BAYES_M,
            "round_mean": _round2(None if prior is None else scale(prior)),
            "ratings_counted": len(everyone),
        },
        "results": results,
    }


def assessment_results(
    community: Community, client_id: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Per member every part (peer ratings, raters, method, peer score; owner score; activity
    counts and score), the weights used, the total and the pass. An open round is computed
    now; a closed one answers the snapshot stored when it was closed."""
    row = assessment_get(community, client_id)
    if row.status == AssessmentStatus.CLOSED:
        closed = (
            AuditLog.objects.filter(community=community, action=CLOSE_ACTION, client_id=client_id)
            .values_list("data", flat=True)
            .first()
        )
        if closed and "results" in closed:
            return dict(closed["results"])
    return _compute(row, now or timezone.now())
