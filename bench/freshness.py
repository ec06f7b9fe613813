"""How long after a new event its member's points show on the leaderboard, under ``make run``.

Starts the service exactly as ``make run`` does (``python -m config.serve``: gunicorn, a
Celery worker and beat, the default filesystem broker) on a free port, against a fresh
database, with its own data folder. Then, one at a time, posts an event for a new member and
polls the month leaderboard every 50 ms until the member is on it. The raw baseline is the
statement a snapshot rebuild is made of (``rank() OVER`` over the same period totals,
``INSERT … SELECT`` into a temporary table), timed with psycopg in this process: the least any
fresh board can cost.

Knobs: BENCH_FRESH_EVENTS (20), BENCH_FRESH_MEMBERS (2000: members with points beforehand).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg

from bench.database import recreate, server_url
from bench.server import ROOT, _healthy, free_port

TARGET_SECONDS = 5.0


def _note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def _request(method: str, url: str, key: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - our own server on 127.0.0.1
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py, fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def _raw_rebuild_seconds(url: str) -> float:
    """The rank statement a snapshot rebuild runs, alone, over the same month's totals."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        conn.execute(
            """
            CREATE TEMP TABLE raw_board ON COMMIT DROP AS
            SELECT member_id, rank() OVER (ORDER BY points DESC) AS rank,
                   row_number() OVER (ORDER BY points DESC, member_id) AS position, points
            FROM points_periodtotal
            WHERE kind = 'month' AND active AND points > 0
            """
        )
        conn.commit()
        return time.perf_counter() - started


def run(server: str, database: str = "bench_freshness") -> tuple[float, float, int]:
    """Returns (median seconds to the board, raw baseline seconds, samples)."""
    events = int(os.environ.get("BENCH_FRESH_EVENTS", 20))
    members = int(os.environ.get("BENCH_FRESH_MEMBERS", 2000))
    url = recreate(server, database)
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-fresh-"))
    env = dict(os.environ)
    for name in ("CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env.update(
        DATABASE_URL=url,
        PORT=str(port),
        HOST="127.0.0.1",
        INCENTIVES_DATA_DIR=str(data_dir),
        ADMIN_PASSWORD="bench-only",  # noqa: S106 - a throwaway local database
        DJANGO_SETTINGS_MODULE="config.settings.local",
    )
    log = (ROOT / "var" / "bench" / "freshness-serve.log").open("wb")
    serve = subprocess.Popen(  # noqa: S603 - make run's own entry point
        [sys.executable, "-m", "config.serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not _healthy(port):
            if serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("make run did not come up; see var/bench/freshness-serve.log")
            time.sleep(0.5)
        _manage(env, "create_community", "fresh", "--name", "Freshness")
        key = _manage(env, "create_api_key", "fresh", "--scopes", "events:write,members:read")
        key = key.strip().splitlines()[-1].strip()
        base = f"http://127.0.0.1:{port}/api/v1/communities/fresh"
        batch = [{"id": f"pre-{i}", "type": "share", "member": f"pre{i}"} for i in range(members)]
        for start in range(0, len(batch), 1000):
            _request("POST", f"{base}/events/batch", key, {"events": batch[start : start + 1000]})
        time.sleep(3)  # let the refresh the batches queued settle
        samples: list[float] = []
        for i in range(events):
            member = f"new{i}"
            started = time.perf_counter()
            _request(
                "POST",
                f"{base}/events",
                key,
                {"id": f"fresh-{i}", "type": "ugc_post", "member": member},
            )
            while True:
                board = _request("GET", f"{base}/leaderboard?period=month", key)
                if any(row["member"] == member for row in board["results"]):
                    samples.append(time.perf_counter() - started)
                    break
                if time.perf_counter() - started > 60:
                    raise RuntimeError(f"{member} not on the board after 60 s")
                time.sleep(0.05)
            time.sleep(0.5)
        raw = _raw_rebuild_seconds(url)
        _note(
            f"freshness: {events} events, each for a new member with 10 points (top of a board "
            f"of {members}); seconds to the board: min {min(samples):.2f}, median "
            f"{statistics.median(samples):.2f}, max {max(samples):.2f}; target < {TARGET_SECONDS}"
        )
        return statistics.median(samples), raw, len(samples)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        log.close()


def main() -> None:
    from bench.run import figure

    median, raw, samples = run(server_url())
    figure(f"freshness.leaderboard (make run, median of {samples})", median, raw, "s")


if __name__ == "__main__":
    main()
