"""``bench/cpu.py``: who spent a benchmark phase's CPU. Real processes burn real CPU here (a
child process, a PostgreSQL backend); the splits must find it where it was spent."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pytest

from bench.cpu import Meter, Split, _processes, postmaster_pid, tree_seconds
from tests.celery_worker import _test_database_url

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Burns about 0.3 s of CPU in a grandchild, then both end: what the tree must still count.
BURN = (
    "import subprocess, sys; subprocess.run([sys.executable, '-c', "
    "'import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass'])"
)


def _sleeper() -> subprocess.Popen[bytes]:
    """A process that stays while its children come and go, as gunicorn's master does."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter, fixed code
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "time.sleep(0.2)\n"
            f"subprocess.run([sys.executable, '-c', {BURN!r}])\n"
            "time.sleep(30)\n",
        ]
    )


def test_a_tree_counts_descendants_that_ended_meanwhile():
    parent = _sleeper()
    try:
        before = tree_seconds(parent.pid)
        time.sleep(2.5)  # the child and grandchild start, burn and end within this
        after = tree_seconds(parent.pid)
    finally:
        parent.kill()
        parent.wait()

    assert after - before >= 0.25


@pytest.mark.django_db
def test_the_database_tree_is_the_parent_of_every_backend_not_the_backend_that_asked():
    url = _test_database_url()

    found = postmaster_pid(url)

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        backend = int(row[0])
        assert found is not None
        assert found != backend
        assert _processes()[backend][0] == found


def test_a_process_that_is_gone_counts_nothing():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    gone.wait()

    assert tree_seconds(gone.pid) == 0.0


@pytest.mark.django_db
def test_a_meter_finds_the_server_the_database_and_the_bench_itself():
    url = _test_database_url()
    server = _sleeper()
    meter = Meter(server_pid=server.pid, database_pid=postmaster_pid(url))
    try:
        start = meter.read()
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:  # the bench's own client work
            pass
        with psycopg.connect(url, autocommit=True) as conn:  # work a backend does
            conn.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
        time.sleep(2.5 - 0.2)
        split = meter.read() - start
    finally:
        server.kill()
        server.wait()

    assert meter.database_pid is not None
    assert split.client >= 0.15
    assert split.server >= 0.25
    assert split.database >= 0.1
    assert split.machine >= split.client  # the whole machine spent at least our own part


def test_a_split_reads_per_unit_and_adds_up():
    split = Split(client=0.2, server=0.6, database=0.4, machine=1.3) + Split(
        client=0.0, server=0.2, database=0.0, machine=0.2
    )

    assert split == Split(client=0.2, server=0.8, database=0.4, machine=1.5)
    assert split.rest == pytest.approx(0.1)
    assert split.per(1000, "event") == (
        "CPU per event: all 1,500 µs = bench clients 200 µs + server 800 µs + "
        "PostgreSQL 400 µs + rest 100 µs"
    )


def test_the_single_event_budget_is_what_the_machine_gave_over_the_target_rate():
    from bench.load import PhaseResult
    from bench.run import _budget

    ours = PhaseResult(
        name="ours single events",
        units=1000,
        requests=1000,
        errors=0,
        seconds=2.0,
        latencies=[0.01] * 1000,
        cpu=Split(client=0.3, server=1.5, database=1.8, machine=3.6),
    )

    line = _budget(ours, target_rate=1200.0)

    # 3.6 CPU seconds in 2 s = 1.8 per second; at 1,200 events/s that is 1,500 µs each
    assert "= 1200 events/s" in line
    assert "1,500 µs per event in all; spent 3,600 µs, of which PostgreSQL 1,800" in line


@pytest.mark.django_db
def test_no_meter_when_the_database_processes_are_not_visible_here(tmp_path, monkeypatch):
    """A PostgreSQL on another machine (or container) would show its share as zero: the
    bench prints no splits instead. An empty process table stands for that machine."""
    monkeypatch.setattr("bench.cpu._PROC", tmp_path)

    assert Meter.for_bench(server_pid=None, database_url=_test_database_url()) is None
