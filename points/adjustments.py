"""Manual adjustments by operators (API or admin), one at a time or from a CSV file, each
recorded in the audit log; and the audit log itself.

An adjustment for a member the community does not know is refused (``MemberNotFound``, 404)
unless the caller asks to create the member (``create_member``: a prize for someone who never
posted; the admin's CSV import always may); a negative one needs the member and enough
*spendable* points: unlike a reversal, an operator's debit is refused rather than turned into
debt (``InsufficientPoints``, 409), so an operator always sees at once what was taken.
Adjustments count as earned points (lifetime, leaderboards of the day they are made) and pay
back what a member owes first, like any credit.

An adjustment sent with an id (``client_id``) has one outcome for ever: the first request that
ran decides it, accepted or refused, and every retry with the same id and body gets that outcome
again (docs/decisions.md, "An adjustment id records its outcome, refusals included").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from points import outbox
from points.exceptions import (
    AdjustmentConflict,
    DomainError,
    FieldError,
    InsufficientPoints,
    MemberNotFound,
    ValidationFailed,
)
from points.ledger import ledger_post, member_lock
from points.models import AuditLog, Community, EntryKind, Member
from points.timeutils import local_day

MAX_POINTS = 1_000_000
MAX_CSV_ROWS = 10_000


def audit_record(
    *,
    community: Community,
    actor: str,
    action: str,
    target: str = "",
    data: dict[str, Any] | None = None,
    client_id: str = "",
    now: dt.datetime | None = None,
) -> AuditLog:
    """Append one audit row (in the caller's transaction)."""
    return AuditLog.objects.create(
        community=community,
        actor=actor,
        action=action,
        target=target,
        client_id=client_id,
        data=data or {},
        created_at=now or timezone.now(),
    )


@dataclass(frozen=True)
class AdjustmentInput:
    member: str
    points: int
    reason: str


def adjustment_validate(item: AdjustmentInput, prefix: str = "") -> list[FieldError]:
    """Every problem with one adjustment, each naming its field."""
    errors: list[FieldError] = []
    if not item.member or len(item.member) > 64:
        errors.append(FieldError(f"{prefix}member", "invalid", "must be 1 to 64 characters"))
    if isinstance(item.points, bool) or not isinstance(item.points, int):
        errors.append(FieldError(f"{prefix}points", "invalid", "must be an integer"))
    elif item.points == 0 or abs(item.points) > MAX_POINTS:
        errors.append(
            FieldError(f"{prefix}points", "invalid", f"must be non-zero, within ±{MAX_POINTS:,}")
        )
    if not item.reason.strip():
        errors.append(FieldError(f"{prefix}reason", "required", "a reason is required"))
    elif len(item.reason) > 500:
        errors.append(FieldError(f"{prefix}reason", "invalid", "at most 500 characters"))
    return errors


def _apply(
    community: Community,
    item: AdjustmentInput,
    actor: str,
    now: dt.datetime,
    *,
    create_member: bool,
) -> tuple[Member, list[int]]:
    """Post one validated adjustment inside the caller's transaction."""
    member_id = (
        Member.objects.filter(community=community, external_id=item.member)
        .values_list("pk", flat=True)
        .first()
    )
    if member_id is None:
        if item.points < 0 or not create_member:
            raise MemberNotFound(
                f"No member '{item.member}' in this community."
                + ("" if item.points < 0 else " Send create_member: true to create them.")
            )
        member, _ = Member.objects.get_or_create(
            community=community,
            external_id=item.member,
            defaults={"joined_at": now, "last_event_at": now},
        )
        member_id = member.pk
    member = member_lock(member_id=member_id)
    posted = ledger_post(
        member=member,
        points=item.points,
        kind=EntryKind.ADJUSTMENT,
        when=now,
        period_day=local_day(now, community.timezone),
        reason=item.reason.strip(),
        actor=actor,
    )
    return member, [e.pk for e in posted.entries]


ADJUSTMENT_CREATED = "adjustment.create"
ADJUSTMENT_REFUSED = "adjustment.refused"
# Refusals an id records (the request ran and the ledger said no); a 400 is not recorded.
RECORDED_REFUSALS: dict[str, type[DomainError]] = {
    InsufficientPoints.code: InsufficientPoints,
    MemberNotFound.code: MemberNotFound,
}


def adjustment_create(
    *,
    community: Community,
    item: AdjustmentInput,
    actor: str,
    client_id: str = "",
    create_member: bool = False,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Post one adjustment and its audit row in one transaction; returns (result, created).

    With a ``client_id`` the call is idempotent, and so is a refusal: the same id and body
    return the first result (``created`` False) or raise the first refusal again
    (``InsufficientPoints``, ``MemberNotFound``, recorded as an ``adjustment.refused`` audit
    row), even if the member could now afford it or now exists; the same id with another body
    (``create_member`` included) raises ``AdjustmentConflict``. An invalid request
    (``ValidationFailed``) records nothing. Locks: a transaction advisory lock on the id (so
    that two first requests with one id are decided one after the other), then the member row.
    """
    errors = adjustment_validate(item)
    if errors:
        raise ValidationFailed("The adjustment is invalid.", errors)
    now = now or timezone.now()
    body = {"member": item.member, "points": item.points, "reason": item.reason.strip()}
    if client_id:
        first = _first_outcome(community, client_id)
        if first is not None:
            return _replay(first, body, create_member)

    def record(action: str, data: dict[str, Any]) -> None:
        audit_record(
            community=community,
            actor=actor,
            action=action,
            target=item.member,
            client_id=client_id,
            data={**data, "create_member": create_member},
            now=now,
        )

    refusal: DomainError | None = None
    with transaction.atomic():
        if client_id:
            _lock_client_id(community, client_id)
            first = _first_outcome(community, client_id)
            if first is not None:
                return _replay(first, body, create_member)
        try:
            with transaction.atomic():
                member, entry_ids = _apply(community, item, actor, now, create_member=create_member)
                result = {
                    "id": client_id or None,
                    **body,
                    "balance": member.balance,
                    "owed": member.owed,
                    "entries": entry_ids,
                    "created_at": now.isoformat(),
                }
                record(ADJUSTMENT_CREATED, result)
                outbox.publish(community, [("adjustment.created", result)])
        except (InsufficientPoints, MemberNotFound) as exc:
            if not client_id:
                raise
            refusal = exc
            refused = {"status": exc.status, "code": exc.code, "detail": exc.detail}
            record(
                ADJUSTMENT_REFUSED,
                {"id": client_id, **body, "refused": refused, "created_at": now.isoformat()},
            )
    if refusal is not None:
        raise refusal
    return result, True


def _lock_client_id(community: Community, client_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"adjustment:{community.pk}:{client_id}"],
        )


def _first_outcome(community: Community, client_id: str) -> dict[str, Any] | None:
    row = (
        AuditLog.objects.filter(
            community=community,
            action__in=[ADJUSTMENT_CREATED, ADJUSTMENT_REFUSED],
            client_id=client_id,
        )
        .order_by("id")
        .first()
    )
    return dict(row.data) if row is not None else None


def _replay(
    first: dict[str, Any], body: dict[str, Any], create_member: bool
) -> tuple[dict[str, Any], bool]:
    # rows written before create_member existed do not hold it: any value matches them
    if {k: first.get(k) for k in body} != body or first.get(
        "create_member", create_member
    ) != create_member:
        raise AdjustmentConflict("This id was already used for another adjustment.")
    refused = first.get("refused")
    if refused is not None:
        raise RECORDED_REFUSALS[refused["code"]](refused["detail"])
    return {k: v for k, v in first.items() if k != "create_member"}, False


def adjustments_parse_csv(content: bytes) -> tuple[list[AdjustmentInput], list[FieldError]]:
    """Parse ``member,points,reason`` rows (a header line is optional); every bad row is
    reported with its line number, and nothing is returned to apply if any row is bad."""
    errors: list[FieldError] = []
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [FieldError("file", "invalid", "must be UTF-8 text")]
    rows = list(csv.reader(io.StringIO(text)))
    if rows and [c.strip().lower() for c in rows[0][:3]] == ["member", "points", "reason"]:
        rows = [["#header"], *rows[1:]]
    items: list[AdjustmentInput] = []
    data_rows = [(n, row) for n, row in enumerate(rows, start=1) if row and row != ["#header"]]
    if len(data_rows) > MAX_CSV_ROWS:
        return [], [FieldError("file", "too_large", f"at most {MAX_CSV_ROWS:,} rows")]
    if not data_rows:
        return [], [FieldError("file", "required", "no rows")]
    for line, row in data_rows:
        prefix = f"line {line}: "
        if len(row) != 3:
            errors.append(FieldError(f"{prefix}row", "invalid", "must be member,points,reason"))
            continue
        member, raw_points, reason = (c.strip() for c in row)
        try:
            points = int(raw_points)
        except ValueError:
            errors.append(FieldError(f"{prefix}points", "invalid", "must be an integer"))
            continue
        item = AdjustmentInput(member, points, reason)
        errors.extend(adjustment_validate(item, prefix))
        items.append(item)
    return ([] if errors else items), errors


def adjustments_bulk_import(
    *, community: Community, items: list[AdjustmentInput], actor: str, note: str = ""
) -> dict[str, Any]:
    """Apply validated adjustments all together or not at all (one transaction): one audit
    row per adjustment and one for the import. A credit creates a member the community does
    not know (an operator uploading a prize list names them on purpose); a debit beyond a
    member's spendable points aborts the whole import (``InsufficientPoints`` names the
    member)."""
    now = timezone.now()
    total = 0
    with transaction.atomic():
        for item in items:
            member, entry_ids = _apply(community, item, actor, now, create_member=True)
            audit_record(
                community=community,
                actor=actor,
                action=ADJUSTMENT_CREATED,
                target=item.member,
                data={
                    "points": item.points,
                    "reason": item.reason,
                    "entries": entry_ids,
                    "balance": member.balance,
                    "bulk": True,
                },
                now=now,
            )
            outbox.publish(
                community,
                [
                    (
                        "adjustment.created",
                        {
                            "member": item.member,
                            "points": item.points,
                            "reason": item.reason,
                            "balance": member.balance,
                            "entries": entry_ids,
                        },
                    )
                ],
            )
            total += item.points
        summary = {"rows": len(items), "points": total, "note": note}
        audit_record(
            community=community,
            actor=actor,
            action="adjustments.bulk_import",
            data=summary,
            now=now,
        )
    return summary
