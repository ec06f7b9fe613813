"""Operators' view of rewards: the catalog, each community's reward policy, the approval queue,
payouts and red packet campaigns.

Every change goes through a service that locks, audits and announces: ``reward_save`` for the
catalog, ``redemption_approve``/``redemption_reject``, ``payout_retry``/``payout_cancel``,
``campaign_approve``/``campaign_cancel``. Actions act row by row with the admin as the actor
(``user:<username>``); a row the service refuses is reported by id and the others go ahead.
Money rows (redemptions, payouts, campaigns, allocations) are read-only and never deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Sum, URLField
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from points.admin import ReadOnlyAdmin, zoned
from points.exceptions import DomainError
from points.models import Community
from points.timeutils import month_start, today
from rewards.campaigns import campaign_approve, campaign_cancel
from rewards.catalog import (
    SETTINGS_FIELDS,
    RewardInput,
    VariantInput,
    reward_save,
    reward_settings,
    reward_settings_set,
)
from rewards.models import (
    Allocation,
    Campaign,
    CampaignStatus,
    Payout,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardKind,
    RewardSettings,
    RewardVariant,
)
from rewards.payouts import payout_cancel, payout_retry
from rewards.redemptions import (
    REASON_MAX,
    cash_committed,
    redemption_approve,
    redemption_reject,
)
from rewards.selectors import GRANTED, MemberContext, member_contexts

ALLOCATIONS_SHOWN = 100


def _actor(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


def _detail(field_name: str, label: str) -> Any:
    """``zoned`` for a detail page: a readonly field the admin looks up by name on itself."""
    return staticmethod(zoned(field_name, label))


def _when(value: dt.datetime | None) -> str:
    """An instant as ``zoned`` shows it: in ``TIME_ZONE``, with the zone's name."""
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M:%S %Z}" if value else "-"


def _yuan(fen: int | None) -> str:
    """Integer fen as yuan, without floats: 123456 → ¥1,234.56."""
    if fen is None:
        return "-"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def _problems(exc: DomainError) -> list[tuple[str | None, str]]:
    """A refusal as (field, message) pairs; ``None`` when it names no field."""
    return [(e.field or None, e.message) for e in exc.errors] or [(None, exc.detail)]


def _apply(
    request: HttpRequest,
    queryset: QuerySet[Any],
    act: Callable[[Any], str],
    name: Callable[[Any], str] = lambda row: row.client_id,
) -> None:
    """Call ``act`` (one service call, its own transaction) on each selected row in turn, in
    primary-key order, and report the rows by outcome; a row the service refuses is reported
    with the service's reason and the others still go ahead."""
    outcomes: dict[str, list[str]] = {}
    refused: list[str] = []
    for row in _selected(request, queryset):
        try:
            outcome = act(row)
        except DomainError as exc:
            refused.append(f"{name(row)} ({exc.detail})")
        else:
            outcomes.setdefault(outcome, []).append(name(row))
    for outcome, names in outcomes.items():
        messages.success(request, f"{outcome}: {', '.join(names)}.")
    if refused:
        messages.error(request, f"Refused: {'; '.join(refused)}.")


def _selected(request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
    """The rows ticked, including those that left the filtered list since the page was shown
    (another admin decided them): they are reported as refused, not silently skipped.
    "Select all" acts on the filtered list."""
    if request.POST.get("select_across") == "1":
        rows = queryset
    else:
        ticked = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        rows = queryset.model.objects.filter(pk__in=ticked)
    return rows.select_related("community").order_by("pk")


def _reason(request: HttpRequest, required_for: str) -> str | None:
    """The action form's reason, or ``None`` (reported) when it is missing or too long."""
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(
            request,
            f"{required_for} needs a reason: write it in the reason field beside the action. "
            "Nothing was changed.",
        )
        return None
    if len(reason) > REASON_MAX:
        messages.error(
            request,
            f"The reason is {len(reason)} characters; at most {REASON_MAX}. Nothing was changed.",
        )
        return None
    return reason


class ReasonActionForm(helpers.ActionForm):
    """The action bar with a reason, which rejecting and cancelling record."""

    reason = forms.CharField(
        required=False,
        label="Reason (reject / cancel):",
        widget=forms.TextInput(attrs={"size": 40}),
    )


# --- reward settings ----------------------------------------------------------------------------


def spend_against_budget(community: Community, now: dt.datetime | None = None) -> str:
    """Cash committed in the community's current local month against its monthly budget."""
    policy = reward_settings(community)
    day = today(community.timezone, now)
    spent = cash_committed(community, day)
    month = f"{month_start(day):%Y-%m} ({community.timezone})"
    budget = policy.monthly_budget_fen
    if budget is None:
        return f"{_yuan(spent)} committed in {month}; no monthly budget"
    share = f" ({spent * 100 // budget} %)" if budget else ""
    left = max(budget - spent, 0)
    return f"{_yuan(spent)} of {_yuan(budget)}{share} committed in {month}; {_yuan(left)} left"


class RewardSettingsForm(forms.ModelForm):
    """Amounts in fen (1 yuan = 100 fen), counts as whole numbers; none negative."""

    second_approval_above_fen = forms.IntegerField(
        min_value=0,
        label="Second approval above (fen)",
        help_text="A redemption or campaign worth more than this needs two different admins.",
    )
    monthly_budget_fen = forms.IntegerField(
        min_value=0,
        required=False,
        label="Monthly budget (fen)",
        help_text="Cash a community may commit in one local month; empty: no budget.",
    )
    welcome_packet_fen = forms.IntegerField(
        min_value=0, label="Welcome packet (fen)", help_text="0: no welcome packet."
    )
    welcome_daily_budget_fen = forms.IntegerField(
        min_value=0, label="Welcome packets per day (fen)"
    )
    featured_reward_fen = forms.IntegerField(
        min_value=0, label="Featured content reward (fen)", help_text="0: no content reward."
    )
    member_daily_packets = forms.IntegerField(min_value=0, label="Packets per member per day")
    member_daily_fen = forms.IntegerField(min_value=0, label="Fen per member per day")

    class Meta:
        model = RewardSettings
        fields = ["community", *SETTINGS_FIELDS]


@admin.register(RewardSettings)
class RewardSettingsAdmin(admin.ModelAdmin):
    """A community's reward policy, with its spend this month against the budget. A community
    without a row uses the defaults (adding a row starts from them)."""

    form = RewardSettingsForm
    list_display = [
        "community",
        "second_approval",
        "budget",
        "spent",
        "updated_by",
        zoned("updated_at", "updated"),
    ]
    list_select_related = ["community"]
    search_fields = ["community__slug", "community__name"]
    updated_at_zoned = _detail("updated_at", "updated")

    @admin.display(description="second approval above")
    def second_approval(self, obj: RewardSettings) -> str:
        return _yuan(obj.second_approval_above_fen)

    @admin.display(description="monthly budget")
    def budget(self, obj: RewardSettings) -> str:
        return "none" if obj.monthly_budget_fen is None else _yuan(obj.monthly_budget_fen)

    @admin.display(description="spent this month / budget")
    def spent(self, obj: RewardSettings) -> str:
        return spend_against_budget(obj.community) if obj.community_id else "-"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return ["community", "spent", "updated_by", "updated_at_zoned"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["community", *SETTINGS_FIELDS]
        return ["community", "spent", *SETTINGS_FIELDS, "updated_by", "updated_at_zoned"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(
        self, request: HttpRequest, obj: RewardSettings, form: Any, change: bool
    ) -> None:
        saved = reward_settings_set(
            community=obj.community,
            values={name: form.cleaned_data[name] for name in SETTINGS_FIELDS},
            actor=_actor(request),
        )
        obj.pk, obj.updated_at, obj.updated_by = saved.pk, saved.updated_at, saved.updated_by


# --- catalog ------------------------------------------------------------------------------------


class VariantForm(forms.ModelForm):
    """A variant's code names it in ``reward_save``: fixed once the variant exists."""

    class Meta:
        model = RewardVariant
        fields = ["code", "label", "stock"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["code"].disabled = True


class VariantInline(admin.TabularInline):
    model = RewardVariant
    form = VariantForm
    fk_name = "reward"
    fields = ["code", "label", "stock", "reserved", "available"]
    readonly_fields = ["reserved", "available"]
    extra = 1
    can_delete = False

    @admin.display(description="available (stock − reserved)")
    def available(self, obj: RewardVariant) -> int | str:
        return obj.available if obj.pk else "-"


def _reward_input(form: forms.ModelForm, formsets: Iterable[Any]) -> RewardInput:
    """The reward as the form and its variant rows describe it (the form's values are on its
    instance; readonly fields keep the stored ones)."""
    reward: Reward = form.instance
    variants: list[VariantInput] = []
    for formset in formsets:
        for row in formset.forms:
            if not row.instance.pk and not row.has_changed():
                continue
            data = row.cleaned_data
            variants.append(VariantInput(data["code"], data["label"], data["stock"]))
    return RewardInput(
        code=reward.code,
        kind=reward.kind,
        title=reward.title,
        cost_points=reward.cost_points,
        value_fen=reward.value_fen,
        description=reward.description,
        image_url=reward.image_url,
        min_tier=reward.min_tier,
        honor_months=reward.honor_months,
        limit_per_month=reward.limit_per_month,
        available_from=reward.available_from,
        available_until=reward.available_until,
        active=reward.active,
        variants=tuple(variants),
    )


REFUSAL = "_rewards_admin_refusal"


@admin.register(Reward)
class RewardAdmin(admin.ModelAdmin):
    """Catalog items with their variants. A reward and its variants are saved together by one
    ``reward_save`` call, so its validation (tier codes, a red packet's amount, variants only
    for merch, the window) and its stock rule (never below what pending redemptions reserve,
    checked under the variant's row lock) apply, and it writes the audit row.

    The service runs once the form and the variant rows are valid, inside the admin's
    transaction. When it refuses, that transaction is rolled back (nothing is written) and the
    page is shown again with the service's errors on the fields they name (variant errors
    above the form), the operator's input kept: the validation is the service's own rather
    than a copy of it. The kind and code of an existing reward, and a variant's code, are
    fixed; variants are not deleted (set their stock to 0)."""

    inlines = [VariantInline]
    list_display = [
        "code",
        "community",
        "kind",
        "title",
        "cost_points",
        "value",
        "min_tier",
        "stock_summary",
        "active",
        zoned("updated_at", "updated"),
    ]
    list_filter = ["community", "kind", "active"]
    search_fields = ["code", "title"]
    list_select_related = ["community"]
    ordering = ["community", "cost_points", "code"]
    created_at_zoned = _detail("created_at", "created")
    updated_at_zoned = _detail("updated_at", "updated")
    editable = [
        "title",
        "description",
        "image_url",
        "cost_points",
        "value_fen",
        "min_tier",
        "honor_months",
        "limit_per_month",
        "available_from",
        "available_until",
        "active",
    ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if isinstance(db_field, URLField):
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Reward]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                stock_total=Coalesce(Sum("variants__stock"), 0),
                reserved_total=Coalesce(Sum("variants__reserved"), 0),
            )
        )

    @admin.display(description="value")
    def value(self, obj: Reward) -> str:
        return _yuan(obj.value_fen)

    @admin.display(description="available / stock")
    def stock_summary(self, obj: Reward) -> str:
        if obj.kind != RewardKind.MERCH:
            return "unlimited"
        stock = getattr(obj, "stock_total", 0)
        return f"{stock - getattr(obj, 'reserved_total', 0)} / {stock}"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["community", "code", "kind", *self.editable]
        return ["community", "code", "kind", *self.editable, "created_at_zoned", "updated_at_zoned"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return ["community", "code", "kind", "created_at_zoned", "updated_at_zoned"]

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        if obj is not None and obj.kind != RewardKind.MERCH:
            return []
        return self.inlines

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        for name, help_text in (
            ("value_fen", "Fen (1 yuan = 100 fen): a red packet's amount; merch: its value."),
            ("min_tier", "A tier code of the community's ladder; empty: anyone."),
            ("honor_months", "Only members on an honor roll of the last N months; 0: anyone."),
            ("available_from", f"In {settings.TIME_ZONE}."),
            ("available_until", f"In {settings.TIME_ZONE}."),
        ):
            if name in form.base_fields:
                form.base_fields[name].help_text = help_text
        refusal: DomainError | None = getattr(request, REFUSAL, None)
        if refusal is None:
            return form
        problems = _problems(refusal)

        class Refused(form):  # type: ignore[valid-type,misc]
            """The same form, carrying what the service refused."""

            def clean(self) -> Any:
                data = super().clean()
                for name, message in problems:
                    if name in self.fields:
                        self.add_error(name, message)
                    else:
                        self.add_error(None, f"{name}: {message}" if name else message)
                return data

        return Refused

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:
            if request.method != "POST" or hasattr(request, REFUSAL):
                raise
            setattr(request, REFUSAL, exc)
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Reward, form: Any, change: bool) -> None:
        """Nothing yet: ``save_related`` saves the reward with its variants in one call."""

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        reward = reward_save(
            community=form.instance.community,
            item=_reward_input(form, formsets),
            actor=_actor(request),
            create=not change,
        )
        form.instance.pk, form.instance.created_at, form.instance.updated_at = (
            reward.pk,
            reward.created_at,
            reward.updated_at,
        )
        for formset in formsets:  # what the admin's change message reads after a save
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- the approval queue -------------------------------------------------------------------------


CONTEXT = "_member_context"


class QueueChangeList(ChangeList):
    """Loads the member context of the page's rows in bulk, once the page is known."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        contexts = member_contexts(row.member for row in rows)
        for row in rows:
            setattr(row, CONTEXT, contexts[row.member_id])
        self.result_list = rows


def _context(row: Redemption) -> MemberContext:
    found = getattr(row, CONTEXT, None)
    if found is None:  # a single row (the detail page): its own bulk load
        found = member_contexts([row.member])[row.member_id]
        setattr(row, CONTEXT, found)
    return found


class QueueFilter(admin.SimpleListFilter):
    """The queue (requested) unless another status, or all, is chosen."""

    title = "status"
    parameter_name = "status"
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [
            *(
                (value, f"{label} (the queue)" if value == "requested" else label)
                for value, label in RedemptionStatus.choices
            ),
            (self.ALL, "All"),
        ]

    def value(self) -> str:
        return super().value() or RedemptionStatus.REQUESTED

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == self.ALL:
            return queryset
        return queryset.filter(status=self.value())


class SecondApprovalFilter(admin.SimpleListFilter):
    title = "second approval"
    parameter_name = "second_approval"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return [("awaiting", "awaiting a second admin")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "awaiting":
            return queryset.filter(status=RedemptionStatus.REQUESTED).exclude(approved_by="")
        return queryset


def _awaiting_second(obj: Redemption) -> bool:
    return obj.status == RedemptionStatus.REQUESTED and bool(obj.approved_by)


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdmin):
    """The approval queue: requested redemptions, newest first, each with the member's context
    (tier, KOC, last activity, points this month, redemptions granted, recent honors).

    "Approve selected" calls ``redemption_approve`` per row: above the community's amount the
    first admin's approval is recorded and the row waits for a second, different admin; the
    same admin again, a row no longer requested or one past the monthly budget is refused and
    reported. "Reject selected" records the reason typed beside the action
    (``redemption_reject``, which releases points and stock)."""

    list_display = [
        "client_id",
        "state",
        "community",
        "member_shown",
        "reward_shown",
        "points",
        "value",
        "tier",
        "koc",
        "last_activity",
        "points_this_month",
        "granted_before",
        "honors",
        zoned("created_at", "requested"),
    ]
    list_filter = [QueueFilter, SecondApprovalFilter, "community", "reward__kind"]
    search_fields = ["client_id", "member__external_id", "member__display_name", "reward__code"]
    list_select_related = ["community", "member__community", "reward", "variant"]
    ordering = ["-created_at", "-id"]
    actions = ["approve", "reject"]
    action_form = ReasonActionForm
    show_full_result_count = False
    readonly_fields = (
        "client_id",
        "community",
        "state",
        "member_shown",
        "member_context",
        "reward_shown",
        "quantity",
        "points",
        "value",
        "budget",
        "shipping_shown",
        "channel",
        "requested_by",
        "approved_by",
        "approved_at_zoned",
        "second_approved_by",
        "decided_by",
        "decided_at_zoned",
        "reason",
        "payout_reference",
        "tracking_number",
        "fulfilled_by",
        "fulfilled_at_zoned",
        "created_at_zoned",
        "updated_at_zoned",
    )
    fields = readonly_fields
    approved_at_zoned = _detail("approved_at", "first approved")
    decided_at_zoned = _detail("decided_at", "decided")
    fulfilled_at_zoned = _detail("fulfilled_at", "fulfilled")
    created_at_zoned = _detail("created_at", "requested")
    updated_at_zoned = _detail("updated_at", "updated")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return QueueChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Redemption]:
        return (
            super()
            .get_queryset(request)
            .select_related("community", "member__community", "reward", "variant")
        )

    @admin.display(description="status", ordering="status")
    def state(self, obj: Redemption) -> str:
        if _awaiting_second(obj):
            return f"awaiting second approval (first: {obj.approved_by})"
        return obj.status

    @admin.display(description="member", ordering="member__external_id")
    def member_shown(self, obj: Redemption) -> str:
        name = obj.member.display_name
        return f"{obj.member.external_id} · {name}" if name else obj.member.external_id

    @admin.display(description="reward", ordering="reward__code")
    def reward_shown(self, obj: Redemption) -> str:
        shown = f"{obj.reward.title} ({obj.reward.code})"
        if obj.variant is not None:
            shown += f" / {obj.variant.label}"
        return f"{shown} × {obj.quantity}" if obj.quantity != 1 else shown

    @admin.display(description="value", ordering="value_fen")
    def value(self, obj: Redemption) -> str:
        return _yuan(obj.value_fen)

    @admin.display(description="tier")
    def tier(self, obj: Redemption) -> str:
        return _context(obj).tier

    @admin.display(description="KOC", boolean=True)
    def koc(self, obj: Redemption) -> bool:
        return _context(obj).koc

    @admin.display(description=f"last event ({settings.TIME_ZONE})")
    def last_activity(self, obj: Redemption) -> str:
        return _when(_context(obj).last_event_at)

    @admin.display(description="points this month")
    def points_this_month(self, obj: Redemption) -> int:
        return _context(obj).points_this_month

    @admin.display(description="granted before")
    def granted_before(self, obj: Redemption) -> int:
        context = _context(obj)
        return context.granted - (1 if obj.status in GRANTED else 0)

    @admin.display(description="honors")
    def honors(self, obj: Redemption) -> str:
        found = _context(obj).honors
        return ", ".join(f"{category} #{rank} ({month})" for month, category, rank in found) or "-"

    @admin.display(description="member context")
    def member_context(self, obj: Redemption) -> SafeString:
        context = _context(obj)
        others = ", ".join(f"{n} {status}" for status, n in sorted(context.redemptions.items()))
        rows = [
            ("tier", context.tier),
            ("KOC", "yes" if context.koc else "no"),
            (f"last event ({settings.TIME_ZONE})", _when(context.last_event_at)),
            (f"points in {context.month}", str(context.points_this_month)),
            ("redemptions (this one included)", others or "-"),
            (
                "honors (this and last month's rolls)",
                "; ".join(f"{m} {c} #{r}" for m, c, r in context.honors) or "-",
            ),
            ("balance / held", f"{obj.member.balance} / {obj.member.held}"),
        ]
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    @admin.display(description="community's spend this month / budget")
    def budget(self, obj: Redemption) -> str:
        return spend_against_budget(obj.community)

    @admin.display(description="shipping")
    def shipping_shown(self, obj: Redemption) -> SafeString | str:
        if not isinstance(obj.shipping, dict) or not obj.shipping:
            return "-"
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join(
                "", "<tr><th>{}</th><td>{}</td></tr>", ((k, v) for k, v in obj.shipping.items())
            ),
        )

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rewards.change_redemption")

    @admin.action(description="Approve selected", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Redemption]) -> None:
        actor = _actor(request)

        def act(row: Redemption) -> str:
            done = redemption_approve(community=row.community, client_id=row.client_id, actor=actor)
            if done.status == RedemptionStatus.APPROVED:
                return "Approved"
            return "First approval recorded; a second, different admin must approve"

        _apply(request, queryset, act)

    @admin.action(description="Reject selected (with the reason)", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[Redemption]) -> None:
        reason = _reason(request, "Rejecting")
        if reason is None:
            return
        actor = _actor(request)

        def act(row: Redemption) -> str:
            redemption_reject(
                community=row.community, client_id=row.client_id, actor=actor, reason=reason
            )
            return "Rejected"

        _apply(request, queryset, act)


# --- payouts ------------------------------------------------------------------------------------


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    """Cash owed to members. A failed payout is retried (``payout_retry``: announced to the bot
    again) or cancelled with a reason (``payout_cancel``: a red packet redemption's points
    come back to the member)."""

    list_display = [
        "id",
        "community",
        "member",
        "amount",
        "status",
        "attempts",
        "source",
        "reference",
        "failure",
        "local_day",
        zoned("created_at", "requested"),
        zoned("updated_at", "updated"),
    ]
    list_filter = ["status", "community"]
    search_fields = ["member__external_id", "reference", "redemption__client_id"]
    list_select_related = ["community", "member", "redemption", "allocation__campaign"]
    ordering = ["-created_at", "-id"]
    actions = ["retry", "cancel"]
    action_form = ReasonActionForm
    show_full_result_count = False
    readonly_fields = (
        "id",
        "community",
        "member",
        "amount",
        "status",
        "attempts",
        "source",
        "reference",
        "failure",
        "local_day",
        "created_at_zoned",
        "updated_at_zoned",
    )
    fields = readonly_fields
    created_at_zoned = _detail("created_at", "requested")
    updated_at_zoned = _detail("updated_at", "updated")

    @admin.display(description="amount", ordering="amount_fen")
    def amount(self, obj: Payout) -> str:
        return _yuan(obj.amount_fen)

    @admin.display(description="for")
    def source(self, obj: Payout) -> str:
        if obj.redemption is not None:
            return f"redemption {obj.redemption.client_id}"
        if obj.allocation is not None:
            return f"campaign {obj.allocation.campaign.client_id} #{obj.allocation.index}"
        return "-"

    def has_settle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rewards.change_payout")

    @admin.action(description="Retry selected (failed)", permissions=["settle"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        actor = _actor(request)

        def act(row: Payout) -> str:
            payout_retry(community=row.community, payout_id=row.pk, actor=actor)
            return "Asked the bot again"

        _apply(request, queryset, act, lambda r: f"payout {r.pk}")

    @admin.action(description="Cancel selected (failed, with the reason)", permissions=["settle"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        reason = _reason(request, "Cancelling a payout")
        if reason is None:
            return
        actor = _actor(request)

        def act(row: Payout) -> str:
            payout_cancel(community=row.community, payout_id=row.pk, actor=actor, reason=reason)
            return "Cancelled"

        _apply(request, queryset, act, lambda r: f"payout {r.pk}")


# --- campaigns ----------------------------------------------------------------------------------


def _paid(field_name: str) -> Subquery:
    totals = (
        Payout.objects.filter(
            community_id=OuterRef("community_id"), allocation__campaign=OuterRef("pk")
        )
        .order_by()
        .values("allocation__campaign")
        .annotate(n=Count("id"), s=Sum("amount_fen"))
        .values(field_name)
    )
    return Subquery(totals, output_field=IntegerField())


def _with_payout(rows: QuerySet[Allocation]) -> QuerySet[Allocation]:
    """The packets with their payout's id and status (one probe of the payout's unique
    (community, allocation) key per packet, whatever the packets' communities)."""
    payout = Payout.objects.filter(community_id=OuterRef("community_id"), allocation=OuterRef("pk"))
    return rows.annotate(
        payout_pk=Subquery(payout.values("pk")[:1]),
        payout_status=Subquery(payout.values("status")[:1]),
    )


def _payout_shown(row: Allocation) -> str:
    """The packet's payout (none until approval, or when its member was skipped)."""
    if not hasattr(row, "payout_pk"):  # not from ``_with_payout``
        payout = row.payout
        return f"{payout.pk}: {payout.status}" if payout is not None else "-"
    pk, status = getattr(row, "payout_pk", None), getattr(row, "payout_status", None)
    return f"{pk}: {status}" if pk is not None else "-"


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    """Red packet campaigns, read-only: created through the API or automatically. A draft is
    approved (``campaign_approve``: two different admins above the community's amount; the
    budget checked; members over their daily limits skipped and reported) or cancelled
    (``campaign_cancel``). The detail page shows the first packets of the stored allocation;
    every packet is in the allocation list."""

    list_display = [
        "client_id",
        "community",
        "kind",
        "title",
        "total",
        "packets",
        "split",
        "state",
        "paid",
        "created_by",
        "approved_by",
        "second_approved_by",
        zoned("approved_at", "approved"),
        zoned("created_at", "created"),
    ]
    list_filter = ["status", "kind", "community"]
    search_fields = ["client_id", "title"]
    list_select_related = ["community"]
    ordering = ["-created_at", "-id"]
    actions = ["approve", "cancel"]
    action_form = ReasonActionForm
    show_full_result_count = False
    readonly_fields = (
        "client_id",
        "community",
        "kind",
        "title",
        "state",
        "total",
        "packets",
        "audience",
        "split",
        "min_fen",
        "max_fen",
        "seed",
        "algorithm_version",
        "allocation_digest",
        "paid",
        "created_by",
        "approved_by",
        "second_approved_by",
        "approved_at_zoned",
        "created_at_zoned",
        "budget",
        "allocation",
    )
    fields = readonly_fields
    approved_at_zoned = _detail("approved_at", "approved")
    created_at_zoned = _detail("created_at", "created")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return super().get_queryset(request).annotate(paid_packets=_paid("n"), paid_fen=_paid("s"))

    @admin.display(description="total", ordering="total_fen")
    def total(self, obj: Campaign) -> str:
        return _yuan(obj.total_fen)

    @admin.display(description="status", ordering="status")
    def state(self, obj: Campaign) -> str:
        if obj.status == CampaignStatus.DRAFT and obj.approved_by:
            return f"awaiting second approval (first: {obj.approved_by})"
        return obj.status

    @admin.display(description="paid out")
    def paid(self, obj: Campaign) -> str:
        packets = getattr(obj, "paid_packets", None) or 0
        return f"{packets} packets, {_yuan(getattr(obj, 'paid_fen', None) or 0)}"

    @admin.display(description="community's spend this month / budget")
    def budget(self, obj: Campaign) -> str:
        return spend_against_budget(obj.community)

    @admin.display(description="allocation")
    def allocation(self, obj: Campaign) -> SafeString:
        total = Allocation.objects.filter(campaign=obj).count()
        rows = _with_payout(
            Allocation.objects.filter(campaign=obj).select_related("member").order_by("index")
        )[:ALLOCATIONS_SHOWN]
        lines = (
            (
                row.index,
                row.member.external_id if row.member else "-",
                _yuan(row.amount_fen),
                _payout_shown(row),
            )
            for row in rows
        )
        link = reverse("admin:rewards_allocation_changelist") + f"?campaign__id__exact={obj.pk}"
        return format_html(
            '<p>{} of {} packets shown; <a href="{}">every packet</a>.</p>'
            "<table><thead><tr><th>#</th><th>member</th><th>amount</th><th>payout</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            min(total, ALLOCATIONS_SHOWN),
            total,
            link,
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", lines),
        )

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rewards.change_campaign")

    @admin.action(description="Approve selected", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        actor = _actor(request)

        def act(row: Campaign) -> str:
            done = campaign_approve(community=row.community, client_id=row.client_id, actor=actor)
            if not done.completed:
                return "First approval recorded; a second, different admin must approve"
            skipped = ", ".join(f"{s.member} ({s.reason})" for s in done.skipped)
            return f"Approved: {done.paid} packets ({_yuan(done.paid_fen)}) paid" + (
                f", skipped {skipped}" if skipped else ""
            )

        _apply(request, queryset, act)

    @admin.action(description="Cancel selected (drafts)", permissions=["decide"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        actor = _actor(request)
        reason = request.POST.get("reason", "").strip()[:REASON_MAX]

        def act(row: Campaign) -> str:
            campaign_cancel(
                community=row.community, client_id=row.client_id, actor=actor, reason=reason
            )
            return "Cancelled"

        _apply(request, queryset, act)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    """Every packet of every campaign, in index order (filter by campaign from its page)."""

    list_display = ["campaign", "index", "member", "amount", "payout_status"]
    list_filter = ["community"]
    search_fields = ["campaign__client_id", "member__external_id"]
    list_select_related = ["campaign", "member"]
    ordering = ["campaign", "index"]
    show_full_result_count = False
    readonly_fields = ("community", "campaign", "index", "member", "amount", "payout_status")
    fields = readonly_fields

    @admin.display(description="amount", ordering="amount_fen")
    def amount(self, obj: Allocation) -> str:
        return _yuan(obj.amount_fen)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Allocation]:
        return _with_payout(super().get_queryset(request))

    @admin.display(description="payout")
    def payout_status(self, obj: Allocation) -> str:
        return _payout_shown(obj)
