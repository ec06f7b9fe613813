"""/healthz (the process answers) and /readyz (database and broker reachable)."""

from __future__ import annotations

import json
import socket

import pytest
from django.conf import settings
from django.test import Client

from config.celery import app

pytestmark = pytest.mark.django_db

REDIS_URL = "redis://127.0.0.1:6379/0"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _use_broker(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Point the Celery app at another broker for one test (Celery reads CELERY_BROKER_URL
    from the environment before its configuration; monkeypatch restores it)."""
    monkeypatch.setenv("CELERY_BROKER_URL", url)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    assert app.conf.broker_write_url == url


def test_healthz_is_200_without_a_key():
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_database_and_broker_ok():
    response = Client().get("/readyz")

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_tests_use_the_configured_broker_or_the_filesystem_transport():
    assert settings.CELERY_BROKER_URL
    assert app.conf.broker_url == settings.CELERY_BROKER_URL


@pytest.mark.skipif(not _reachable("127.0.0.1", 6379), reason="no Redis on 127.0.0.1:6379")
def test_readyz_checks_a_real_redis_broker(monkeypatch):
    _use_broker(monkeypatch, REDIS_URL)

    response = Client().get("/readyz")

    assert response.status_code == 200, response.content
    assert response.json()["checks"]["broker"] == "ok"


def test_readyz_is_503_problem_when_the_broker_is_unreachable(monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _use_broker(monkeypatch, f"redis://127.0.0.1:{port}/0")

    response = Client().get("/readyz")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["code"] == "not_ready"
    assert body["status"] == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("error")
