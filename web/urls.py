from django.urls import path

from web import landing, views

urlpatterns = [
    path("", landing.landing, name="landing"),
    path("m/<str:token>/", views.member_page, name="member-page"),
]
