"""The member page: a server-rendered, mobile-first view of one member's standing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _

from points.exceptions import InvalidMemberToken
from points.models import Member, PeriodKind
from points.selectors import (
    BoardRow,
    leaderboard_page,
    member_achievements,
    member_from_token,
    member_ledger,
    member_rank,
    member_streak,
    period_resolve,
)
from points.services import rank_snapshot_ensure

BOARD_SIZE = 10
HISTORY_SIZE = 15


def _reason(rule: str, kind: str, reason: str) -> str:
    """A ledger entry's reason in words."""
    words = {
        "points.join": _("Joined the community"),
        "points.check_in": _("Daily check-in"),
        "points.message": _("Took part in the conversation"),
        "points.share": _("Shared useful content"),
        "points.ugc_post": _("Published an original post"),
        "points.content_featured": _("Your post was featured"),
        "points.reaction": _("Others reacted to your content"),
        "points.invite": _("Invited a new member"),
        "points.help": _("Helped another member"),
        "streak.bonus": _("Check-in streak bonus"),
        "monthly_quota.bonus": _("Monthly check-in goal reached"),
    }
    by_kind = {
        "reversal": _("Correction"),
        "settlement": _("Paid back points owed"),
        "expiry": _("Points expired"),
    }
    if kind in by_kind:
        return by_kind[kind]
    if rule in words:
        return words[rule]
    if reason:
        return reason
    return rule.removeprefix("points.").replace("_", " ")


def _achievement(code: str) -> str:
    """An achievement in words (the default rule set's; a community's own codes as they are)."""
    words = {"monthly_check_in": _("Monthly check-in goal")}
    return str(words.get(code, code))


def _lang(request: HttpRequest) -> str:
    lang = request.GET.get("lang", "zh-hans")
    return "en" if lang.lower().startswith("en") else "zh-hans"


def member_page(request: HttpRequest, token: str) -> HttpResponse:
    lang = _lang(request)
    with translation.override(lang):
        try:
            member = member_from_token(token)
        except InvalidMemberToken:
            return render(request, "web/link_invalid.html", {"lang": lang}, status=403)
        return render(request, "web/member_page.html", _context(member, lang, token))


def _context(member: Member, lang: str, token: str) -> dict[str, Any]:
    community = member.community
    ranks = {}
    for kind in (PeriodKind.MONTH, PeriodKind.ALL_TIME):
        period = period_resolve(community, kind)
        rank = member_rank(community, member, period)
        if rank_snapshot_ensure(
            community=community, kind=period.kind, start=period.start, built_at=rank.built_at
        ):
            rank = member_rank(community, member, period)  # the period's first snapshot
        ranks[kind.value] = rank
    month = ranks[PeriodKind.MONTH.value].period
    board: list[BoardRow] = leaderboard_page(community, month, 0, BOARD_SIZE)
    mine = ranks[PeriodKind.MONTH.value]
    in_board = any(r.member == member.external_id for r in board)
    history = [
        {
            "points": e.points,
            "reason": _reason(e.rule, e.kind, e.reason),
            "at": e.created_at,
        }
        for e in member_ledger(member)[:HISTORY_SIZE]
    ]
    return {
        "lang": lang,
        "other_lang": "en" if lang == "zh-hans" else "zh-hans",
        "token": token,
        "member": member,
        "community": community,
        "month_rank": mine,
        "all_time_rank": ranks[PeriodKind.ALL_TIME.value],
        "month_label": month.label,
        "board": board,
        "me_in_board": in_board,
        "history": history,
        "streak": member_streak(member),
        "honors": [
            f"{_achievement(a['code'])} · {a['period']}" for a in member_achievements(member)
        ],
        "tier": None,
    }
