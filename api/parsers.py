"""The one place request bodies are parsed: strict JSON, with hard limits.

DRF reads the stream itself, so Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is enforced here, and
Python's ``json`` accepts what PostgreSQL cannot store (``NaN``, ``Infinity``, ``1e999``, lone
UTF-16 surrogates, U+0000) and recurses without bound. What this parser guarantees:

- A body that is not UTF-8 JSON, or is nested too deeply to parse, is refused whole
  (400 ``malformed_json``); one with an integer past Python's digit limit likewise (400
  ``number_too_large``, named by ``api.errors``); one larger than the size limit (413).
- Every value that cannot be stored or computed with (a non-finite number, a string with a
  lone surrogate or U+0000, anything nested deeper than ``MAX_DEPTH``) is refused with its
  path: 400 ``validation_error`` naming each such field.
- A view whose items are judged one by one names its list (``json_item_list = "events"``):
  an item holding such a value (or an integer too long to parse) is replaced by a
  ``RefusedItem`` carrying the item's own errors, so that the view answers that item alone
  and the body's other items go on.

Well-formed bodies (the hot path) pay two ``str.count`` calls, one regex search and, only for
bodies with more than ``MAX_DEPTH`` containers, one walk over the containers.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions, parsers
from rest_framework.exceptions import ErrorDetail

# Containers nested in one body (or in one item of a list judged item by item): `{}` is 1.
MAX_DEPTH = 32
# A JSON escape that may produce a surrogate or U+0000 (raw ones are not valid JSON/UTF-8).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "Request body too large."
    default_code = "payload_too_large"


@dataclass(frozen=True)
class _Refused:
    """Stands in, while parsing, for a number the body cannot hold."""

    code: str
    message: str


_NON_FINITE = _Refused(
    "non_finite_number", "must be a finite number (NaN, Infinity and 1e999 are refused)"
)
_INT_TOO_LONG = _Refused(
    "number_too_large", f"is a number of more than {sys.get_int_max_str_digits():,} digits"
)


@dataclass(frozen=True)
class RefusedItem:
    """An item of a list judged item by item that holds a value the body cannot hold.

    ``client_id`` is the item's ``id`` when it is a usable string, else None; ``errors`` are
    ``{field, code, message}`` with paths relative to the item."""

    client_id: str | None
    errors: list[dict[str, str]]

    def detail(self) -> dict[str, list[ErrorDetail]]:
        """The errors as DRF's error detail (for ``api.errors.flatten_errors``)."""
        return _detail(self.errors)


class _Flags:
    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused = False


def loads_strict(text: str, *, mark_long_integers: bool = False) -> tuple[Any, bool]:
    """``json.loads`` with non-finite numbers (and, if asked, integers past Python's digit
    limit) replaced by markers; also says whether any was found. Raises ``ValueError``
    (malformed, or an integer too long unless marked) or ``RecursionError``."""
    flags = _Flags()

    def constant(_name: str) -> _Refused:
        flags.refused = True
        return _NON_FINITE

    def floating(literal: str) -> float | _Refused:
        value = float(literal)
        if math.isfinite(value):
            return value
        flags.refused = True
        return _NON_FINITE

    def integer(literal: str) -> int | _Refused:
        if len(literal) > sys.get_int_max_str_digits():
            flags.refused = True
            return _INT_TOO_LONG
        return int(literal)

    value = json.loads(
        text,
        parse_constant=constant,
        parse_float=floating,
        parse_int=integer if mark_long_integers else None,
    )
    return value, flags.refused


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (``value`` itself is level 1), level by
    level: no recursion to exhaust, no allocation per node."""
    level = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1
    return False


def _printable(text: str) -> str:
    """A key as it can be shown in an error (escapes what cannot be rendered or seen)."""
    return "".join(
        c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else ascii(c)[1:-1] for c in text
    )


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    key = _printable(key)
    return f"{path}.{key}" if path else key


def _string_error(text: str) -> tuple[str, str] | None:
    if "\x00" in text:
        return "null_characters_not_allowed", "must not contain the NUL character (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid_unicode", "must be valid Unicode (a lone UTF-16 surrogate was sent)"
    return None


def _problems(value: Any, path: str, out: list[dict[str, str]], *, strings: bool) -> None:
    """Append ``{field, code, message}`` for every refused value under ``value`` (depth is
    bounded by ``MAX_DEPTH`` before this is called, so recursion is safe)."""
    if isinstance(value, _Refused):
        out.append({"field": path or "body", "code": value.code, "message": value.message})
    elif isinstance(value, str):
        if strings and (error := _string_error(value)):
            out.append({"field": path or "body", "code": error[0], "message": error[1]})
    elif isinstance(value, dict):
        for key, child in value.items():
            sub = _join(path, key)
            if strings and (error := _string_error(key)):
                out.append({"field": sub, "code": error[0], "message": "key " + error[1]})
            _problems(child, sub, out, strings=strings)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _problems(child, _join(path, index), out, strings=strings)


def _depth_problem(path: str) -> dict[str, str]:
    return {
        "field": path or "body",
        "code": "nested_too_deep",
        "message": f"nests objects and arrays more than {MAX_DEPTH} levels deep",
    }


def _item_id(item: Any) -> str | None:
    client_id = item.get("id") if isinstance(item, dict) else None
    if isinstance(client_id, str) and _string_error(client_id) is None:
        return client_id
    return None


def _detail(errors: list[dict[str, str]]) -> dict[str, list[ErrorDetail]]:
    detail: dict[str, list[ErrorDetail]] = {}
    for error in errors:
        detail.setdefault(error["field"], []).append(
            ErrorDetail(error["message"], code=error["code"])
        )
    return detail


def _refused(errors: list[dict[str, str]]) -> exceptions.ValidationError:
    return exceptions.ValidationError(_detail(errors))


def check_parsed(data: Any, item_list: str | None, *, refused: bool, strings: bool) -> Any:
    """Refuse (or, inside ``item_list``, mark) every value the body cannot hold; see the
    module docstring. ``refused``/``strings``: whether markers/suspect escapes were seen."""
    items = data.get(item_list) if item_list and isinstance(data, dict) else None
    if isinstance(items, list):
        envelope = {k: v for k, v in data.items() if k != item_list}
        errors: list[dict[str, str]] = []
        if _too_deep(envelope, MAX_DEPTH):
            errors.append(_depth_problem(""))
        else:
            _problems(envelope, "", errors, strings=strings)
        if errors:
            raise _refused(errors)
        if not (refused or strings) and not _too_deep(items, MAX_DEPTH + 1):
            return data  # the list is one level above its items
        checked = list(items)
        for index, item in enumerate(items):
            if not isinstance(item, dict | list):
                if isinstance(item, _Refused | str) and (refused or strings):
                    item_errors: list[dict[str, str]] = []
                    _problems(item, "", item_errors, strings=strings)
                    if item_errors:
                        checked[index] = RefusedItem(None, item_errors)
                continue
            item_errors = []
            if _too_deep(item, MAX_DEPTH):
                item_errors.append(_depth_problem(""))
            elif refused or strings:
                _problems(item, "", item_errors, strings=strings)
            if item_errors:
                checked[index] = RefusedItem(_item_id(item), item_errors)
        return {**data, item_list: checked}
    if isinstance(data, dict | list) and _too_deep(data, MAX_DEPTH):
        raise _refused([_depth_problem("")])
    if refused or strings:
        errors = []
        _problems(data, "", errors, strings=strings)
        if errors:
            raise _refused(errors)
    return data


class LimitedJSONParser(parsers.JSONParser):
    """Strict JSON with a hard size limit (see the module docstring)."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        view = (parser_context or {}).get("view")
        item_list = getattr(view, "json_item_list", None)
        try:
            text = raw.decode("utf-8")
            try:
                data, refused = loads_strict(text)
            except ValueError as exc:  # marking long integers costs every integer: on demand
                if item_list is None or "integer string conversion" not in str(exc):
                    raise
                data, refused = loads_strict(text, mark_long_integers=True)
        except RecursionError as exc:
            raise exceptions.ParseError("Malformed JSON: nested too deeply to parse.") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from exc
        strings = _SUSPECT_ESCAPE.search(text) is not None
        containers = text.count("{") + text.count("[")
        if not refused and not strings and containers <= MAX_DEPTH:
            return data
        return check_parsed(data, item_list, refused=refused, strings=strings)
