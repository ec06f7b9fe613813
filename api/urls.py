from django.urls import path

from api import leaderboards, views

urlpatterns = [
    path("communities/<slug:community>/events", views.EventCreateView.as_view(), name="events"),
    path(
        "communities/<slug:community>/events/batch",
        views.EventBatchView.as_view(),
        name="events-batch",
    ),
    path(
        "communities/<slug:community>/members/<str:member>",
        views.MemberDetailView.as_view(),
        name="member-detail",
    ),
    path(
        "communities/<slug:community>/members/<str:member>/ledger",
        views.MemberLedgerView.as_view(),
        name="member-ledger",
    ),
    path(
        "communities/<slug:community>/members/<str:member>/rank",
        leaderboards.MemberRankView.as_view(),
        name="member-rank",
    ),
    path(
        "communities/<slug:community>/members/<str:member>/token",
        leaderboards.MemberTokenView.as_view(),
        name="member-token",
    ),
    path(
        "communities/<slug:community>/leaderboard",
        leaderboards.LeaderboardView.as_view(),
        name="leaderboard",
    ),
]
