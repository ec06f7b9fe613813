"""Request ids (in, out, in the logs, into Celery tasks), JSON log lines, /metrics."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from rest_framework.test import APIClient

from config.observability import (
    JsonFormatter,
    on_before_task_publish,
    on_task_postrun,
    on_task_prerun,
    request_id_var,
)


def test_a_sane_request_id_is_echoed_and_a_missing_one_generated(client_for: APIClient) -> None:
    given = client_for.get("/healthz", HTTP_X_REQUEST_ID="bot-42.abc")
    fresh = client_for.get("/healthz")
    hostile = client_for.get("/healthz", HTTP_X_REQUEST_ID="x" * 65 + "\n")
    assert given["X-Request-ID"] == "bot-42.abc"
    assert len(fresh["X-Request-ID"]) == 32
    assert hostile["X-Request-ID"] != "x" * 65 + "\n"


def test_one_json_access_line_per_request(
    client_for: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="incentives.access"):
        client_for.post(
            "/api/v1/communities/acme/events",
            {"id": "e1", "type": "share", "member": "ann"},
            format="json",
            HTTP_X_REQUEST_ID="req-1",
        )
    [record] = [r for r in caplog.records if r.name == "incentives.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-1"
    assert (line["method"], line["path"], line["status"]) == (
        "POST",
        "/api/v1/communities/acme/events",
        201,
    )
    assert line["community"] == "acme"
    assert line["route"] == "api/v1/communities/<slug:community>/events"
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO"


def test_the_request_id_travels_into_celery_tasks() -> None:
    headers: dict[str, str] = {}
    token = request_id_var.set("req-77")
    try:
        on_before_task_publish(headers=headers)
    finally:
        request_id_var.reset(token)
    assert headers == {"request_id": "req-77"}

    task = SimpleNamespace(name="points.tasks.x", request=SimpleNamespace(request_id="req-77"))
    on_task_prerun(task_id="t1", task=task)
    record = logging.LogRecord("points.tasks", logging.INFO, __file__, 1, "working", None, None)
    assert json.loads(JsonFormatter().format(record))["request_id"] == "req-77"
    on_task_postrun(task_id="t1", task=task, state="SUCCESS")
    assert request_id_var.get() == ""


def test_metrics_count_ingested_events_and_requests(client_for: APIClient) -> None:
    client_for.post(
        "/api/v1/communities/acme/events",
        {"id": "m1", "type": "check_in", "member": "ann"},
        format="json",
    )
    body = APIClient().get("/metrics").content.decode()
    assert 'incentives_events_ingested_total{status="accepted",type="check_in"}' in body
    assert 'incentives_points_awarded_total{rule="points.check_in"}' in body
    assert "incentives_http_requests_total{" in body
    assert "incentives_http_request_seconds_bucket{" in body
    assert "# TYPE incentives_celery_queue_depth gauge" in body
    assert "incentives_outbox_lag_seconds 0.0" in body


def test_metrics_can_require_a_token(client_for: APIClient, settings: object) -> None:
    settings.METRICS_TOKEN = "s3cret"  # type: ignore[attr-defined]
    assert APIClient().get("/metrics").status_code == 401
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_queue_depth_is_read_from_the_broker(settings: object) -> None:
    import redis

    from config.observability import broker_queue_depth

    url = "redis://127.0.0.1:6379/13"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.delete("heavy")
        client.rpush("heavy", "a", "b", "c")
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    settings.CELERY_BROKER_URL = url  # type: ignore[attr-defined]
    assert broker_queue_depth("heavy") == 3
    assert broker_queue_depth("delivery") == 0
    client.delete("heavy")
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # type: ignore[attr-defined]
    assert broker_queue_depth("heavy") is None
