"""Bot authentication (``Authorization: Api-Key <key>``) and per-endpoint scopes.

Checking a key costs one SHA-512 of a high-entropy secret (no password hasher per request) and,
at most every ``API_KEY_CACHE_SECONDS`` per process, one indexed query (by its 8-character
prefix, joined to its community). In between, a process answers from memory: a revoked or
expired key stops working within that many seconds (10 by default), and ``last_used_at`` is
written at most once a minute per key and process. The cached community row is only used for
its id, slug, time zone and ``rules_revision``; ingestion re-checks the revision in its locking
statement, so a new rule set version is never missed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from points.exceptions import InvalidMemberToken
from points.models import CommunityApiKey, Member
from points.selectors import member_from_token

KEYWORD = "api-key"
LAST_USED_EVERY = 60.0  # seconds between two writes of a key's last_used_at per process


class _CachedKey:
    __slots__ = ("api_key", "checked", "used_written")

    def __init__(self, api_key: CommunityApiKey, checked: float, used_written: float) -> None:
        self.api_key = api_key
        self.checked = checked
        self.used_written = used_written


_key_cache: dict[str, _CachedKey] = {}
_cache_lock = threading.Lock()


def _cache_seconds() -> float:
    return float(getattr(settings, "API_KEY_CACHE_SECONDS", 10))


def api_key_cache_clear() -> None:
    """Forget every cached key (tests that revoke a key and expect an immediate 401)."""
    with _cache_lock:
        _key_cache.clear()


def api_key_check(key: str) -> CommunityApiKey:
    """The usable key ``key`` (``prefix.secret``) stands for, from this process's cache when it
    was checked less than ``API_KEY_CACHE_SECONDS`` ago; ``AuthenticationFailed`` otherwise."""
    prefix, dot, _secret = key.partition(".")
    if not dot:
        raise exceptions.AuthenticationFailed("Malformed API key.")
    digest = hashlib.sha512(key.encode()).hexdigest()
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached is not None and now - cached.checked < _cache_seconds():
        api_key = cached.api_key
    else:
        found = (
            CommunityApiKey.objects.get_usable_keys()
            .select_related("community")
            .filter(prefix=prefix)
            .first()
        )
        if found is None or not found.is_valid(key) or found.has_expired:
            _key_cache.pop(digest, None)
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired API key.")
        api_key = found
        cached = _CachedKey(api_key, now, cached.used_written if cached else 0.0)
        with _cache_lock:
            if len(_key_cache) > 10_000:
                _key_cache.clear()
            _key_cache[digest] = cached
    if now - cached.used_written >= LAST_USED_EVERY:
        cached.used_written = now
        CommunityApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now())
    return api_key


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
        return (None, api_key_check(key.strip()))

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
        if not key_allows(api_key, scope):
            raise exceptions.PermissionDenied(f"This key lacks the '{scope}' scope.")
        return True


def key_allows(api_key: CommunityApiKey, scope: str | None) -> bool:
    """Whether ``api_key`` carries ``scope`` (``None``: any key), or ``admin``, which has all."""
    return scope is None or api_key.has_scope(scope) or api_key.has_scope("admin")


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


def request_community(request: Request) -> Any:
    """The community of the authenticated caller (API key or member token)."""
    return request.auth.community  # type: ignore[union-attr]


def request_actor(request: Request) -> str:
    """Who an API key's write is recorded as: ``key:<prefix>``."""
    return f"key:{request.auth.prefix}"  # type: ignore[union-attr]
