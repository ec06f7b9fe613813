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

from points.models import CommunityApiKey

KEYWORD = "api-key"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, CommunityApiKey] | None:
        header = get_authorization_header(request).decode("latin-1").strip()
        if not header:
            return None
        keyword, _, key = header.partition(" ")
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
