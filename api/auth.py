"""Bot authentication (``Authorization: Api-Key <key>``) and per-endpoint scopes.

Checking a key costs one indexed query (by its 8-character prefix, joined to its community)
and one SHA-512 of a high-entropy secret: no password hasher per request.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from points.exceptions import InvalidMemberToken
from points.models import CommunityApiKey, Member
from points.selectors import member_from_token

KEYWORD = "api-key"
MEMBER_KEYWORD = "member"


class InvalidMemberTokenFailed(exceptions.AuthenticationFailed):
    """A member token that is malformed, tampered with or expired (problem code
    ``invalid_member_token``, not ``invalid_api_key``)."""

    default_detail = "Invalid or expired member token."
    default_code = "invalid_member_token"


class MemberGrant:
    """What a member token allows: reading that one member's data and the public boards."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.community = member.community


class MemberTokenAuthentication(BaseAuthentication):
    """``Authorization: Member <token>``: the signed link a bot requested for one member."""

    def authenticate(self, request: Request) -> tuple[Any, MemberGrant] | None:
        header = get_authorization_header(request).decode("latin-1").strip()
        keyword, _, token = header.partition(" ")
        if keyword.lower() != MEMBER_KEYWORD:
            return None
        try:
            return (None, MemberGrant(member_from_token(token.strip())))
        except InvalidMemberToken as exc:
            raise InvalidMemberTokenFailed(exc.detail) from exc


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, CommunityApiKey] | None:
        header = get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword.lower() == MEMBER_KEYWORD:
            return None
        if keyword.lower() != KEYWORD or not key.strip():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Api-Key <key>'.")
        key = key.strip()
        prefix, dot, _secret = key.partition(".")
        if not dot:
            raise exceptions.AuthenticationFailed("Malformed API key.")
        api_key = (
            CommunityApiKey.objects.get_usable_keys()
            .select_related("community")
            .filter(prefix=prefix)
            .first()
        )
        if api_key is None or not api_key.is_valid(key) or api_key.has_expired:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        return "Api-Key"


class HasCommunityScope(BasePermission):
    """The key must belong to the community in the URL and carry the view's ``required_scope``.

    A key of another community gets 404, as an unknown community does: a key never learns
    whether someone else's community exists.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if isinstance(api_key, MemberGrant):
            return _member_grant_allows(api_key, view)
        if not isinstance(api_key, CommunityApiKey):
            raise exceptions.NotAuthenticated("An API key is required.")
        slug = view.kwargs.get("community")
        if slug is not None and slug != api_key.community.slug:
            raise exceptions.NotFound(f"No community '{slug}' for this key.")
        scope = getattr(view, "required_scope", None)
        if scope is None:
            return True
        if not api_key.has_scope(scope) and not api_key.has_scope("admin"):
            raise exceptions.PermissionDenied(f"This key lacks the '{scope}' scope.")
        return True


def _member_grant_allows(grant: MemberGrant, view: Any) -> bool:
    """A member token reads views marked ``member_access`` = "self" (only its own member: any
    other member is answered as unknown, 404) or "public" (boards); nothing else."""
    access = getattr(view, "member_access", None)
    slug = view.kwargs.get("community")
    if access is None:
        raise exceptions.PermissionDenied("A member token cannot use this endpoint.")
    if slug != grant.community.slug:
        raise exceptions.NotFound(f"No community '{slug}' for this token.")
    if access == "self" and view.kwargs.get("member") != grant.member.external_id:
        raise exceptions.NotFound("No such member for this token.")
    return True
