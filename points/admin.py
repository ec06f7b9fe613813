"""Operators' view of the ledger. Events and entries are read-only: corrections are new
entries made by services, never edits."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from points.adjustments import adjustments_bulk_import, adjustments_parse_csv
from points.exceptions import DomainError, FieldError, RulesInvalid
from points.models import (
    AuditLog,
    Community,
    CommunityApiKey,
    Event,
    LedgerEntry,
    Member,
    RuleSet,
)
from points.rules import parse_rules
from points.services import rule_set_policy_errors, rule_set_publish


class AdjustmentImportForm(forms.Form):
    community = forms.ModelChoiceField(queryset=Community.objects.order_by("slug"))
    file = forms.FileField(help_text="CSV: member,points,reason (a header line is optional)")
    note = forms.CharField(max_length=200, required=False)


MAX_UPLOAD_BYTES = 2 * 1024 * 1024


class RuleSetForm(forms.ModelForm):
    """A new version: the document is validated by the rule engine's parser and the
    publishing policy (``rule_set_policy_errors``) is shown as form errors; the service checks
    the policy again under its lock when the version is saved."""

    confirm_zero = forms.BooleanField(
        required=False,
        label="Publish even if no event type scores points",
        help_text="A rule set in which every points value is 0 stops every member earning.",
    )

    class Meta:
        model = RuleSet
        fields = ["community", "effective_from", "rules", "note"]

    def clean_rules(self) -> Any:
        rules = self.cleaned_data["rules"]
        try:
            parse_rules(rules)
        except RulesInvalid as exc:
            raise forms.ValidationError([f"{e.field}: {e.message}" for e in exc.errors]) from exc
        return rules

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        community, effective_from = data.get("community"), data.get("effective_from")
        if community is None or effective_from is None or "rules" not in data:
            return data
        errors = rule_set_policy_errors(
            rules=parse_rules(data["rules"]),
            effective_from=effective_from,
            latest=RuleSet.objects.filter(community=community).order_by("-version").first(),
            now=timezone.now(),
            confirm_zero=data.get("confirm_zero", False),
        )
        for error in errors:
            field = error.field.split(".")[0]
            self.add_error(field if field in self.fields else None, error.message)
        return data


# The library registers an admin for its own concrete APIKey model, which nothing uses here (keys
# are CommunityApiKey): without this, the admin shows a second, always empty "API keys" section.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


def zoned(field: str, label: str) -> Any:
    """A list column for a datetime field that says its time zone, in the header and the value
    (the admin shows times in ``TIME_ZONE``)."""

    @admin.display(description=f"{label} ({settings.TIME_ZONE})", ordering=field)
    def column(obj: Any) -> str:
        value = getattr(obj, field)
        return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S %Z}" if value else "-"

    column.__name__ = f"{field}_zoned"
    return column


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Community)
class CommunityAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "timezone", "rules_revision", zoned("created_at", "created")]
    search_fields = ["slug", "name"]
    readonly_fields = ["rules_revision", "created_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CommunityApiKey)
class CommunityApiKeyAdmin(APIKeyModelAdmin):
    list_display = (  # type: ignore[assignment]
        "prefix",
        "name",
        zoned("created", "created"),
        zoned("expiry_date", "expires"),
        "_has_expired",
        "revoked",
        "community",
        "scopes",
        zoned("last_used_at", "last used"),
    )
    list_filter = (*APIKeyModelAdmin.list_filter, "community")  # type: ignore[assignment]


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    """New versions are added here (validated, audited); existing versions are never edited."""

    list_display = [
        "community",
        "version",
        zoned("effective_from", "effective from"),
        "note",
        zoned("created_at", "created"),
    ]
    list_filter = ["community"]
    form = RuleSetForm

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RuleSet, form: Any, change: bool) -> None:
        published = rule_set_publish(
            community=obj.community,
            rules=obj.rules,
            effective_from=obj.effective_from,
            note=obj.note,
            actor=f"user:{request.user.get_username()}",
            confirm_zero=form.cleaned_data.get("confirm_zero", False),
        )
        obj.pk, obj.version, obj.created_at = published.pk, published.version, published.created_at


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
        zoned("joined_at", "joined"),
    ]
    list_filter = ["community", "status"]
    search_fields = ["external_id", "display_name"]
    list_select_related = ["community"]
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = [
        "client_id",
        "community",
        "type",
        "member",
        zoned("occurred_at", "occurred"),
        "points",
    ]
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
        zoned("created_at", "created"),
    ]
    list_filter = ["community", "kind"]
    search_fields = ["member__external_id", "event__client_id"]
    list_select_related = ["community", "member"]
    show_full_result_count = False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Nobody edits the audit log (the database refuses it too). Bulk awards are imported
    from here: the "Import adjustments (CSV)" button above the list."""

    list_display = [zoned("created_at", "when"), "community", "actor", "action", "target"]
    list_filter = ["community", "action"]
    search_fields = ["actor", "target", "client_id"]
    list_select_related = ["community"]
    change_list_template = "admin/points/auditlog/change_list.html"

    def get_urls(self) -> list[Any]:
        return [
            path(
                "import-adjustments/",
                self.admin_site.admin_view(self.import_adjustments),
                name="points_auditlog_import",
            ),
            *super().get_urls(),
        ]

    def import_adjustments(self, request: HttpRequest) -> HttpResponse:
        """Validate the whole CSV first; write nothing unless every row is good."""
        if not request.user.has_perm("points.view_auditlog") or not request.user.is_staff:
            raise PermissionDenied
        form = AdjustmentImportForm(request.POST or None, request.FILES or None)
        errors: list[FieldError] = []
        if request.method == "POST" and form.is_valid():
            community = form.cleaned_data["community"]
            content = form.cleaned_data["file"].read(MAX_UPLOAD_BYTES + 1)
            if len(content) > MAX_UPLOAD_BYTES:
                errors = [FieldError("file", "too_large", "at most 2 MB")]
            else:
                items, errors = adjustments_parse_csv(content)
            if not errors:
                try:
                    summary = adjustments_bulk_import(
                        community=community,
                        items=items,
                        actor=f"user:{request.user.get_username()}",
                        note=form.cleaned_data["note"],
                    )
                except DomainError as exc:
                    errors = [FieldError("file", exc.code, exc.detail)]
                else:
                    messages.success(
                        request,
                        f"Imported {summary['rows']} adjustments ({summary['points']:+d} points) "
                        f"into {community.slug}.",
                    )
                    return redirect("admin:points_auditlog_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Import adjustments (CSV)",
            "form": form,
            "errors": errors,
            "opts": self.model._meta,
        }
        return render(
            request, "admin/points/auditlog/import.html", context, status=400 if errors else 200
        )


@admin.register(LogEntry)
class AdminActionLogAdmin(ReadOnlyAdmin):
    """Every change made through this admin (Django records it), for operators to review."""

    list_display = [
        zoned("action_time", "when"),
        "user",
        "content_type",
        "object_repr",
        "action_flag",
    ]
    list_filter = ["action_flag", "content_type"]
    search_fields = ["object_repr", "user__username"]
