"""Redeeming from the member page: what the member may redeem (read for the page) and the two
writes a member may make there, a request and its cancellation.

Why this is safe without a login:

- the member comes only from the signed, expiring link in the URL, never from the form, so a
  form cannot name another member;
- every POST passes Django's CSRF middleware (the page renders ``{% csrf_token %}``; the cookie
  and the token travel together because the page is server-rendered);
- each rendered redeem form carries a one-time key, a random nonce signed for this member,
  which becomes the redemption's client id ``page:<nonce>``: a double click or a resubmitted
  form replays one redemption (``redemption_request`` is idempotent by client id), and a member
  cannot pick client ids of their own;
- after every POST the browser is sent back to the page with a 303 (Post/Redirect/Get) and the
  outcome is shown once (``django.contrib.messages``), so reloading the page posts nothing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core import signing
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from incentives.config import community_ladder
from points.exceptions import DomainError, InvalidMemberToken, ValidationFailed
from points.models import Member
from points.selectors import member_from_token
from points.timeutils import community_zone
from rewards.catalog import catalog_for_member
from rewards.exceptions import InvalidTransition, RedemptionConflict, RewardNotFound
from rewards.models import Redemption, RedemptionStatus, Reward, RewardKind
from rewards.redemptions import RedemptionRequest, redemption_cancel, redemption_request

CHANNEL = "member_page"
KEY_SALT = "web.member-page.redeem-key"
RECENT_REDEMPTIONS = 10
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


# --- the one-time form key -------------------------------------------------------------------


def form_key_issue(member: Member, reward: str) -> str:
    """A key for one rendered redeem form: a fresh random nonce, signed for this member and
    this reward."""
    payload = {"m": member.pk, "r": reward, "n": secrets.token_urlsafe(16)}
    return signing.dumps(payload, salt=KEY_SALT)


def form_key_client_id(member: Member, reward: str, key: str) -> str | None:
    """The redemption client id a form key stands for, or ``None`` if the key was not issued
    here for this member and this reward."""
    try:
        payload = signing.loads(key, salt=KEY_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or (payload.get("m"), payload.get("r")) != (member.pk, reward):
        return None
    nonce = str(payload.get("n", ""))
    return f"page:{nonce}" if _NONCE.match(nonce) else None


# --- words -----------------------------------------------------------------------------------


def _kind(kind: str) -> str:
    words: dict[str, str] = {
        RewardKind.RED_PACKET: _("Red packet"),
        RewardKind.MERCH: _("Merch"),
        RewardKind.VIRTUAL: _("Virtual reward"),
    }
    return words.get(kind, kind)


def _status(status: str) -> str:
    words: dict[str, str] = {
        RedemptionStatus.REQUESTED: _("Waiting for approval"),
        RedemptionStatus.APPROVED: _("Approved"),
        RedemptionStatus.FULFILLED: _("Fulfilled"),
        RedemptionStatus.REJECTED: _("Rejected"),
        RedemptionStatus.CANCELLED: _("Cancelled"),
    }
    return words.get(status, status)


def _yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def _refusal(code: str, message: str, reward: Reward, member: Member, lang: str) -> str:
    """A refusal (``rewards.catalog.eligibility``'s codes) in the member's language; a code this
    page does not know is shown as the service worded it."""
    if code == "member_left":
        return _("You are no longer a member of this community.")
    if code == "inactive":
        return _("This reward is not offered at the moment.")
    if code == "not_yet_available" and reward.available_from is not None:
        zone = community_zone(member.community.timezone)
        when = timezone.localtime(reward.available_from, zone).strftime("%Y-%m-%d %H:%M")
        return _("Available from %(when)s.") % {"when": when}
    if code == "no_longer_available":
        return _("No longer available.")
    if code == "tier_too_low":
        names = {t.code: t.name(lang) for t in community_ladder(reward.community_id).tiers}
        return _("Needs the tier %(tier)s or higher.") % {
            "tier": names.get(reward.min_tier, reward.min_tier)
        }
    if code == "not_on_honor_roll":
        months = reward.honor_months
        return ngettext(
            "Only for members on last month's honor roll.",
            "Only for members on an honor roll in the last %(months)d months.",
            months,
        ) % {"months": months}
    if code == "monthly_limit" and reward.limit_per_month is not None:
        return _("You have reached this month's limit of %(limit)d per member.") % {
            "limit": reward.limit_per_month
        }
    if code == "insufficient_points":
        return _("Costs %(cost)d points; you have %(spendable)d to spend.") % {
            "cost": reward.cost_points,
            "spendable": member.spendable,
        }
    if code == "out_of_stock":
        return _("Out of stock.")
    return message


def _field_problem(field: str) -> str:
    words = {
        "variant": _("Choose a size or variant."),
        "shipping.name": _("Enter the recipient's name (up to 100 characters)."),
        "name": _("Enter the recipient's name (up to 100 characters)."),
        "shipping.phone": _("Enter a phone number (digits, up to 32 characters)."),
        "phone": _("Enter a phone number (digits, up to 32 characters)."),
        "shipping.address": _("Enter the shipping address (up to 300 characters)."),
        "address": _("Enter the shipping address (up to 300 characters)."),
    }
    return str(words.get(field, _("The form could not be read; please try again.")))


# --- the page's data -------------------------------------------------------------------------


def member_rewards(member: Member, lang: str) -> dict[str, Any]:
    """The catalog as this member sees it (each reward eligible or with its reasons in words,
    each eligible one with a fresh form key) and their recent redemptions."""
    catalog = []
    for row in catalog_for_member(member):
        reward: Reward = row["reward"]
        catalog.append(
            {
                "reward": reward,
                "kind": _kind(reward.kind),
                "value": _yuan(reward.value_fen) if reward.kind == RewardKind.RED_PACKET else "",
                "merch": reward.kind == RewardKind.MERCH,
                "variants": row["variants"],
                "eligible": row["eligible"],
                "reasons": list(
                    dict.fromkeys(
                        _refusal(r.code, r.message, reward, member, lang) for r in row["refusals"]
                    )
                ),
                "key": form_key_issue(member, reward.code) if row["eligible"] else "",
            }
        )
    recent = (
        Redemption.objects.filter(community_id=member.community_id, member=member)
        .select_related("reward", "variant")
        .order_by("-created_at", "-pk")[:RECENT_REDEMPTIONS]
    )
    redemptions = [
        {
            "id": r.client_id,
            "title": r.reward.title,
            "variant": r.variant.label if r.variant else "",
            "points": r.points,
            "status": r.status,
            "status_label": _status(r.status),
            "at": r.created_at,
            "reason": r.reason if r.status == RedemptionStatus.REJECTED else "",
            "tracking_number": r.tracking_number,
            "cancellable": r.status == RedemptionStatus.REQUESTED,
        }
        for r in recent
    ]
    return {
        "catalog": catalog,
        "redemptions": redemptions,
        "spendable": member.spendable,
        "held": member.held,
    }


# --- the writes ------------------------------------------------------------------------------


class RedeemForm(forms.Form):
    """Bounds what a redeem form may carry; the service decides what is required."""

    key = forms.CharField(max_length=300)
    reward = forms.SlugField(max_length=64)
    variant = forms.CharField(max_length=64, required=False)
    name = forms.CharField(max_length=100, required=False)
    phone = forms.CharField(
        max_length=32, required=False, validators=[RegexValidator(r"^[0-9+()\- ]{5,32}$")]
    )
    address = forms.CharField(max_length=300, required=False)


def _page_lang(request: HttpRequest) -> str:
    from web.views import _lang

    return _lang(request)


def _member_post(
    request: HttpRequest,
    token: str,
    act: Callable[[HttpRequest, Member, str], None],
) -> HttpResponse:
    """The member from the link, ``act`` in the page's language, then back to the page (303);
    an expired or tampered link gets the invalid-link page (403) and nothing is written."""
    lang = _page_lang(request)
    with translation.override(lang):
        try:
            member = member_from_token(token)
        except InvalidMemberToken:
            return render(request, "web/link_invalid.html", {"lang": lang}, status=403)
        act(request, member, lang)
    url = reverse("member-page", args=[token]) + ("?lang=en" if lang == "en" else "")
    return HttpResponseRedirect(url, status=303)


def _request(request: HttpRequest, member: Member, lang: str) -> None:
    form = RedeemForm(request.POST)
    client_id = form_key_client_id(
        member, request.POST.get("reward", ""), request.POST.get("key", "")
    )
    if not form.is_valid() or client_id is None:
        problems = [_field_problem(f) for f in form.errors] or [_field_problem("key")]
        for problem in dict.fromkeys(problems):
            messages.error(request, problem)
        return
    data = form.cleaned_data
    shipping = {f: data[f] for f in ("name", "phone", "address")}
    item = RedemptionRequest(
        client_id=client_id,
        member=member.external_id,
        reward=data["reward"],
        variant=data["variant"],
        shipping=shipping if any(shipping.values()) else None,
    )
    try:
        row, created = redemption_request(
            community=member.community,
            item=item,
            actor=f"member:{member.external_id}",
            channel=CHANNEL,
        )
    except RewardNotFound:
        messages.error(request, _("This reward is no longer offered."))
    except RedemptionConflict:
        messages.error(
            request,
            _("This form was already sent with other details; use the refreshed page."),
        )
    except ValidationFailed as exc:
        for problem in dict.fromkeys(_field_problem(e.field) for e in exc.errors):
            messages.error(request, problem)
    except DomainError as exc:  # NotEligible, OutOfStock, InsufficientPoints: the reasons
        member.refresh_from_db()
        reward = Reward.objects.get(community=member.community, code=item.reward)
        reasons = dict.fromkeys(
            _refusal(e.code, e.message, reward, member, lang) for e in exc.errors
        )
        messages.error(
            request,
            _("Not redeemed: %(reasons)s") % {"reasons": " ".join(reasons) or exc.detail},
        )
    else:
        words = {"title": row.reward.title, "points": row.points}
        if created:
            messages.success(
                request,
                _(
                    "Requested %(title)s. It now waits for an admin's approval; your "
                    "%(points)d points are held until then."
                )
                % words,
            )
        else:
            messages.info(
                request,
                _("%(title)s was already requested (%(status)s).")
                % {**words, "status": _status(row.status)},
            )


def _cancel(request: HttpRequest, member: Member, lang: str) -> None:
    client_id = request.POST.get("redemption", "")[:128]
    row = (
        Redemption.objects.filter(
            community_id=member.community_id, member=member, client_id=client_id
        )
        .select_related("reward")
        .first()
    )
    if row is None:
        messages.error(request, _("There is no such request of yours."))
        return
    try:
        redemption_cancel(
            community=member.community,
            client_id=row.client_id,
            actor=f"member:{member.external_id}",
        )
    except InvalidTransition:
        row.refresh_from_db(fields=["status"])
        messages.info(
            request,
            _("%(title)s can no longer be cancelled (%(status)s).")
            % {"title": row.reward.title, "status": _status(row.status)},
        )
    else:
        messages.success(
            request,
            _("Cancelled %(title)s; your %(points)d points are free to spend again.")
            % {"title": row.reward.title, "points": row.points},
        )


@require_POST
def member_redeem(request: HttpRequest, token: str) -> HttpResponse:
    """POST /m/<token>/redeem: request a redemption from a rendered form (its one-time key)."""
    return _member_post(request, token, _request)


@require_POST
def member_redemption_cancel(request: HttpRequest, token: str) -> HttpResponse:
    """POST /m/<token>/cancel: cancel one of the member's own pending redemptions."""
    return _member_post(request, token, _cancel)
