"""Core Django settings shared by every environment."""

import base64
import hashlib
import os

from config.database import BASE_DIR, DATA_DIR
from config.serve import public_base_url

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-insecure-change-me-in-production-0123456789")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# Where people reach the service (links printed by commands): PUBLIC_BASE_URL, else HOST:PORT.
PUBLIC_BASE_URL = public_base_url()
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "*").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "points",
    "incentives",
    "rewards",
    "webhooks",
    "api",
    "web",
]

# The API (/api/v1/) and the probes skip the session, auth and messages middleware: they
# authenticate by header, never by cookie (api/middleware.py). The web pages run all of it.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, Swagger UI) served by the app itself under gunicorn: no extra server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # CONN_HEALTH_CHECKS by a poll of the socket, not a SELECT 1 per request.
    "api.middleware.DatabaseLivenessMiddleware",
    "config.observability.RequestMiddleware",
    "api.middleware.WebSessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "api.middleware.WebAuthenticationMiddleware",
    "api.middleware.WebMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# English unless the request asks otherwise (Accept-Language through LocaleMiddleware): API
# errors speak one language per response (api/errors.py); the member page picks its own.
LANGUAGE_CODE = "en"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # collectstatic fills it (make run, Docker)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A batch of 1,000 events is well under 2 MB; larger bodies are refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("MAX_REQUEST_BYTES", 2 * 1024 * 1024))
EVENTS_BATCH_MAX = 1000
# A process trusts a checked API key this long (revocation takes effect within it).
API_KEY_CACHE_SECONDS = float(os.environ.get("API_KEY_CACHE_SECONDS", "10"))

# Webhook signing secrets are stored encrypted (Fernet). Comma-separated keys: the first
# encrypts, all decrypt; rotate by putting a new key first and running
# `manage.py rotate_webhook_secrets` (docs/operations.md). Without the variable, a key is derived
# from SECRET_KEY (fine for development; set it in production).
WEBHOOK_SECRET_KEYS = [
    k.strip() for k in os.environ.get("WEBHOOK_SECRET_KEYS", "").split(",") if k.strip()
] or [
    base64.urlsafe_b64encode(hashlib.sha256(("webhooks:" + SECRET_KEY).encode()).digest()).decode()
]
