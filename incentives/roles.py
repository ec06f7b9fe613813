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
        previous = MemberRole.objects.filter(member=member).values_list("role", flat=True).first()
        if role == Role.MEMBER:
            MemberRole.objects.filter(member=member).delete()
        else:
            MemberRole.objects.update_or_create(
                member=member,
                defaults={"community": community, "role": role, "set_by": actor, "set_at": now},
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
    return MemberRole.objects.filter(member=member).values_list("role", flat=True).first() or (
        Role.MEMBER
    )
