"""The member page: a server-rendered, mobile-first view of one member's standing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _

from config.db_router import reads_from_replica
from incentives.standing import member_standing, rank_snapshots_queue
from points.exceptions import InvalidMemberToken
from points.models import Member, PeriodKind
from points.selectors import (
    BoardRow,
    leaderboard_page,
    member_from_token,
    member_ledger,
)
from web.redeem import member_rewards

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


def _honor(category: str) -> str:
    """An honor roll category in words."""
    words = {
        "top_points": _("Top points"),
        "full_attendance": _("Full attendance"),
        "best_content": _("Best content"),
        "most_helpful": _("Most helpful"),
        "top_inviters": _("Top inviter"),
        "new_kocs": _("New KOC"),
        "promotions": _("Promoted"),
    }
    return str(words.get(category, category))


def _figure(name: str) -> str:
    words = {
        "points": _("points"),
        "check_in_days": _("check-in days"),
        "featured": _("featured posts"),
        "koc": _("KOC"),
    }
    return str(words.get(name, name))


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
        with reads_from_replica(member=member):  # the member lag rule (docs/scaling.md)
            return render(request, "web/member_page.html", _context(member, lang, token))


def _context(member: Member, lang: str, token: str) -> dict[str, Any]:
    """Everything shown comes from ``member_standing`` (the API's member endpoint reads the
    same); this page reads only: a missing or stale snapshot is queued, never built here."""
    community = member.community
    standing = member_standing(member)
    ranks = standing.ranks
    mine = ranks[PeriodKind.MONTH.value]
    rank_snapshots_queue(standing)
    month = mine.period
    board: list[BoardRow] = leaderboard_page(community, month, 0, BOARD_SIZE)
    in_board = any(r.member == member.external_id for r in board)
    history = [
        {
            "points": e.points,
            "reason": _reason(e.rule, e.kind, e.reason),
            # when it happened (the event), not when the entry was written
            "at": e.event.occurred_at if e.event is not None else e.created_at,
        }
        for e in member_ledger(member)[:HISTORY_SIZE]
    ]
    tier = standing.tier
    honors = [
        f"{_honor(h.category)} · {h.month}" + (f" · #{h.rank}" if h.rank > 1 else "")
        for h in standing.honors
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
        "streak": standing.streak,
        "honors": honors,
        "achievements": [
            f"{_achievement(a['code'])} · {a['period']}" for a in standing.achievements
        ],
        "tier": tier.tier.name(lang),
        "next_tier": tier.next_tier.name(lang) if tier.next_tier else None,
        "tier_progress": tier.progress,
        "tier_criteria": [
            {"label": _figure(c.figure), "value": c.value, "required": c.required}
            for c in tier.criteria
        ],
        "koc": standing.koc,
        "rewards": member_rewards(member, lang),
    }
