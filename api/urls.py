from django.urls import path, register_converter

from api import (
    campaigns,
    events,
    incentives,
    leaderboards,
    operators,
    refresh,
    reports,
    rewards,
    views,
)


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
    # rewards: catalog, redemptions, payouts
    path("communities/<slug:community>/rewards", rewards.RewardsView.as_view(), name="rewards"),
    path(
        "communities/<slug:community>/rewards/<slug:code>",
        rewards.RewardDetailView.as_view(),
        name="reward-detail",
    ),
    path(
        "communities/<slug:community>/redemptions",
        rewards.RedemptionsView.as_view(),
        name="redemptions",
    ),
    path(
        "communities/<slug:community>/redemption-decisions",
        rewards.RedemptionBulkView.as_view(),
        name="redemptions-decide",
    ),
    path(
        "communities/<slug:community>/redemptions/<member:redemption_id>",
        rewards.RedemptionDetailView.as_view(),
        name="redemption-detail",
    ),
    path(
        "communities/<slug:community>/redemptions/<member:redemption_id>/approve",
        rewards.RedemptionApproveView.as_view(),
        name="redemption-approve",
    ),
    path(
        "communities/<slug:community>/redemptions/<member:redemption_id>/reject",
        rewards.RedemptionRejectView.as_view(),
        name="redemption-reject",
    ),
    path(
        "communities/<slug:community>/redemptions/<member:redemption_id>/cancel",
        rewards.RedemptionCancelView.as_view(),
        name="redemption-cancel",
    ),
    path(
        "communities/<slug:community>/redemptions/<member:redemption_id>/fulfil",
        rewards.RedemptionFulfilView.as_view(),
        name="redemption-fulfil",
    ),
    path("communities/<slug:community>/payouts", rewards.PayoutsView.as_view(), name="payouts"),
    path(
        "communities/<slug:community>/payouts/<str:payout_id>/confirm",
        rewards.PayoutConfirmView.as_view(),
        name="payout-confirm",
    ),
    path(
        "communities/<slug:community>/payouts/<str:payout_id>/fail",
        rewards.PayoutFailView.as_view(),
        name="payout-fail",
    ),
    path(
        "communities/<slug:community>/payouts/<str:payout_id>/retry",
        rewards.PayoutRetryView.as_view(),
        name="payout-retry",
    ),
    path(
        "communities/<slug:community>/payouts/<str:payout_id>/cancel",
        rewards.PayoutCancelView.as_view(),
        name="payout-cancel",
    ),
    # red packet campaigns
    path(
        "communities/<slug:community>/campaigns",
        campaigns.CampaignsView.as_view(),
        name="campaigns",
    ),
    path(
        "communities/<slug:community>/campaigns/<member:campaign_id>",
        campaigns.CampaignDetailView.as_view(),
        name="campaign-detail",
    ),
    path(
        "communities/<slug:community>/campaigns/<member:campaign_id>/approve",
        campaigns.CampaignApproveView.as_view(),
        name="campaign-approve",
    ),
    path(
        "communities/<slug:community>/campaigns/<member:campaign_id>/cancel",
        campaigns.CampaignCancelView.as_view(),
        name="campaign-cancel",
    ),
    path(
        "communities/<slug:community>/campaigns/<member:campaign_id>/allocations",
        campaigns.CampaignAllocationsView.as_view(),
        name="campaign-allocations",
    ),
    # member refresh (换血)
    path(
        "communities/<slug:community>/refresh-candidates",
        refresh.RefreshCandidatesView.as_view(),
        name="refresh-candidates",
    ),
    path(
        "communities/<slug:community>/refresh-candidates/<member:member>/confirm",
        refresh.RefreshConfirmView.as_view(),
        name="refresh-confirm",
    ),
    path(
        "communities/<slug:community>/refresh-candidates/<member:member>/spare",
        refresh.RefreshSpareView.as_view(),
        name="refresh-spare",
    ),
]

# assessment rounds (群门槛 / reviews)
from api import assessments  # noqa: E402

urlpatterns += [
    path(
        "communities/<slug:community>/assessments",
        assessments.AssessmentsView.as_view(),
        name="assessments",
    ),
    path(
        "communities/<slug:community>/assessments/<member:assessment_id>",
        assessments.AssessmentDetailView.as_view(),
        name="assessment-detail",
    ),
    path(
        "communities/<slug:community>/assessments/<member:assessment_id>/owner-scores",
        assessments.AssessmentOwnerScoresView.as_view(),
        name="assessment-owner-scores",
    ),
    path(
        "communities/<slug:community>/assessments/<member:assessment_id>/results",
        assessments.AssessmentResultsView.as_view(),
        name="assessment-results",
    ),
    path(
        "communities/<slug:community>/assessments/<member:assessment_id>/close",
        assessments.AssessmentCloseView.as_view(),
        name="assessment-close",
    ),
    path(
        "communities/<slug:community>/reports/<str:name>",
        reports.ReportView.as_view(),
        name="report",
    ),
]
