from django.urls import include, path

from web import dashboard, landing, redeem, views

urlpatterns = [
    path("", landing.landing, name="landing"),
    path("m/<str:token>/", views.member_page, name="member-page"),
    path("m/<str:token>/redeem", redeem.member_redeem, name="member-redeem"),
    path("m/<str:token>/cancel", redeem.member_redemption_cancel, name="member-redemption-cancel"),
    path("dashboard/", include(dashboard.urlpatterns)),  # staff only
]
