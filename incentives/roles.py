"""Member roles (owner, staff, KOL), set by an admin and audited."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from incentives.models import MemberRole, Role
from points.adjustments import audit_record
from points.exceptions import FieldError, ValidationFailed
from points.models import Community, Member


def member_role_set(*, community: Community, member: Member, role: str, actor: str) -> str:
    """Set a member's role (``member`` removes any role). Locks the member row; writes an
    ``AuditLog`` row (``role.set``) in the same transaction. Returns the role now held."""
    if role not in Role.values:
        raise ValidationFailed(
            "Unknown role.", [FieldError("role", "invalid_choice", f"must be one of {Role.values}")]
        )
    now = timezone.now()
    with transaction.atomic():
        Member.objects.select_for_update(no_key=True).filter(pk=member.pk).first()
        rows = MemberRole.objects.filter(community=community, member=member)
        previous = rows.values_list("role", flat=True).first()
        if role == Role.MEMBER:
            rows.delete()
        else:
            MemberRole.objects.update_or_create(
                community=community,
                member=member,
                defaults={"role": role, "set_by": actor, "set_at": now},
            )
        if (previous or Role.MEMBER) != role:
            audit_record(
                community=community,
                actor=actor,
                action="role.set",
                target=member.external_id,
                data={"from": previous or Role.MEMBER, "to": role},
                now=now,
            )
    return role


def member_role(member: Member) -> str:
    rows = MemberRole.objects.filter(community_id=member.community_id, member=member)
    return rows.values_list("role", flat=True).first() or Role.MEMBER
