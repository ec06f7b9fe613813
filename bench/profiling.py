"""Where the hot path spends its time: pyinstrument in-process, py-spy on the real workers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import EventSource

# Layers, by the innermost frame of a sample that belongs to one (standard library and
# built-in frames count for their caller). The most specific prefix comes first.
LAYERS: tuple[tuple[str, str], ...] = (
    ("psycopg/", "PostgreSQL round trips (psycopg: send, wait, adapt parameters)"),
    ("django/db/", "Django ORM and DB wrapper (query building, transactions)"),
    ("rest_framework/fields.py", "DRF input validation (serializer fields)"),
    ("rest_framework/serializers.py", "DRF input validation (serializer fields)"),
    ("api/serializers.py", "DRF input validation (serializer fields)"),
    ("rest_framework_api_key/", "API-key authentication (Python)"),
    ("api/auth.py", "API-key authentication (Python)"),
    ("points/", "points services and scoring (Python)"),
    ("rest_framework/", "DRF request/response handling (parse, render, dispatch)"),
    ("api/", "DRF request/response handling (parse, render, dispatch)"),
    ("django/test/", "bench's in-process test client (not in production)"),
    ("django/", "Django request handling (WSGI, middleware, URL resolver)"),
    ("gunicorn/", "gunicorn (HTTP parsing, sockets)"),
    ("bench/", "bench's client code (not in production)"),
)
OTHER = "other (standard library, interpreter)"

# Steps worth seeing on their own (inclusive): our code, plus the framework steps around it.
ANCHORS: tuple[str, ...] = (
    "is_usable",  # Django's per-request connection health check (SELECT 1)
    "ApiKeyAuthentication.authenticate",
    "Serializer.is_valid",
    "events_ingest",
    "_stored_events",
    "_score_and_post",
    "_lock_members",
    "_read_tallies",
    "_insert_events",
    "_write_tallies",
    "_insert_entries",
    "_write_members",
    "_add_period_points",
    "Atomic.__exit__",
    "BaseConnection._start_query",  # psycopg's BEGIN
    "JSONRenderer.render",
    # rank lookups (GET …/members/{m}/rank)
    "MemberRankView.get",
    "member_rank_lookup",
    "rank_snapshot_ensure",
    "rank_body",
    "counter_hit",  # the rate limit's counter (Redis or PostgreSQL)
    "APIView.initial",  # DRF: authentication, permissions, throttles, negotiation
)


def _is_anchor(function: str) -> bool:
    return any(function.endswith(a) for a in ANCHORS)


def layer_of(paths: list[str]) -> str:
    """The layer of a sample whose stack (outermost first) has these file paths."""
    for path in reversed(paths):
        for prefix, layer in LAYERS:
            if path.startswith(prefix) or f"/{prefix}" in path:
                return layer
    return OTHER


def _layer_lines(layers: dict[str, float], total: float) -> list[str]:
    ranked = sorted(layers.items(), key=lambda kv: kv[1], reverse=True)
    return [f"{100 * t / total:6.1f}%  {name}" for name, t in ranked if total]


# --- pyinstrument, in this process, through Django's full request stack ---------------------


def _frame_key(frame: Any) -> str:
    name = f"{frame.class_name}.{frame.function}" if frame.class_name else frame.function
    return f"{name} ({frame.file_path_short}:{frame.line_no})"


def _tables(
    root: Any, top: int
) -> tuple[list[tuple[str, float]], list[tuple[str, float]], dict[str, float]]:
    """(self time, inclusive time) per function, recursion counted once; time per layer."""
    own: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    layers: dict[str, float] = defaultdict(float)

    def walk(frame: Any, active: frozenset[str], paths: list[str]) -> None:
        key = _frame_key(frame)
        paths = [*paths, frame.file_path_short or ""]
        own[key] += frame.total_self_time
        layers[layer_of(paths)] += frame.total_self_time
        if key not in active:
            inclusive[key] += frame.time
        for child in frame.children:
            if not child.is_synthetic:
                walk(child, active | {key}, paths)

    walk(root, frozenset(), [])

    def by(d: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(d.items(), key=lambda kv: kv[1], reverse=True)[:top]

    return by(own), by(inclusive), layers


def _report(title: str, profiler: Any, requests: int, units: int, top: int = 25) -> str:
    session = profiler.last_session
    root = session.root_frame()
    total = root.time if root is not None else 0.0
    lines = [
        f"== {title}",
        f"wall {total:.3f} s for {requests} requests ({units} events): "
        f"{1000 * total / max(requests, 1):.2f} ms per request, "
        f"{1e6 * total / max(units, 1):.0f} us per event (profiler overhead included)",
        "",
    ]
    if root is not None:
        own, inclusive, layers = _tables(root, 10_000)
        anchors = [(k, t) for k, t in inclusive if _is_anchor(k.split(" (", 1)[0])]
        own, inclusive = own[:top], inclusive[:top]
        lines.append("-- by layer (self time of the innermost frame that belongs to one)")
        lines += _layer_lines(layers, total)
        lines.append("")
        lines.append(f"-- top {top} by self time")
        lines += [f"{100 * t / total:6.1f}%  {t:7.3f}s  {k}" for k, t in own]
        lines.append("")
        lines.append(f"-- top {top} by inclusive time")
        lines += [f"{100 * t / total:6.1f}%  {t:7.3f}s  {k}" for k, t in inclusive]
        lines.append("")
        lines.append("-- steps (inclusive)")
        lines += [f"{100 * t / total:6.1f}%  {t:7.3f}s  {k}" for k, t in anchors]
        lines.append("")
    lines.append("-- call tree")
    lines.append(profiler.output_text(unicode=False, color=False))
    return "\n".join(lines)


def top_lines(report: str, section: str, count: int) -> list[str]:
    """The first ``count`` rows of one ``-- …`` section of a report."""
    rows = report.split(f"-- {section}", 1)[-1].splitlines()[1:]
    return [r for r in rows[:count] if r.strip()]


def profile_in_process(
    *, slug: str, api_key: str, out_dir: Path, members: int, singles: int, batches: int, size: int
) -> dict[str, Path]:
    """Profile ``singles`` new single events, as many replays, and ``batches`` batches, each
    through Django's whole stack (middleware, DRF, services) against the bench database."""
    from django.test import Client
    from pyinstrument import Profiler

    client = Client()
    headers = {"Authorization": f"Api-Key {api_key}"}
    single_path = f"/api/v1/communities/{slug}/events"
    batch_path = f"/api/v1/communities/{slug}/events/batch"
    source = EventSource("prof", seed=4242, members=members)

    def post(path: str, body: bytes, expect: int) -> Any:
        response = client.post(path, data=body, content_type="application/json", headers=headers)
        if response.status_code != expect:
            raise RuntimeError(f"profile: HTTP {response.status_code} {response.content[:200]!r}")
        return response

    for _ in range(50):  # warm: connection, rule cache, imports
        post(single_path, json.dumps(source.event()).encode(), 201)

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    sent: list[bytes] = []

    def run(name: str, title: str, count: int, units: int, do: Callable[[], None]) -> None:
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(count):
            do()
        profiler.stop()
        path = out_dir / f"pyinstrument-{name}.txt"
        path.write_text(_report(title, profiler, count, units))
        paths[name] = path

    def new_single() -> None:
        body = json.dumps(source.event()).encode()
        post(single_path, body, 201)
        sent.append(body)

    replayed = iter(list(range(singles)))

    def replay_single() -> None:
        post(single_path, sent[next(replayed)], 200)

    def batch() -> None:
        body = json.dumps({"events": [source.event() for _ in range(size)]}).encode()
        post(batch_path, body, 200)

    run("single", f"POST events, {singles} new single events", singles, singles, new_single)
    run("replay", f"POST events, {singles} replayed single events", singles, singles, replay_single)
    run("batch", f"POST events/batch, {batches} batches of {size}", batches, batches * size, batch)
    return paths


# --- py-spy, sampling the real gunicorn workers under load ---------------------------------


def py_spy_path() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def py_spy_start(pid: int, seconds: float, raw_path: Path) -> subprocess.Popen[bytes] | None:
    """Sample gunicorn and its workers (CPU only, idle excluded) into collapsed stacks."""
    exe = py_spy_path()
    if exe is None:
        return None
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--function",
        "--nonblocking",
        "--rate",
        "200",
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(raw_path),
    ]
    log = raw_path.with_suffix(".log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def py_spy_wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        return False
    return proc.returncode == 0


_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_PROCESS = re.compile(r"^process \d+:")
_PATH = re.compile(r"\((?P<path>[^()]*?):\d+\)$")


def _path(frame: str) -> str:
    match = _PATH.search(frame)
    return match["path"] if match else ""


def py_spy_summary(raw_path: Path, out_path: Path, load: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = defaultdict(int)
    inclusive: dict[str, int] = defaultdict(int)
    layers: dict[str, float] = defaultdict(float)
    total = 0
    for line in raw_path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        count = int(match["count"])
        frames = [
            f
            for f in match["stack"].split(";")
            if not _PROCESS.match(f) and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        layers[layer_of([_path(f) for f in frames])] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [
        f"== py-spy: gunicorn workers under {load}, {total} samples "
        "(py-spy's idle filter on; waits inside psycopg still count)",
        "",
        "-- by layer (innermost frame that belongs to one)",
        *_layer_lines(layers, total),
        "",
        f"-- top {top} by self time",
    ]
    for name, count in sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:top]:
        lines.append(f"{100 * count / max(total, 1):6.1f}%  {name}")
    ranked = sorted(inclusive.items(), key=lambda kv: kv[1], reverse=True)
    lines += ["", f"-- top {top} by inclusive time"]
    for name, count in ranked[:top]:
        lines.append(f"{100 * count / max(total, 1):6.1f}%  {name}")
    lines += ["", "-- steps (inclusive)"]
    for name, count in ranked:
        if _is_anchor(name.split(" (", 1)[0]):
            lines.append(f"{100 * count / max(total, 1):6.1f}%  {name}")
    text = "\n".join(lines) + "\n"
    out_path.write_text(text)
    return text
