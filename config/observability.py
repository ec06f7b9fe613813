"""Structured logs, request ids and Prometheus metrics, for the web processes and Celery.

* Every request gets an id (``X-Request-ID`` if the caller sent a sane one, else a new one),
  echoed in the response and put on every log record made while serving it; a task queued
  while serving it carries it in its headers, and the worker logs with it.
* One JSON line per request: method, path, route, status, duration_ms, community, request_id.
* Metrics at ``/metrics`` (Prometheus text format): HTTP requests and latency by route, events
  ingested by type and status, points awarded by rule, Celery task durations and failures.
  With several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory so the
  figures of all workers are summed (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import collections
import contextvars
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
access_log = logging.getLogger("incentives.access")

HTTP_REQUESTS = Counter(
    "incentives_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "incentives_http_request_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS = Counter("incentives_events_ingested_total", "Events ingested", ["type", "status"])
AWARDED = Counter("incentives_points_awarded_total", "Points awarded", ["rule"])
TASK_SECONDS = Histogram("incentives_task_seconds", "Celery task duration", ["task", "state"])


def record_ingest(outcomes: Iterable[Any], types: dict[str, str]) -> None:
    """Count ingestion outcomes (``IngestOutcome``); ``types`` maps an event id to its type.
    Summed first, so that a batch looks each label up once, not once per event."""
    events: collections.Counter[tuple[str, str]] = collections.Counter()
    awarded: collections.Counter[str] = collections.Counter()
    for outcome in outcomes:
        events[(types.get(outcome.client_id, "unknown"), outcome.status)] += 1
        if outcome.status == "accepted" and outcome.result:
            for award in outcome.result.get("awards", []):
                if award.get("points"):
                    awarded[award["rule"]] += award["points"]
    for (kind, status), count in events.items():
        EVENTS.labels(kind, status).inc(count)
    for rule, points in awarded.items():
        AWARDED.labels(rule).inc(points)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any extras."""

    FIELDS = ("method", "path", "route", "status", "duration_ms", "community", "task", "task_id")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or request_id_var.get(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


JsonFormatter.converter = time.gmtime


class RequestMiddleware:
    """Request id in, request id out, one access log line, HTTP metrics."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = request_id_for(request.headers.get("X-Request-ID", ""))
        token = request_id_var.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        elapsed = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        response["X-Request-ID"] = rid
        request_observed(
            method=request.method or "",
            path=request.path,
            route=match.route if match is not None and match.route else "unmatched",
            status=response.status_code,
            seconds=elapsed,
            request_id=rid,
            community=match.kwargs.get("community", "") if match is not None else "",
        )
        return response


def request_id_for(incoming: str) -> str:
    """The request's id: the caller's ``X-Request-ID`` when it is sane, else a new one."""
    return incoming if SANE_ID.match(incoming) else uuid.uuid4().hex


def request_observed(
    *,
    method: str,
    path: str,
    route: str,
    status: int,
    seconds: float,
    request_id: str,
    community: str,
) -> None:
    """A served request's metrics and its one access log line (``RequestMiddleware`` and the
    lean path, ``api.fastpath``)."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)
    access_log.info(
        "%s %s %s",
        method,
        path,
        status,
        extra={
            "request_id": request_id,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "community": community,
        },
    )


def broker_queue_depth(queue: str) -> int | None:
    """Messages waiting in one Celery queue, read from the broker at scrape time (None when
    the broker does not answer within a second)."""
    from django.conf import settings

    url = getattr(settings, "CELERY_BROKER_URL", "")
    try:
        if url.startswith("redis"):
            import redis

            return int(redis.Redis.from_url(url, socket_timeout=1).llen(queue))
        if url.startswith(("amqp", "pyamqp")):
            from kombu import Connection

            with Connection(url, connect_timeout=1) as conn:
                channel: Any = conn.default_channel
                return int(channel.queue_declare(queue, passive=True).message_count)
        if url.startswith("filesystem"):
            from pathlib import Path

            folder = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("data_folder_in")
            return sum(1 for p in Path(folder).glob(f"*.{queue}.msg")) if folder else None
    except Exception:  # noqa: BLE001 - a scrape must not fail because the broker does
        return None
    return None


def outbox_lag_seconds() -> float | None:
    """Age of the oldest webhook delivery still waiting (0 when none waits)."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXTRACT(EPOCH FROM now() - min(m.created_at)) "
                "FROM webhooks_delivery d JOIN webhooks_outboxmessage m ON m.id = d.message_id "
                "WHERE d.status = 'pending'"
            )
            value = cursor.fetchone()[0]
    except Exception:  # noqa: BLE001 - a scrape must not fail because the database does
        return None
    return float(value) if value is not None else 0.0


def _queue_depth_text() -> bytes:
    from prometheus_client.core import GaugeMetricFamily

    from config.settings.tasks import TASK_QUEUE_NAMES

    depths = {queue: broker_queue_depth(queue) for queue in TASK_QUEUE_NAMES}
    lag = outbox_lag_seconds()

    class _Collector:
        def collect(self) -> Iterable[Any]:
            family = GaugeMetricFamily(
                "incentives_celery_queue_depth",
                "Messages waiting in each Celery queue (delivery, periodic, heavy)",
                labels=["queue"],
            )
            for queue, depth in depths.items():
                if depth is not None:
                    family.add_metric([queue], depth)
            yield family
            outbox = GaugeMetricFamily(
                "incentives_outbox_lag_seconds",
                "Age of the oldest webhook delivery still waiting",
            )
            if lag is not None:
                outbox.add_metric([], lag)
            yield outbox

    registry = CollectorRegistry()
    registry.register(_Collector())  # type: ignore[arg-type]
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With ``METRICS_TOKEN`` set, a ``Bearer`` token is required."""
    from django.conf import settings

    expected = getattr(settings, "METRICS_TOKEN", "")
    if expected and request.headers.get("Authorization", "") != f"Bearer {expected}":
        return HttpResponse(status=401)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return HttpResponse(body + _queue_depth_text(), content_type=CONTENT_TYPE_LATEST)


# --- Celery: the request id travels in task headers; task durations ------------------------

_task_started: dict[str, float] = {}


def on_before_task_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    rid = request_id_var.get()
    if headers is not None and rid:
        headers["request_id"] = rid


def on_task_prerun(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    rid = ""
    request = getattr(task, "request", None)
    if request is not None:
        rid = getattr(request, "request_id", "") or (
            (getattr(request, "headers", None) or {}).get("request_id", "")
        )
    request_id_var.set(rid or f"task-{task_id}")
    _task_started[task_id] = time.perf_counter()


def on_task_postrun(task_id: str = "", task: Any = None, state: str = "", **kwargs: Any) -> None:
    started = _task_started.pop(task_id, None)
    if started is not None and task is not None:
        TASK_SECONDS.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)
    request_id_var.set("")


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(on_before_task_publish, weak=False)
    task_prerun.connect(on_task_prerun, weak=False)
    task_postrun.connect(on_task_postrun, weak=False)
