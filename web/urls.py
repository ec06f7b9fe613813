from django.urls import path

from web import views

urlpatterns = [
    path("m/<str:token>/", views.member_page, name="member-page"),
]
