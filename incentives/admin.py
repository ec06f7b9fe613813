"""Operators' view of the incentive jobs. Every change goes through a service, which locks,
records the change and writes the audit row: roles (``member_role_set``), the tier ladder
(``tier_ladder_set``), tier locks (``tier_set_lock``) and KOC decisions (``koc_confirm``,
``koc_dismiss``). What the jobs record (tier changes, candidates' figures, honor rolls) is
read-only here."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from incentives.config import DEFAULT_KOC, DEFAULT_TIERS, parse_koc, parse_ladder
from incentives.honors import CATEGORIES
from incentives.koc import koc_confirm, koc_dismiss
from incentives.models import (
    Honor,
    HonorRoll,
    IncentiveConfig,
    KocCandidate,
    KocStatus,
    MemberRole,
    MemberTier,
    RefreshCandidate,
    RefreshStatus,
    Role,
    TierChange,
)
from incentives.refresh import refresh_decide
from incentives.roles import member_role_set
from incentives.tiers import tier_ladder_set, tier_set_lock
from points.admin import MemberAdmin as PointsMemberAdmin
from points.admin import ReadOnlyAdmin, zoned
from points.exceptions import DomainError, ValidationFailed
from points.models import Member


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def _detail(field: str, label: str) -> Any:
    """``zoned`` for a detail page: a readonly field the admin looks up by name on itself."""
    return staticmethod(zoned(field, label))


def _problems(exc: ValidationFailed) -> list[str]:
    return [f"{e.field}: {e.message}" for e in exc.errors] or [exc.detail]


# --- member roles -------------------------------------------------------------------------------


class MemberRoleForm(forms.ModelForm):
    """A role other than ``member``: removing a role is the delete action (the service sets the
    member back to ``member``)."""

    role = forms.ChoiceField(choices=[c for c in Role.choices if c[0] != Role.MEMBER])

    class Meta:
        model = MemberRole
        fields = ["member", "role"]


@admin.register(MemberRole)
class MemberRoleAdmin(admin.ModelAdmin):
    """Roles are set, changed and removed through ``member_role_set`` (audited as
    ``role.set``); the community is the member's own."""

    form = MemberRoleForm
    list_display = [
        "community",
        "member",
        "member_name",
        "role",
        "set_by",
        zoned("set_at", "set at"),
    ]
    list_filter = ["community", "role"]
    search_fields = ["member__external_id", "member__display_name", "set_by"]
    list_select_related = ["community", "member"]
    autocomplete_fields = ["member"]
    set_at_zoned = _detail("set_at", "set at")

    @admin.display(description="display name", ordering="member__display_name")
    def member_name(self, obj: MemberRole) -> str:
        return obj.member.display_name

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return ["community", "member", "set_by", "set_at_zoned"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["member", "role"]
        return ["community", "member", "role", "set_by", "set_at_zoned"]

    def save_model(self, request: HttpRequest, obj: MemberRole, form: Any, change: bool) -> None:
        member: Member = form.cleaned_data.get("member") or obj.member
        member_role_set(
            community=member.community,
            member=member,
            role=form.cleaned_data["role"],
            actor=_actor(request),
        )
        saved = MemberRole.objects.get(community_id=member.community_id, member=member)
        obj.pk, obj.community_id, obj.set_by, obj.set_at = (
            saved.pk,
            saved.community_id,
            saved.set_by,
            saved.set_at,
        )

    def delete_model(self, request: HttpRequest, obj: MemberRole) -> None:
        member_role_set(
            community=obj.member.community,
            member=obj.member,
            role=Role.MEMBER,
            actor=_actor(request),
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MemberRole]) -> None:
        for row in queryset.select_related("member__community").order_by("member_id"):
            self.delete_model(request, row)


# --- tier ladder and KOC settings ---------------------------------------------------------------


class DocumentField(forms.JSONField):
    """A JSON document shown indented, refusing what PostgreSQL's jsonb cannot hold (NaN and
    Infinity, U+0000, lone surrogates) as a form error rather than a database error."""

    widget = forms.Textarea(attrs={"rows": 30, "cols": 80, "style": "font-family: monospace"})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            return _document(value)
        return super().to_python(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        """What was typed, shown again as typed when it is not a storable document."""
        if self.disabled:
            return initial
        if data is None:
            return None
        try:
            return _document(data)
        except forms.ValidationError:
            return forms.fields.InvalidJSONInput(data)


def _document(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise forms.ValidationError(f"{constant} is not JSON", code="invalid")

    try:
        doc = json.loads(text, parse_constant=refuse)
        path = _unstorable(doc, "")
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"Enter valid JSON: {exc}", code="invalid") from exc
    except RecursionError as exc:
        raise forms.ValidationError("The document is nested too deeply.", code="invalid") from exc
    if path:
        raise forms.ValidationError(
            f"{path}: U+0000 and lone surrogates cannot be stored", code="invalid"
        )
    return doc


def _unstorable(value: Any, path: str) -> str | None:
    """The path of the first string (or key) PostgreSQL cannot store, if any."""
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value):
            return path or "(document)"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, path or "(document)") or _unstorable(
                item, f"{path}.{key}" if path else str(key)
            )
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _unstorable(item, f"{path}[{index}]"):
                return found
    return None


class IncentiveConfigForm(forms.ModelForm):
    """The ladder document, validated by the jobs' own parser (every error with its path)."""

    class Meta:
        model = IncentiveConfig
        fields = ["community", "tiers"]
        field_classes = {"tiers": DocumentField}
        help_texts = {
            "tiers": (
                "points_window_days, low_water (0-1), min_stay_days, and tiers: a list of "
                "{code, name: {zh, en}, min_points, min_check_in_days, min_featured, "
                "requires_koc}; the first tier has no criteria."
            )
        }

    def clean_tiers(self) -> Any:
        document = self.cleaned_data["tiers"]
        try:
            parse_ladder(document)
        except ValidationFailed as exc:
            raise forms.ValidationError(_problems(exc)) from exc
        return document


@admin.register(IncentiveConfig)
class IncentiveConfigAdmin(admin.ModelAdmin):
    """A community's tier ladder, replaced whole through ``tier_ladder_set`` (audited as
    ``tiers.update``); members keep their level until the next run. A community without a row
    uses the default ladder: adding a row starts from it.

    The KOC settings are shown as the job reads them but not edited here: no service writes
    them yet, and the admin does not write domain rows itself."""

    form = IncentiveConfigForm
    list_display = ["community", "tier_codes", "updated_by", zoned("updated_at", "updated")]
    list_select_related = ["community"]
    search_fields = ["community__slug", "community__name"]
    updated_at_zoned = _detail("updated_at", "updated")

    @admin.display(description="tiers")
    def tier_codes(self, obj: IncentiveConfig) -> str:
        tiers = obj.tiers.get("tiers") if isinstance(obj.tiers, dict) else None
        if not isinstance(tiers, list):
            return "-"
        return " → ".join(str(t.get("code", "?")) for t in tiers if isinstance(t, dict))

    @admin.display(description="KOC settings (read-only)")
    def koc_settings(self, obj: IncentiveConfig) -> SafeString:
        stored = obj.koc if obj.pk else {}
        try:
            settings = parse_koc(stored or {})
        except ValidationFailed as exc:
            return format_html(
                "<p>The stored settings are invalid; the job refuses them:</p><ul>{}</ul>",
                format_html_join("", "<li>{}</li>", ((p,) for p in _problems(exc))),
            )
        rows = (
            (name, getattr(settings, name), "" if name in (stored or {}) else "default")
            for name in DEFAULT_KOC
        )
        return format_html(
            "<table><thead><tr><th>setting</th><th>value</th><th></th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["koc_settings"]
        return ["community", "koc_settings", "updated_by", "updated_at_zoned"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["community", "tiers", "koc_settings"]
        return ["community", "tiers", "koc_settings", "updated_by", "updated_at_zoned"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"tiers": DEFAULT_TIERS, **super().get_changeform_initial_data(request)}

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: IncentiveConfig, form: Any, change: bool
    ) -> None:
        tier_ladder_set(
            community=obj.community, document=form.cleaned_data["tiers"], actor=_actor(request)
        )
        saved = IncentiveConfig.objects.get(community=obj.community)
        obj.pk, obj.koc, obj.updated_at, obj.updated_by = (
            saved.pk,
            saved.koc,
            saved.updated_at,
            saved.updated_by,
        )


# --- tiers --------------------------------------------------------------------------------------


def _each(
    request: HttpRequest,
    rows: Iterable[Any],
    skip: Callable[[Any], str | None],
    act: Callable[[Any], Any],
    done: str,
) -> None:
    """Apply ``act`` (a service call) to each row in turn; a row ``skip`` explains away, or one
    the service refuses, is reported by member id and the others still go ahead."""
    changed: list[str] = []
    skipped: list[str] = []
    refused: list[str] = []
    for row in rows:
        name = row.member.external_id
        if reason := skip(row):
            skipped.append(f"{name} ({reason})")
            continue
        try:
            act(row)
        except DomainError as exc:
            refused.append(f"{name} ({exc.detail})")
        else:
            changed.append(name)
    if changed:
        messages.success(request, f"{done}: {', '.join(changed)}.")
    if skipped:
        messages.warning(request, f"Not changed: {', '.join(skipped)}.")
    if refused:
        messages.error(request, f"Refused: {', '.join(refused)}.")


@admin.register(MemberTier)
class MemberTierAdmin(ReadOnlyAdmin):
    """Members' current tiers (members without a row are in the first tier). An admin can
    lock a tier so that the job leaves it, and unlock it (``tier_set_lock``, audited)."""

    list_display = [
        "community",
        "member",
        "member_name",
        "code",
        "level",
        zoned("since", "since"),
        "locked",
        "locked_by",
    ]
    list_filter = ["community", "locked", "code"]
    search_fields = ["member__external_id", "member__display_name"]
    list_select_related = ["community", "member"]
    ordering = ["community", "-level", "member_id"]
    actions = ["lock_tier", "unlock_tier"]
    readonly_fields = ("community", "member", "code", "level", "since_zoned", "locked", "locked_by")
    fields = readonly_fields
    since_zoned = _detail("since", "since")
    show_full_result_count = False

    @admin.display(description="display name", ordering="member__display_name")
    def member_name(self, obj: MemberTier) -> str:
        return obj.member.display_name

    def has_lock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incentives.change_membertier")

    def _set_lock(self, request: HttpRequest, queryset: QuerySet[MemberTier], lock: bool) -> None:
        _each(
            request,
            queryset.select_related("community", "member").order_by("member_id"),
            skip=lambda row: (
                ("already locked" if lock else "not locked") if row.locked == lock else None
            ),
            act=lambda row: tier_set_lock(
                community=row.community, member=row.member, locked=lock, actor=_actor(request)
            ),
            done="Tier locked" if lock else "Tier unlocked",
        )

    @admin.action(description="Lock tier", permissions=["lock"])
    def lock_tier(self, request: HttpRequest, queryset: QuerySet[MemberTier]) -> None:
        self._set_lock(request, queryset, lock=True)

    @admin.action(description="Unlock tier", permissions=["lock"])
    def unlock_tier(self, request: HttpRequest, queryset: QuerySet[MemberTier]) -> None:
        self._set_lock(request, queryset, lock=False)


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyAdmin):
    """Every tier change with its reason and figures, newest first (append-only)."""

    list_display = [
        zoned("created_at", "when"),
        "community",
        "member",
        "kind",
        "from_code",
        "to_code",
        "reason",
        "actor",
    ]
    list_filter = ["kind", "community"]
    search_fields = ["member__external_id", "member__display_name", "reason", "actor", "run"]
    list_select_related = ["community", "member"]
    ordering = ["-created_at", "-id"]
    readonly_fields = (
        "created_at_zoned",
        "community",
        "member",
        "kind",
        "from_code",
        "to_code",
        "reason",
        "figures",
        "run",
        "actor",
    )
    fields = readonly_fields
    created_at_zoned = _detail("created_at", "when")
    show_full_result_count = False


# --- KOC ----------------------------------------------------------------------------------------


KOC_FIGURES = (
    "score",
    "robust_z",
    "trust_rank",
    "h_index",
    "distinct_reactors",
    "reciprocal_reactors",
    "distinct_days",
    "window_end",
)


@admin.register(KocCandidate)
class KocCandidateAdmin(ReadOnlyAdmin):
    """Candidates the KOC job found, best first, with the figures that explain them. An admin
    confirms or dismisses candidates (``koc_confirm``, ``koc_dismiss``, audited); a row already
    decided is reported and left as it is."""

    list_display = [
        "community",
        "member",
        "member_name",
        "status",
        *KOC_FIGURES,
        "decided_by",
    ]
    list_filter = ["status", "community"]
    search_fields = ["member__external_id", "member__display_name"]
    list_select_related = ["community", "member"]
    ordering = ["-score", "member_id"]
    actions = ["confirm", "dismiss"]
    readonly_fields = (
        "community",
        "member",
        "status",
        *KOC_FIGURES,
        "window_days",
        "figures",
        "detected_at_zoned",
        "decided_by",
        "decided_at_zoned",
        "note",
    )
    fields = readonly_fields
    detected_at_zoned = _detail("detected_at", "detected")
    decided_at_zoned = _detail("decided_at", "decided")

    @admin.display(description="display name", ordering="member__display_name")
    def member_name(self, obj: KocCandidate) -> str:
        return obj.member.display_name

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incentives.change_koccandidate")

    def _decide(
        self,
        request: HttpRequest,
        queryset: QuerySet[KocCandidate],
        decide: Callable[..., KocCandidate],
        done: str,
    ) -> None:
        _each(
            request,
            queryset.select_related("community", "member").order_by("member_id"),
            skip=lambda row: f"already {row.status}" if row.status != KocStatus.CANDIDATE else None,
            act=lambda row: decide(
                community=row.community, member=row.member, actor=_actor(request)
            ),
            done=done,
        )

    @admin.action(description="Confirm as KOC", permissions=["decide"])
    def confirm(self, request: HttpRequest, queryset: QuerySet[KocCandidate]) -> None:
        self._decide(request, queryset, koc_confirm, "Confirmed as KOC")

    @admin.action(description="Dismiss", permissions=["decide"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet[KocCandidate]) -> None:
        self._decide(request, queryset, koc_dismiss, "Dismissed")


# --- honor rolls --------------------------------------------------------------------------------

CATEGORY_LABELS = {
    "top_points": "Top points (积分榜)",
    "full_attendance": "Full attendance (全勤)",
    "best_content": "Best content (优质内容)",
    "most_helpful": "Most helpful (热心助人)",
    "top_inviters": "Top inviters (邀请达人)",
    "new_kocs": "New KOCs (新晋 KOC)",
    "promotions": "Promotions (晋级)",
}


def _figure(category: str, entry: dict[str, Any]) -> str:
    if category == "best_content":
        return (
            f"{entry.get('featured', 0)} featured, "
            f"{entry.get('distinct_reactors', 0)} distinct reactors"
        )
    if category == "promotions":
        return f"to {entry.get('tier', '?')}"
    return str(entry.get("value", ""))


def _category_table(category: str, entries: list[Any]) -> SafeString:
    if not entries:
        return format_html("<h3>{}</h3><p>nobody</p>", CATEGORY_LABELS.get(category, category))
    rows = (
        (
            entry.get("rank", ""),
            " (tied)" if entry.get("tied") else "",
            entry.get("member", ""),
            entry.get("display_name", ""),
            _figure(category, entry),
        )
        for entry in entries
        if isinstance(entry, dict)
    )
    return format_html(
        "<h3>{}</h3><table><thead><tr><th>rank</th><th>member</th><th>display name</th>"
        "<th>figure</th></tr></thead><tbody>{}</tbody></table>",
        CATEGORY_LABELS.get(category, category),
        format_html_join("", "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
    )


@admin.register(HonorRoll)
class HonorRollAdmin(ReadOnlyAdmin):
    """Published rolls (immutable), one per community and local month."""

    list_display = ["community", "month_label", zoned("published_at", "published"), "honors"]
    list_filter = ["community"]
    list_select_related = ["community"]
    ordering = ["-month", "community"]
    readonly_fields = ("community", "month_label", "published_at_zoned", "categories_tables")
    fields = readonly_fields
    published_at_zoned = _detail("published_at", "published")

    @admin.display(description="month", ordering="month")
    def month_label(self, obj: HonorRoll) -> str:
        return f"{obj.month:%Y-%m}"

    @admin.display(description="honors")
    def honors(self, obj: HonorRoll) -> int:
        categories = obj.categories if isinstance(obj.categories, dict) else {}
        return sum(len(v) for v in categories.values() if isinstance(v, list))

    @admin.display(description="categories")
    def categories_tables(self, obj: HonorRoll) -> SafeString:
        categories = obj.categories if isinstance(obj.categories, dict) else {}
        names = [*CATEGORIES, *sorted(set(categories) - set(CATEGORIES))]
        tables = (
            _category_table(name, categories[name] if isinstance(categories[name], list) else [])
            for name in names
            if name in categories
        )
        return format_html_join("", "{}", ((table,) for table in tables))


@admin.register(Honor)
class HonorAdmin(ReadOnlyAdmin):
    """One member's place in one category of a published roll."""

    list_display = ["community", "month", "category", "rank", "member", "member_name", "value"]
    list_filter = ["community", "category"]
    search_fields = ["member__external_id", "member__display_name"]
    list_select_related = ["community", "roll", "member"]
    ordering = ["-roll__month", "category", "rank", "member_id"]
    show_full_result_count = False

    @admin.display(description="month", ordering="roll__month")
    def month(self, obj: Honor) -> str:
        return f"{obj.roll.month:%Y-%m}"

    @admin.display(description="display name", ordering="member__display_name")
    def member_name(self, obj: Honor) -> str:
        return obj.member.display_name


# --- the member, as member_standing shows it -----------------------------------------------------


class MemberWithStandingAdmin(PointsMemberAdmin):
    """The points app's member admin plus everything ``member_standing`` shows about the member
    (``points`` may not import ``incentives``, so the standing is added here)."""

    readonly_fields = ["standing"]

    @admin.display(description="standing (member_standing: as the API and the member page)")
    def standing(self, obj: Member) -> SafeString:
        from incentives.standing import member_standing

        found = member_standing(obj)
        tier = found.tier
        rows: list[tuple[str, str]] = [
            ("role", found.role),
            (
                "tier",
                f"{tier.tier.code} ({tier.tier.name_en})" + (" locked" if tier.locked else ""),
            ),
            (
                "next tier",
                f"{tier.next_tier.code}: {tier.progress}% "
                + ", ".join(f"{c.figure} {c.value}/{c.required}" for c in tier.criteria)
                if tier.next_tier
                else "top tier",
            ),
            ("KOC", "confirmed" if found.koc else "no"),
            (
                "ranks",
                ", ".join(
                    f"{kind}: #{rank.rank} ({rank.points} points)"
                    if rank.rank
                    else f"{kind}: unranked ({rank.points} points)"
                    for kind, rank in found.ranks.items()
                ),
            ),
            ("streak", str(found.streak)),
            (
                "honors",
                ", ".join(f"{h.month} {h.category} #{h.rank}" for h in found.honors) or "none",
            ),
            (
                "achievements",
                ", ".join(f"{a['code']} {a['period']}" for a in found.achievements) or "none",
            ),
            (
                "expiring",
                ", ".join(f"{e.points} on {e.on}" for e in found.expiring) or "nothing",
            ),
        ]
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )


admin.site.unregister(Member)
admin.site.register(Member, MemberWithStandingAdmin)


# --- member refresh (换血) ---------------------------------------------------------------------


@admin.register(RefreshCandidate)
class RefreshCandidateAdmin(ReadOnlyAdmin):
    """The members the monthly refresh job flagged, per month, least active first, with the
    figures behind each. An operator confirms a ``to_refresh`` member (announced as
    ``refresh.confirmed`` so that a bot removes them) or spares an ``at_risk`` or
    ``to_refresh`` one, through ``refresh_decide`` (audited); other rows are reported and left
    as they are."""

    list_display = [
        "community",
        "period",
        "member",
        "member_name",
        "status",
        "speaking_days",
        "check_in_days",
        "window_days",
        zoned("flagged_at", "flagged"),
        zoned("recovery_until", "recovery until"),
        "decided_by",
    ]
    list_filter = ["status", "period", "community"]
    search_fields = ["member__external_id", "member__display_name", "decided_by"]
    list_select_related = ["community", "member"]
    ordering = ["-period", "community", "id"]
    actions = ["confirm_refresh", "spare_refresh"]
    readonly_fields = (
        "community",
        "period",
        "member",
        "status",
        "speaking_days",
        "check_in_days",
        "window_days",
        "figures",
        "flagged_at_zoned",
        "recovery_until_zoned",
        "decided_by",
        "decided_at_zoned",
        "note",
    )
    fields = readonly_fields
    flagged_at_zoned = _detail("flagged_at", "flagged")
    recovery_until_zoned = _detail("recovery_until", "recovery until")
    decided_at_zoned = _detail("decided_at", "decided")
    show_full_result_count = False

    @admin.display(description="display name", ordering="member__display_name")
    def member_name(self, obj: RefreshCandidate) -> str:
        return obj.member.display_name

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("incentives.change_refreshcandidate")

    def _decide(
        self,
        request: HttpRequest,
        queryset: QuerySet[RefreshCandidate],
        decision: str,
        allowed: tuple[str, ...],
        done: str,
    ) -> None:
        _each(
            request,
            queryset.select_related("community", "member").order_by("id"),
            skip=lambda row: f"{row.period} is {row.status}" if row.status not in allowed else None,
            act=lambda row: refresh_decide(
                community=row.community,
                member=row.member,
                period=row.period,
                decision=decision,
                actor=_actor(request),
            ),
            done=done,
        )

    @admin.action(description="Confirm removal (to_refresh only)", permissions=["decide"])
    def confirm_refresh(self, request: HttpRequest, queryset: QuerySet[RefreshCandidate]) -> None:
        self._decide(request, queryset, "confirm", (RefreshStatus.TO_REFRESH,), "Confirmed")

    @admin.action(description="Spare (keep the member)", permissions=["decide"])
    def spare_refresh(self, request: HttpRequest, queryset: QuerySet[RefreshCandidate]) -> None:
        self._decide(
            request,
            queryset,
            "spare",
            (RefreshStatus.AT_RISK, RefreshStatus.TO_REFRESH),
            "Spared",
        )
