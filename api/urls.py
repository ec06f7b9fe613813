from django.urls import path, register_converter

from api import events, incentives, leaderboards, operators, views


class MemberIdConverter:
    """A member id: any text but '/' and NUL (PostgreSQL text cannot hold U+0000, so such an
    id can never exist; it is answered 404 instead of failing in the database driver)."""

    regex = r"[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MemberIdConverter, "member")

urlpatterns = [
    path("communities/<slug:community>/events", views.EventCreateView.as_view(), name="events"),
    path(
        "communities/<slug:community>/events/batch",
        views.EventBatchView.as_view(),
        name="events-batch",
    ),
    path(
        "communities/<slug:community>/events/<member:event_id>",
        events.EventDetailView.as_view(),
        name="event-detail",
    ),
    path(
        "communities/<slug:community>/events/<member:event_id>/reverse",
        events.EventReverseView.as_view(),
        name="event-reverse",
    ),
    path(
        "communities/<slug:community>/members/<member:member>",
        views.MemberDetailView.as_view(),
        name="member-detail",
    ),
    path(
        "communities/<slug:community>/members/<member:member>/ledger",
        views.MemberLedgerView.as_view(),
        name="member-ledger",
    ),
    path(
        "communities/<slug:community>/members/<member:member>/rank",
        leaderboards.MemberRankView.as_view(),
        name="member-rank",
    ),
    path(
        "communities/<slug:community>/members/<member:member>/token",
        leaderboards.MemberTokenView.as_view(),
        name="member-token",
    ),
    path(
        "communities/<slug:community>/adjustments",
        operators.AdjustmentView.as_view(),
        name="adjustments",
    ),
    path("communities/<slug:community>/rules", operators.RulesView.as_view(), name="rules"),
    path(
        "communities/<slug:community>/leaderboard",
        leaderboards.LeaderboardView.as_view(),
        name="leaderboard",
    ),
    # incentives: roles, tiers, KOC, honor rolls
    path(
        "communities/<slug:community>/members/<member:member>/role",
        incentives.MemberRoleView.as_view(),
        name="member-role",
    ),
    path(
        "communities/<slug:community>/members/<member:member>/tiers",
        incentives.MemberTiersView.as_view(),
        name="member-tiers",
    ),
    path(
        "communities/<slug:community>/members/<member:member>/tier-lock",
        incentives.MemberTierLockView.as_view(),
        name="member-tier-lock",
    ),
    path("communities/<slug:community>/tiers", incentives.TiersView.as_view(), name="tiers"),
    path("communities/<slug:community>/koc", incentives.KocListView.as_view(), name="koc"),
    path(
        "communities/<slug:community>/koc/<member:member>/confirm",
        incentives.KocConfirmView.as_view(),
        name="koc-confirm",
    ),
    path(
        "communities/<slug:community>/koc/<member:member>/dismiss",
        incentives.KocDismissView.as_view(),
        name="koc-dismiss",
    ),
    path(
        "communities/<slug:community>/honor-rolls/<str:month>",
        incentives.HonorRollView.as_view(),
        name="honor-roll",
    ),
]
