"""``make loadtest`` in small: the fleet (two gunicorn servers, a Celery worker and beat on Redis)
under the mixed load for 15 seconds, then the ledger invariants; it must exit 0.

Runs ``python -m bench.loadtest`` as a subprocess against its own database (created and dropped
on the PostgreSQL server the suite uses); skipped, with a message, when Redis does not answer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROKER_DB = 10


def _redis_answers() -> bool:
    try:
        import redis

        url = f"redis://127.0.0.1:6379/{BROKER_DB}"
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "no"
        return False


@pytest.mark.celery_worker
def test_a_short_load_test_keeps_every_invariant(tmp_path: Path) -> None:
    if not _redis_answers():
        pytest.skip("the load test needs Redis at 127.0.0.1:6379 (its Celery broker)")
    report = tmp_path / "loadtest.txt"
    env = {
        **os.environ,
        "DB_PREFER_LOCAL": "1",
        "LOADTEST_SECONDS": "15",
        "LOADTEST_COMMUNITIES": "2",
        "LOADTEST_MEMBERS": "200",
        "LOADTEST_CLIENTS": "4",
        "LOADTEST_DRIVERS": "1",
        "LOADTEST_WORKERS": "1",
        "LOADTEST_THREADS": "4",
        "LOADTEST_STOCK": "5",
        "LOADTEST_RAW_SECONDS": "0",
        "LOADTEST_DRAIN_SECONDS": "30",
        "LOADTEST_DB": f"loadtest_smoke_{os.getpid()}",
        "LOADTEST_BROKER_DB": str(BROKER_DB),
        "LOADTEST_OUT": str(report),
        "LOADTEST_WORK": str(tmp_path / "work"),
    }
    env.pop("BENCH_KEEP_DB", None)
    done = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "bench.loadtest"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    assert re.search(r"^loadtest\.invariants: \d+ checks, 0 violated$", done.stdout, re.M), output
    assert "VIOLATED" not in done.stdout
    for endpoint in ("POST …/events:", "POST …/events/batch:", "GET …/members/{m}/rank:"):
        assert f"loadtest {endpoint}" in done.stdout, output
    assert re.search(r"^loadtest\.mixed .*: ours \d", done.stdout, re.M), output
    assert report.read_text().count("invariant ") >= 10
    # its setup queued on the run's broker, not into a filesystem queue nobody reads
    assert not (ROOT / "var" / "celery-queue" / env["LOADTEST_DB"]).exists()
