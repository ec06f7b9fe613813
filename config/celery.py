"""The Celery application; configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("incentives")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Request ids travel with tasks; task durations are measured (config/observability.py).
from config.observability import connect_celery_signals  # noqa: E402

connect_celery_signals()
