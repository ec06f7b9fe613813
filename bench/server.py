"""The real server: gunicorn on a free loopback port, always stopped at the end."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from config.gunicorn_worker import THREADED_WORKER

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    description: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def threaded(worker_class: str) -> bool:
    """gunicorn's gthread or ours built on it (``config/gunicorn_worker.py``)."""
    return worker_class in ("gthread", THREADED_WORKER)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def gunicorn(
    *, env: dict[str, str], workers: int, worker_class: str, threads: int, log_path: Path
) -> Iterator[Server]:
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        "config.wsgi:application",
        "--config",  # as make run and the image start it; the flags below override it
        "python:config.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--log-level",
        "warning",
        "--graceful-timeout",
        "5",
    ]
    if threaded(worker_class):
        command += ["--threads", str(threads)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while not _healthy(port):
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer /healthz; see {log_path}")
            time.sleep(0.2)
        what = f"gunicorn {worker_class}, {workers} workers"
        if threaded(worker_class):
            what += f" x {threads} threads"
        yield Server(port=port, pid=proc.pid, description=what)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the master (it stops its workers); KILL our own process group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    try:  # workers that outlived their master are still in the group we created
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
