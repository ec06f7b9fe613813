"""The lingering threaded worker (``config/gunicorn_worker.py``): a thread that waits for its
connection's next request and serves it itself, only while its process holds fewer
connections than threads.

First gunicorn's own ``handle`` in this process, on a real loopback connection with a small
WSGI application (what each call serves, and when it stops lingering); then the real server
(``bench/server.py``, as ``make run`` starts it) with a linger far longer than any request, so
that a request held behind a lingering thread would show as a wait of seconds.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn

from bench.server import Server, gunicorn
from config.gunicorn_worker import THREADED_WORKER, LingeringThreadWorker
from tests.celery_worker import _test_database_url
from tests.served import server_env

REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


class Worker:
    """A ``LingeringThreadWorker`` built as gunicorn builds it (no process of its own), its
    application counting the requests it answered; ``serve`` runs one ``handle`` call."""

    def __init__(self, *, threads: int = 2, linger: float = 5.0, connections: int = 1) -> None:
        cfg = Config()
        cfg.set("threads", threads)
        cfg.set("keepalive", 10)
        self.worker = LingeringThreadWorker(1, os.getpid(), [], None, 30, cfg, Logger(cfg))
        self.worker.linger = linger
        self.worker.wsgi = self.app
        self.worker.nr_conns = connections  # what its main thread counts when it accepts
        self.answered = 0
        listener = socket.create_server(("127.0.0.1", 0))
        self.client = socket.create_connection(listener.getsockname(), timeout=10)
        served, address = listener.accept()
        listener.close()
        self.conn = TConn(cfg, served, address, ("127.0.0.1", 8000))
        self.result: Any = None
        self.thread = threading.Thread(target=self._handle)

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.answered += 1
        body = b"answer %d" % self.answered
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    def _handle(self) -> None:
        self.result = self.worker.handle(self.conn)

    def answer(self) -> bytes:
        """One whole response from the client side."""
        data = b""
        while not data.endswith(b"answer %d" % self.answered) or b"\r\n\r\n" not in data:
            chunk = self.client.recv(65536)
            assert chunk, "the server closed the connection"
            data += chunk
        return data

    def close(self) -> None:
        self.client.close()
        self.conn.sock.close()


@pytest.fixture
def worker() -> Iterator[Worker]:
    made = Worker()
    yield made
    made.close()


def test_requests_sent_back_to_back_are_served_by_the_thread_that_answered_the_first(worker):
    worker.client.sendall(REQUEST)
    worker.thread.start()

    for n in (1, 2, 3):
        assert worker.answer().endswith(b"answer %d" % n)
        if n < 3:
            worker.client.sendall(REQUEST)
    assert worker.thread.is_alive()  # still waiting for this connection's next request
    worker.client.close()  # the bot goes away: the lingering thread sees the end at once
    worker.thread.join(timeout=2)

    assert not worker.thread.is_alive()
    assert worker.answered == 3
    assert worker.result is False  # gunicorn then closes the connection


def test_without_a_next_request_the_thread_gives_the_connection_back_after_the_linger():
    worker = Worker(linger=0.05)
    worker.client.sendall(REQUEST)
    started = time.monotonic()

    worker.thread.start()
    worker.thread.join(timeout=5)

    assert worker.answered == 1
    assert worker.result is True  # kept alive: gunicorn's main thread polls it from here
    assert time.monotonic() - started >= 0.05
    worker.close()


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param({"threads": 1}, id="one-thread"),
        pytest.param({"connections": 2}, id="as-many-connections-as-threads"),
        pytest.param({"linger": 0.0}, id="linger-off"),
        pytest.param({"stopping": True}, id="worker-stopping"),
        pytest.param({"pipelined": True}, id="next-request-already-read"),
    ],
)
def test_the_thread_does_not_linger(setup):
    worker = Worker(
        threads=setup.get("threads", 2),
        linger=setup.get("linger", 5.0),
        connections=setup.get("connections", 1),
    )
    worker.client.sendall(REQUEST * (2 if setup.get("pipelined") else 1))
    if setup.get("stopping"):
        worker.worker.alive = False

    worker.thread.start()
    worker.thread.join(timeout=2)

    assert not worker.thread.is_alive(), "the thread lingered"
    assert worker.answered == 1
    # Kept alive (the main thread polls it, or submits the read-ahead request again), except
    # that a stopping worker closes the connection after its answer, as gthread does.
    assert worker.result is (not setup.get("stopping"))
    worker.close()


# --- the real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One worker with four threads and a five-second linger (keep-alive ten seconds)."""
    tmp = tmp_path_factory.mktemp("lingering-worker")
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    env = server_env(
        database_url,
        tmp / "data",
        WEB_KEEPALIVE_LINGER="5",
        GUNICORN_CMD_ARGS="--keep-alive 10",
    )
    with gunicorn(
        env=env, workers=1, worker_class=THREADED_WORKER, threads=4, log_path=tmp / "g.log"
    ) as started:
        yield started


def _timed_get(conn: http.client.HTTPConnection) -> float:
    started = time.monotonic()
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return time.monotonic() - started


def test_the_server_runs_the_lingering_worker(server):
    assert "LingeringThreadWorker, 1 workers x 4 threads" in server.description


def test_no_request_waits_behind_a_lingering_thread(server):
    """Six bots, four threads. Bots A, B and C each leave a thread lingering on their
    connection (three connections, four threads); once D, E and F connect, the process holds
    more connections than threads and no other thread may linger, so the fourth thread serves
    D, E and F in turn while A, B and C are still served by their own. Had the fourth thread
    lingered on D, E's request would have waited for the five-second linger."""
    bots = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(6)]
    try:
        waits = [_timed_get(bots[i]) for i in (0, 1, 2)]
        waits += [_timed_get(bots[i]) for i in (3, 4, 5, 0, 4, 3, 1, 5, 2, 3, 4, 5)]
        opened = [bot.sock for bot in bots]
        waits += [_timed_get(bots[i]) for i in (5, 4, 3, 2, 1, 0)]
        kept = [bot.sock for bot in bots]
    finally:
        for bot in bots:
            bot.close()

    assert max(waits) < 2.0, waits
    assert all(a is b for a, b in zip(opened, kept, strict=True))  # each bot kept its connection


def test_pipelined_requests_are_both_answered(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            data += sock.recv(65536)

    assert data.count(b"HTTP/1.1 200") == 2


def test_a_bot_that_leaves_while_its_thread_lingers_frees_the_thread(server):
    for _ in range(3):
        bot = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        _timed_get(bot)
        bot.close()
    others = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(2)]
    try:
        waits = [_timed_get(other) for other in others for _ in range(3)]
    finally:
        for other in others:
            other.close()

    assert max(waits) < 2.0, waits
