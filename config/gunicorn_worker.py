"""gunicorn's threaded worker, with a thread that stays on a busy keep-alive connection.

gunicorn's ``gthread`` worker hands every kept-alive connection back to its main thread after
each response: the main thread registers the socket with its poller, wakes when the next
request arrives, unregisters it and submits it to the thread pool again. A bot that sends its
requests back to back pays two thread hand-offs, a pipe write and read, and a register and
unregister on every request, and on two cores the wake-ups are what makes the slow tail.

``LingeringThreadWorker`` lets the thread that answered wait up to ``WEB_KEEPALIVE_LINGER``
seconds (2 ms by default, at most gunicorn's keep-alive timeout; ``0`` turns it off) for that
connection's next request and serve it itself, but only while the process holds fewer
connections than it has threads: each connection can then have a thread of its own, so no
request waits behind a lingering thread; under a heavier load (more connections than threads,
where group commit gathers concurrent events) the worker is gunicorn's gthread unchanged.
Everything else is gunicorn's: parsing, limits, the refused-request answers
(``config/gunicorn_conf.py``), keep-alive timeouts, HTTP/2, graceful stops. Measured in
docs/performance.md (issue 12, 2026-12-05); decision 59.
"""

from __future__ import annotations

import os
import select
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# How gunicorn names this class (``--worker-class``); the default in config/gunicorn_conf.py.
THREADED_WORKER = "config.gunicorn_worker.LingeringThreadWorker"


def _linger_seconds() -> float:
    return max(float(os.environ.get("WEB_KEEPALIVE_LINGER", "0.002") or 0), 0.0)


class LingeringThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.linger = _linger_seconds()

    def handle(self, conn: Any) -> Any:
        """gunicorn's ``handle`` (one request), then more requests of the same connection for
        as long as each arrives within ``linger`` and lingering is allowed. (An HTTP/2
        connection is served whole by one call, which then returns ``False``.)"""
        keep_alive = super().handle(conn)
        while keep_alive is True and self._may_linger(conn) and self._next_arrives(conn):
            keep_alive = super().handle(conn)
        return keep_alive

    def _may_linger(self, conn: Any) -> bool:
        return (
            self.linger > 0
            and self.alive
            and not self.cfg.is_ssl  # decrypted bytes may wait in the TLS buffer, not the socket
            # bytes already read ahead: gunicorn's finish_request submits the connection again
            and not conn.parser.unreader.buf.getvalue()
            # a thread for every connection (the main thread counts them, closes included)
            and self.nr_conns < self.cfg.threads
        )

    def _next_arrives(self, conn: Any) -> bool:
        """Whether the connection has bytes (or its end) within the linger; never longer than
        gunicorn's keep-alive timeout, which would have closed it."""
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(min(self.linger, self.cfg.keepalive) * 1000))
