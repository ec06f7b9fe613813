"""The operator's dashboard: one admin page per community with the reports of
``incentives.reports`` drawn as inline SVG on the server (no script, no CDN, nothing to pin),
and links to the admin queues that need a person (refresh candidates, pending redemptions).

Staff only (``staff_member_required``: others are sent to the admin login). Every number shown
is escaped by ``format_html``; the charts are plain SVG elements with a ``<title>`` each, so a
hover (or a screen reader) gives the exact figure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from incentives.reports import (
    active_users,
    activity_heatmap,
    content_mix,
    liability,
    retention,
    reward_spend,
    usual_hours,
)
from points.models import Community

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
STAGE_NAMES = {
    "kol_driven": "KOL-driven",
    "official_content": "official content",
    "ugc_driven": "UGC-driven",
    None: "not yet determined",
}
COLOURS = {"kol": "#7b1fa2", "official": "#1565c0", "ugc": "#2e7d32"}


def _svg(width: int, height: int, label: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{}" width="{}" '
        'height="{}" viewBox="0 0 {} {}" class="chart">{}</svg>',
        label,
        width,
        height,
        width,
        height,
        body,
    )


def heatmap_svg(report: dict[str, Any]) -> SafeString:
    """7 rows (ISO days) × 24 columns (local hours): 168 ``rect.cell``, darker = more events."""
    cell, left, top = 22, 40, 22
    peak = max((max(row) for row in report["cells"]), default=0) or 1
    rects = []
    for d, row in enumerate(report["cells"]):
        for h, count in enumerate(row):
            shade = 0.06 + 0.94 * count / peak if count else 0.0
            rects.append(
                format_html(
                    '<rect class="cell" x="{}" y="{}" width="{}" height="{}" '
                    'fill="#b3261e" fill-opacity="{}" stroke="#eee" data-day="{}" '
                    'data-hour="{}" data-count="{}"><title>{} {}:00 – {} events</title></rect>',
                    left + h * cell,
                    top + d * cell,
                    cell,
                    cell,
                    f"{shade:.3f}",
                    d + 1,
                    h,
                    count,
                    DAYS[d],
                    f"{h:02d}",
                    count,
                )
            )
    day_labels = format_html_join(
        "",
        '<text x="0" y="{}" font-size="12">{}</text>',
        ((top + d * cell + 15, name) for d, name in enumerate(DAYS)),
    )
    hour_labels = format_html_join(
        "",
        '<text x="{}" y="14" font-size="11" text-anchor="middle">{}</text>',
        ((left + h * cell + cell // 2, h) for h in range(0, 24, 3)),
    )
    body = format_html("{}{}{}", day_labels, hour_labels, mark_safe("".join(rects)))  # noqa: S308
    return _svg(left + 24 * cell + 4, top + 7 * cell + 4, "Activity by hour and day", body)


def _polyline(points: list[tuple[float, float]], colour: str, name: str) -> SafeString:
    if not points:
        return format_html("")
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="2.5" fill="{}"/>',
        ((f"{x:.1f}", f"{y:.1f}", colour) for x, y in points),
    )
    return format_html(
        '<g class="series" data-series="{}"><polyline points="{}" fill="none" stroke="{}" '
        'stroke-width="2"/>{}</g>',
        name,
        coords,
        colour,
        dots,
    )


def active_users_svg(report: dict[str, Any]) -> SafeString:
    """DAU per day, WAU at each week's Monday, MAU at each month's first day, on one time axis."""
    width, height, left, bottom, top = 720, 220, 40, 24, 10
    days = [row["day"] for row in report["daily"]]
    if not days:
        return format_html("")
    first, span = days[0], max((days[-1] - days[0]).days, 1)
    peak = max(
        [row["dau"] for row in report["daily"]]
        + [row["wau"] for row in report["weekly"]]
        + [row["mau"] for row in report["monthly"]]
        + [1]
    )

    def xy(day: dt.date, value: int) -> tuple[float, float]:
        x = left + (width - left - 10) * (day - first).days / span
        y = height - bottom - (height - bottom - top) * value / peak
        return x, y

    series = format_html(
        "{}{}{}",
        _polyline([xy(r["day"], r["dau"]) for r in report["daily"]], "#b3261e", "dau"),
        _polyline([xy(r["week"], r["wau"]) for r in report["weekly"]], "#1565c0", "wau"),
        _polyline([xy(r["month"], r["mau"]) for r in report["monthly"]], "#2e7d32", "mau"),
    )
    axes = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<text x="0" y="{}" font-size="11">{}</text><text x="0" y="{}" font-size="11">0</text>'
        '<text x="{}" y="{}" font-size="11">{}</text>'
        '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>',
        left,
        height - bottom,
        width - 10,
        height - bottom,
        top + 10,
        peak,
        height - bottom,
        left,
        height - 6,
        first.isoformat(),
        width - 10,
        height - 6,
        days[-1].isoformat(),
    )
    return _svg(width, height, "DAU, WAU and MAU", format_html("{}{}", axes, series))


def _bars(
    groups: list[tuple[str, list[tuple[str, int, str]]]],
    label: str,
    *,
    stacked: bool,
    height: int = 200,
) -> SafeString:
    """Bars per group (a week, a month, an hour): stacked or side by side, each with a title."""
    width = max(360, 30 + len(groups) * 44)
    left, bottom, top = 30, 30, 10
    if stacked:
        peak = max([sum(v for _, v, _ in parts) for _, parts in groups] + [1])
    else:
        peak = max([v for _, parts in groups for _, v, _ in parts] + [1])
    slot = (width - left - 10) / max(len(groups), 1)
    scale = (height - bottom - top) / peak
    out = []
    for i, (name, parts) in enumerate(groups):
        x0 = left + i * slot + slot * 0.1
        base: float = height - bottom
        bar_width = slot * 0.8 / (1 if stacked else max(len(parts), 1))
        for j, (part, value, colour) in enumerate(parts):
            h = value * scale
            x = x0 if stacked else x0 + j * bar_width
            y = base - h
            out.append(
                format_html(
                    '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}" '
                    'data-part="{}" data-value="{}"><title>{} {}: {}</title></rect>',
                    f"{x:.1f}",
                    f"{y:.1f}",
                    f"{bar_width:.1f}",
                    f"{h:.1f}",
                    colour,
                    part,
                    value,
                    name,
                    part,
                    value,
                )
            )
            if stacked:
                base = y
        out.append(
            format_html(
                '<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>',
                f"{x0 + slot * 0.4:.1f}",
                height - 12,
                name,
            )
        )
    axis = format_html(
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>'
        '<text x="0" y="{}" font-size="11">{}</text>',
        left,
        height - bottom,
        width - 10,
        height - bottom,
        top + 10,
        peak,
    )
    return _svg(width, height, label, format_html("{}{}", axis, mark_safe("".join(out))))  # noqa: S308


def content_mix_svg(report: dict[str, Any]) -> SafeString:
    groups = [
        (
            f"{w['week']:%m-%d}",
            [(k, w[k], COLOURS[k]) for k in ("kol", "official", "ugc")],
        )
        for w in report["weeks"]
    ]
    return _bars(groups, "Content by author class per week", stacked=True)


def spend_svg(report: dict[str, Any]) -> SafeString:
    groups = [
        (
            f"{m['month']:%Y-%m}",
            [
                ("points spent", m["points_spent"], "#b3261e"),
                ("cash paid (fen)", m["cash_paid_fen"], "#2e7d32"),
                ("cash committed (fen)", m["cash_committed_fen"], "#f9a825"),
            ],
        )
        for m in report["months"]
    ]
    return _bars(groups, "Reward spend per month", stacked=False)


def usual_hours_svg(report: dict[str, Any]) -> SafeString:
    groups = [(f"{h}", [("members", n, "#1565c0")]) for h, n in enumerate(report["distribution"])]
    return _bars(groups, "Members by usual hour", stacked=True, height=160)


def _admin_url(name: str, query: str) -> str | None:
    """An admin changelist's URL, or None while that model is not in the admin."""
    try:
        return reverse(f"admin:{name}_changelist") + query
    except NoReverseMatch:
        return None


@staff_member_required
def dashboard_index(request: HttpRequest) -> HttpResponse:
    communities = Community.objects.order_by("slug")
    return render(
        request,
        "web/dashboard_index.html",
        {**admin.site.each_context(request), "communities": communities, "title": "Dashboards"},
    )


@staff_member_required
def community_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    community = get_object_or_404(Community, slug=slug)
    activity = activity_heatmap(community)
    users = active_users(community)
    cohorts = retention(community)
    mix = content_mix(community)
    hours = usual_hours(community)
    owed = liability(community)
    spend = reward_spend(community)
    links = {
        "refresh": _admin_url(
            "incentives_refreshcandidate", f"?community__id__exact={community.pk}"
        ),
        "redemptions": _admin_url(
            "rewards_redemption", f"?status=requested&community__id__exact={community.pk}"
        ),
        "community": _admin_url("points_community", f"?q={community.slug}"),
    }
    context = {
        **admin.site.each_context(request),
        "title": f"Dashboard: {community.name}",
        "community": community,
        "activity": activity,
        "heatmap": heatmap_svg(activity),
        "users": users,
        "users_chart": active_users_svg(users),
        "cohorts": cohorts,
        "mix": mix,
        "mix_chart": content_mix_svg(mix),
        "stage_name": STAGE_NAMES.get(mix["stage"], mix["stage"]),
        "hours": hours,
        "hours_chart": usual_hours_svg(hours),
        "liability": owed,
        "spend": spend,
        "spend_chart": spend_svg(spend),
        "links": links,
        "colours": COLOURS,
    }
    return render(request, "web/dashboard.html", context)


urlpatterns = [
    path("", dashboard_index, name="dashboard-index"),
    path("<slug:slug>/", community_dashboard, name="dashboard"),
]
