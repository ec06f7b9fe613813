"""Production settings pass ``manage.py check --deploy``; responses carry security headers."""

from __future__ import annotations

import os
import subprocess
import sys

from django.db import connection
from rest_framework.test import APIClient

from config.database import BASE_DIR


def test_production_settings_pass_check_deploy(db: None) -> None:
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "x" * 20 + "-a-long-random-looking-secret-for-the-check-" + "y" * 20,
        "DJANGO_ALLOWED_HOSTS": "incentives.example.com",
        "DATABASE_URL": (
            f"postgresql://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:"
            f"{settings['PORT'] or 5432}/{settings['NAME']}"
        ),
    }
    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_responses_carry_security_headers(db: None) -> None:
    response = APIClient().get("/healthz")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
