"""The one cursor codec, and the ledger's cursor pagination on it.

A cursor is opaque to clients: URL-safe base64 (padding optional; the standard alphabet is
read too, as DRF wrote it) of ``key=value`` pairs joined by ``&``, each value a non-negative
integer below 10^18 (it fits a ``bigint``). Anything else (not base64, not ASCII, unknown or
repeated keys, a value that is not such an integer or over its bound) is refused with a 400
problem naming ``cursor``, never passed on to a query.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ErrorDetail, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.utils.urls import replace_query_param

CURSOR_MAX_LENGTH = 200
_VALUE = re.compile(r"[0-9]{1,18}")


def invalid_cursor(field: str = "cursor") -> ValidationError:
    return ValidationError(
        {
            field: [
                ErrorDetail(
                    "is not a valid cursor: pass on the `next` or `previous` link as given",
                    code="invalid_cursor",
                )
            ]
        }
    )


def cursor_encode(values: Mapping[str, int]) -> str:
    text = "&".join(f"{key}={int(value)}" for key, value in values.items())
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def cursor_decode(
    cursor: str, bounds: Mapping[str, int], *, field: str = "cursor"
) -> dict[str, int]:
    """The values of ``cursor``, each key one of ``bounds`` and at most its bound; raises a
    ``ValidationError`` naming ``field`` for anything else."""
    if not cursor or len(cursor) > CURSOR_MAX_LENGTH or not cursor.isascii():
        raise invalid_cursor(field)
    padded = cursor.replace("+", "-").replace("/", "_") + "=" * (-len(cursor) % 4)
    try:
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, ValueError) as exc:
        raise invalid_cursor(field) from exc
    values: dict[str, int] = {}
    for pair in text.split("&") if text else []:
        key, sep, value = pair.partition("=")
        if not sep or key not in bounds or key in values or not _VALUE.fullmatch(value):
            raise invalid_cursor(field)
        number = int(value)
        if number > bounds[key]:
            raise invalid_cursor(field)
        values[key] = number
    return values


class LedgerCursorPagination(CursorPagination):
    """Newest first; ids only grow, so the cursor is stable while entries are appended."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def decode_cursor(self, request: Request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        bounds = {"o": self.offset_cutoff, "r": 1, "p": 10**18 - 1}
        values = cursor_decode(encoded, bounds, field=self.cursor_query_param)
        position = values.get("p")
        return Cursor(
            offset=values.get("o", 0),
            reverse=bool(values.get("r", 0)),
            # DRF compares positions as text (as it reads them from instances)
            position=None if position is None else str(position),  # type: ignore[arg-type]
        )

    def encode_cursor(self, cursor: Cursor) -> str:
        values: dict[str, Any] = {}
        if cursor.offset:
            values["o"] = cursor.offset
        if cursor.reverse:
            values["r"] = 1
        if cursor.position is not None:
            values["p"] = cursor.position
        url = self.base_url or ""
        return replace_query_param(url, self.cursor_query_param, cursor_encode(values))
