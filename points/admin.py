"""Operators' view of the ledger. Events and entries are read-only: corrections are new
entries made by services, never edits."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin

from points.models import Community, CommunityApiKey, Event, LedgerEntry, Member, RuleSet


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Community)
class CommunityAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "timezone", "rules_revision", "created_at"]
    search_fields = ["slug", "name"]
    readonly_fields = ["rules_revision", "created_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CommunityApiKey)
class CommunityApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "community", "scopes", "last_used_at")  # type: ignore[assignment]
    list_filter = (*APIKeyModelAdmin.list_filter, "community")  # type: ignore[assignment]


@admin.register(RuleSet)
class RuleSetAdmin(ReadOnlyAdmin):
    list_display = ["community", "version", "effective_from", "note", "created_at"]
    list_filter = ["community"]


@admin.register(Member)
class MemberAdmin(ReadOnlyAdmin):
    list_display = [
        "external_id",
        "display_name",
        "community",
        "status",
        "balance",
        "held",
        "lifetime_points",
        "joined_at",
    ]
    list_filter = ["community", "status"]
    search_fields = ["external_id", "display_name"]
    list_select_related = ["community"]
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["client_id", "community", "type", "member", "occurred_at", "points"]
    list_filter = ["community", "type"]
    search_fields = ["client_id", "member__external_id"]
    list_select_related = ["community", "member"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "community",
        "member",
        "kind",
        "points",
        "balance_after",
        "rule",
        "created_at",
    ]
    list_filter = ["community", "kind"]
    search_fields = ["member__external_id", "event__client_id"]
    list_select_related = ["community", "member"]
    show_full_result_count = False
