from django.apps import AppConfig


class WebConfig(AppConfig):
    """Server-rendered pages: the member page and the operator dashboard."""

    name = "web"
