"""gunicorn settings for every way the service is started (``make run``, the Docker image):
``gunicorn -c python:config.gunicorn_conf config.wsgi:application``.

* Requests gunicorn refuses before Django sees them (a request line over 4 KB, too many or too
  large headers, control characters or a bad method in the request line, a malformed chunked
  body) are answered with an RFC 9457 problem (``application/problem+json``) like every other
  error, not with gunicorn's HTML page.
* No gunicorn access log: ``config.observability.RequestMiddleware`` writes the one access line
  per request (with its request id); gunicorn logs refused requests as warnings.
* Threaded workers (``WEB_WORKER_CLASS``, ``WEB_THREADS``, ``WEB_KEEPALIVE_LINGER``) and a frozen
  start-up heap.
"""

from __future__ import annotations

import gc
import json
import os
import socket
from typing import Any

from gunicorn import util

from config.gunicorn_worker import THREADED_WORKER

# Threaded workers: concurrent single events of one process then share one commit (group
# commit, docs/decisions.md 46); a sync worker serves one request at a time. gunicorn's gthread
# worker, with a thread that stays on a busy keep-alive connection (config/gunicorn_worker.py).
worker_class = os.environ.get("WEB_WORKER_CLASS", THREADED_WORKER)
threads = int(os.environ.get("WEB_THREADS", "4"))


def post_worker_init(worker: Any) -> None:
    """Move everything loaded at start (Django, the URLconf, the apps) out of the garbage
    collector's reach: a full collection then walks only what requests allocate (a batch of
    500 events spent a fifth of its time in collections that re-walked the whole heap)."""
    gc.collect()
    gc.freeze()


# Limits on what reaches Django (gunicorn's defaults, written down so that they are known).
limit_request_line = 4094  # bytes of "METHOD /path?query HTTP/1.1": over it, 414
limit_request_fields = 100  # headers: over it, 431
limit_request_field_size = 8190  # bytes of one header: over it, 431
accesslog = None

# gunicorn's status for a refused request → the problem code documented at /api/errors/.
CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    500: "server_error",
    501: "unsupported_transfer_coding",
}
TITLES = {
    400: "Bad request",
    403: "Forbidden",
    414: "URI too long",
    417: "Expectation failed",
    431: "Request headers too large",
    500: "Internal server error",
    501: "Unsupported transfer coding",
}


def problem_bytes(status_int: int, reason: str, mesg: str) -> bytes:
    """The whole HTTP response for a request gunicorn refused, as problem+json."""
    code = CODES.get(status_int, "bad_request")
    title = TITLES.get(status_int, reason)
    body = json.dumps(
        {
            "type": f"/api/errors/#{code}",
            "title": title,
            "status": status_int,
            "detail": mesg or title,
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    return head + body


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, problem_bytes(status_int, reason, mesg))


# gunicorn's workers answer refused requests through ``util.write_error`` (looked up at call
# time); this file is read by the master before it forks them.
util.write_error = write_problem
