"""The WSGI application: the lean path for rank lookups and single events first
(``api.fastpath``), then Django, with chunked request bodies read before Django sees them.

Django reads ``CONTENT_LENGTH`` bytes of a body and treats a body without one as empty, so a
``Transfer-Encoding: chunked`` upload (which gunicorn de-chunks) would reach the views as an
empty body. Such a body is read here, up to ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (over it: 413
problem+json), and handed on with its length.
"""

import io
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_application = get_wsgi_application()

from api import fastpath  # noqa: E402 - after Django is set up
from config.observability import access_log  # noqa: E402 - after Django is set up

StartResponse = Callable[..., Any]


def _too_large(start_response: StartResponse, limit: int) -> list[bytes]:
    body = json.dumps(
        {
            "type": "/api/errors/#payload_too_large",
            "title": "Request body too large",
            "status": 413,
            "detail": f"Request body exceeds {limit} bytes.",
            "code": "payload_too_large",
        }
    ).encode()
    start_response(
        "413 Content Too Large",
        [
            ("Content-Type", "application/problem+json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    return [body]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    served = fastpath.serve(environ, start_response)
    if served is not None:
        return served
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and not environ.get("CONTENT_LENGTH"):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # None: no limit
        body = (
            environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
        )
        if limit is not None and len(body) > limit:
            method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
            access_log.info(
                "%s %s 413",
                method,
                path,
                extra={"method": method, "path": path, "route": "unmatched", "status": 413},
            )
            return _too_large(start_response, limit)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    return django_application(environ, start_response)
