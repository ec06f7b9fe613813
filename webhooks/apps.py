from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"

    def ready(self) -> None:
        from points import outbox
        from webhooks.services import outbox_write

        outbox.register(outbox_write)
