"""Every error leaves the API as an RFC 9457 problem (``application/problem+json``).

Shape: ``{type, title, status, detail, code, errors: [{field, code, message}]}``. ``code`` is
stable and meant for bots; ``errors`` names each bad field with a dotted path.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.functional import Promise
from django.utils.translation import get_language, gettext, gettext_lazy
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from api.auth import InvalidMemberTokenFailed
from api.parsers import PayloadTooLarge
from points.exceptions import DomainError, FieldError

# ``type`` is a relative URI reference (RFC 9457 3.1.1): it resolves against the request's own
# origin to the page of error codes this service serves (``web.landing.error_codes``), where
# each code is an anchor.
PROBLEM_DOCS_PATH = "/api/errors/"
PROBLEM_BASE = PROBLEM_DOCS_PATH + "#"
CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ErrorCode:
    """One documented problem code: its usual status, its title and when it is answered."""

    code: str
    status: int
    title: Promise
    meaning: Promise


# Every code the service answers with, in the order of the documentation page. Domain errors
# (``points.exceptions``) not listed here are still documented, from their own class.
ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode("malformed_json", 400, _("Malformed JSON"),
              _("The body is not valid UTF-8 JSON.")),
    ErrorCode("number_too_large", 400, _("Number too large"),
              _("A number in the body has more digits than any field can hold.")),
    ErrorCode("validation_error", 400, _("Invalid request"),
              _("One or more fields are invalid; `errors` names each with a dotted path.")),
    ErrorCode("invalid_rules", 400, _("The rule set is invalid"),
              _("A published rule set failed validation; `errors` names each bad rule.")),
    ErrorCode("invalid_period", 400, _("Invalid period"),
              _("The leaderboard period or month is not one the service knows.")),
    ErrorCode("bad_request", 400, _("Bad request"),
              _("The request could not be understood (for example a control character in "
                "the request line, or a host name that is not allowed).")),
    ErrorCode("missing_api_key", 401, _("Authentication required"),
              _("Send `Authorization: Api-Key <key>`.")),
    ErrorCode("invalid_api_key", 401, _("Invalid API key"),
              _("The key is unknown, revoked or expired.")),
    ErrorCode("invalid_member_token", 401, _("Invalid or expired member token"),
              _("The member token or link is malformed, tampered with or expired.")),
    ErrorCode("forbidden", 403, _("Forbidden"),
              _("The key lacks the scope this operation needs.")),
    ErrorCode("not_found", 404, _("Not found"), _("No resource at this URL.")),
    ErrorCode("community_not_found", 404, _("Community not found"),
              _("No community with this slug.")),
    ErrorCode("member_not_found", 404, _("Member not found"),
              _("No member with this id in the community.")),
    ErrorCode("event_not_found", 404, _("Event not found"),
              _("No event with this id in the community.")),
    ErrorCode("method_not_allowed", 405, _("Method not allowed"),
              _("The URL exists but not with this method; `Allow` lists the methods it takes.")),
    ErrorCode("not_acceptable", 406, _("Not acceptable"),
              _("The service answers with JSON only.")),
    ErrorCode("event_conflict", 409, _("Event id already used"),
              _("The event id was already posted with a different body.")),
    ErrorCode("adjustment_conflict", 409, _("Adjustment id already used"),
              _("The adjustment id was already used with a different body.")),
    ErrorCode("insufficient_points", 409, _("Not enough spendable points"),
              _("The member's spendable balance does not cover the deduction.")),
    ErrorCode("length_required", 411, _("Length required"),
              _("The body's length could not be determined.")),
    ErrorCode("payload_too_large", 413, _("Request body too large"),
              _("The body is over the size limit (2 MB by default).")),
    ErrorCode("uri_too_long", 414, _("URI too long"),
              _("The request line is over 4 KB; send data in the body instead.")),
    ErrorCode("unsupported_media_type", 415, _("Unsupported media type"),
              _("Send the body as `application/json`.")),
    ErrorCode("rate_limited", 429, _("Too many requests"),
              _("Slow down; `Retry-After` says when to try again.")),
    ErrorCode("headers_too_large", 431, _("Request headers too large"),
              _("A header, or the number of headers, is over the server's limit.")),
    ErrorCode("expectation_failed", 417, _("Expectation failed"),
              _("The server does not meet the request's `Expect` header.")),
    ErrorCode("server_error", 500, _("Internal server error"),
              _("A fault on our side; the request id in `X-Request-ID` finds it in the logs.")),
    ErrorCode("unsupported_transfer_coding", 501, _("Unsupported transfer coding"),
              _("`Transfer-Encoding` other than `chunked`; send a plain or chunked body.")),
    ErrorCode("not_ready", 503, _("Service not ready"),
              _("A dependency (the database or the broker) is unreachable.")),
)  # fmt: skip
_BY_CODE = {entry.code: entry for entry in ERROR_CODES}

# The first matching class wins: subclasses come before their base classes.
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    InvalidMemberTokenFailed: "invalid_member_token",
    exceptions.ParseError: "malformed_json",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.NotAuthenticated: "missing_api_key",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "validation_error",
    PayloadTooLarge: "payload_too_large",
}

# --- One language per response ------------------------------------------------------------
# The language is the request's (``Accept-Language`` through LocaleMiddleware, English by
# default). DRF's own messages follow it; the services' messages are English, so in any other
# language each one is looked up in the catalogue (``locale/``), then in the patterns below,
# and when neither knows it, replaced by a translated generic message: a Chinese answer never
# carries an English sentence, and an English one never a Chinese sentence.

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|“[^”]*”|‘[^’]*’")
# Services' messages that carry a value: the value is kept, the words are translated.
_PATTERNS: tuple[tuple[re.Pattern[str], Promise], ...] = (
    (re.compile(r"No member '(?P<value>.*)' in this community\."),
     _("No member '%(value)s' in this community.")),
    (re.compile(r"No community '(?P<value>.*)'\."), _("No community '%(value)s'.")),
    (re.compile(r"Event '(?P<value>.*)' was already posted with a different body\."),
     _("Event '%(value)s' was already posted with a different body.")),
    (re.compile(r"Only (?P<value>-?\d+) points are spendable; (?P<asked>-?\d+) were asked for\."),
     _("Only %(value)s points are spendable; %(asked)s were asked for.")),
    (re.compile(r"unknown event type '(?P<value>.*)'"), _("unknown event type '%(value)s'")),
    (re.compile(r"No resource at (?P<value>.*)\."), _("No resource at %(value)s.")),
    (re.compile(r"No community '(?P<value>.*)' for this (?P<what>key|token)\."),
     _("No community '%(value)s' for this credential.")),
    (re.compile(r"This key lacks the '(?P<value>.*)' scope\."),
     _("This key lacks the '%(value)s' scope.")),
    (re.compile(r"Request body exceeds (?P<value>\d+) bytes\."),
     _("Request body exceeds %(value)s bytes.")),
)  # fmt: skip
# Fixed sentences of the services and views, listed so that the catalogue keeps them.
SERVICE_MESSAGES: tuple[Promise, ...] = (
    _("The event is invalid."),
    _("The adjustment is invalid."),
    _("The rule set is invalid."),
    _("The period is invalid."),
    _("This id was already used for another adjustment."),
    _("this id was already used with a different body"),
    _("must be YYYY-MM"),
    _("must be all_time, month or week"),
    _("must be an integer"),
    _("a reason is required"),
    _("at most 500 characters"),
    _("The link is invalid."),
    _("The link has expired; ask the bot for a new one."),
    _("Use 'Authorization: Api-Key <key>'."),
    _("Malformed API key."),
    _("Invalid, revoked or expired API key."),
    _("An API key is required."),
    _("A member token cannot use this endpoint."),
    _("No such member for this token."),
    _("Invalid or expired member token."),
    _("Request body too large."),
    _("A dependency is unreachable."),
)
_GENERIC_FIELD_MESSAGE: dict[str, Promise] = {
    "required": _("This field is required."),
    "conflict": _("This id was already used with a different body."),
    "too_large": _("This value is too large."),
    "number_too_large": _("Number too large."),
    "max_value": _("This value is too large."),
    "min_value": _("This value is too small."),
    "non_finite_number": _("Numbers must be finite (no NaN or Infinity)."),
    "invalid_unicode": _("The text holds an invalid character (a lone surrogate or U+0000)."),
    "nested_too_deep": _("The JSON is nested too deeply."),
    "invalid_cursor": _("This cursor was not handed out by the service."),
    "invalid_member_id": _("This is not a valid member id."),
    "before_backfill_limit": _("This time is before what the community accepts."),
    "in_future": _("This time is in the future."),
    "unknown_parameter": _("This is not a parameter of this endpoint."),
    "invalid_choice": _("This value is not one of the choices."),
}
_GENERIC_TITLE: dict[int, Promise] = {
    400: _("Bad request"),
    401: _("Authentication required"),
    403: _("Forbidden"),
    404: _("Not found"),
    409: _("Conflict"),
    413: _("Request body too large"),
    429: _("Too many requests"),
    500: _("Internal server error"),
    503: _("Service not ready"),
}


def _english() -> bool:
    return (get_language() or "en").lower().startswith("en")


def _speaks(text: str) -> bool:
    """Whether ``text`` is already in the response's language (quoted values aside)."""
    has_cjk = bool(_CJK.search(_QUOTED.sub("", text)))
    return not has_cjk if _english() else has_cjk


def say(text: str | Promise, fallback: str | Promise = "") -> str:
    """``text`` in the response's language, or ``fallback`` (itself translated) when the
    catalogue has no translation for it."""
    text = str(text)
    if _speaks(text) or not text.strip():
        return text
    translated = gettext(text)
    if translated != text:
        return translated
    for pattern, template in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return str(template) % match.groupdict()
    return str(fallback) if fallback else str(_("The request was refused."))


def title_for(code: str, status_code: int) -> str:
    """The documented title of ``code``, else a generic one for the status."""
    entry = _BY_CODE.get(code)
    return str(entry.title if entry else _GENERIC_TITLE.get(status_code, _("Request refused")))


def problem(
    status_code: int,
    code: str,
    title: str | Promise,
    detail: str | Promise = "",
    errors: list[dict[str, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A problem body, every text in the request's language (``say``)."""
    title = say(title, title_for(code, status_code))
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status_code,
        "detail": say(detail, title) if detail else title,
        "code": code,
    }
    if errors:
        body["errors"] = [_field_error(e) for e in errors]
    body.update(extra)
    return body


def _field_error(error: dict[str, str]) -> dict[str, str]:
    code = error.get("code", "invalid")
    message = error.get("message", "")
    if code == "max_string_length":  # DRF's IntegerField on a numeric string of 1,000+ digits
        message = str(_("Number too large."))
    fallback = _GENERIC_FIELD_MESSAGE.get(code, _("This value is invalid."))
    return {**error, "message": say(message, fallback)}


def flatten_errors(detail: Any, path: str = "") -> list[dict[str, str]]:
    """DRF's nested error detail → ``[{field, code, message}]`` with dotted/indexed paths,
    each message in the request's language."""
    out: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                sub = path
            elif isinstance(key, int):
                sub = f"{path}[{key}]"
            else:
                sub = f"{path}.{key}" if path else str(key)
            out.extend(flatten_errors(value, sub))
    elif isinstance(detail, list):
        if detail and all(isinstance(d, exceptions.ErrorDetail) for d in detail):
            for d in detail:
                out.append(
                    _field_error(
                        {"field": path or "body", "code": d.code or "invalid", "message": str(d)}
                    )
                )
        else:
            for index, item in enumerate(detail):
                if item:
                    out.extend(flatten_errors(item, f"{path}[{index}]"))
    else:
        code = getattr(detail, "code", None) or "invalid"
        out.append(
            _field_error({"field": path or "body", "code": str(code), "message": str(detail)})
        )
    return out


def field_errors(errors: list[FieldError]) -> list[dict[str, str]]:
    """A service's field errors, each message in the request's language."""
    return [_field_error(e.as_dict()) for e in errors]


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=body["status"], headers=headers)
    response.content_type = CONTENT_TYPE
    return response


def _cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _parse_problem(exc: exceptions.ParseError) -> dict[str, Any]:
    """A body that is not JSON. An integer past Python's digit limit is named as such, not as
    a conversion error of the parser."""
    too_long = _cause(exc, ValueError)
    if too_long is not None and "integer string conversion" in str(too_long):
        return problem(
            400,
            "number_too_large",
            _("Number too large"),
            gettext("A number in the body has more than %(digits)s digits.")
            % {"digits": f"{sys.get_int_max_str_digits():,}"},
        )
    decode = _cause(exc, json.JSONDecodeError)
    fallback: str | Promise = _BY_CODE["malformed_json"].meaning
    if isinstance(decode, json.JSONDecodeError):
        fallback = gettext("The body is not valid JSON (line %(line)s, column %(column)s).") % {
            "line": decode.lineno,
            "column": decode.colno,
        }
    return problem(400, "malformed_json", _("Malformed JSON"), say(str(exc.detail), fallback))


def _drf_problem(
    exc: exceptions.APIException, code: str, status_code: int, request: Any
) -> dict[str, Any]:
    entry = _BY_CODE.get(code)
    meaning = entry.meaning if entry is not None else ""
    if isinstance(exc, exceptions.ParseError):
        return _parse_problem(exc)
    if isinstance(exc, exceptions.MethodNotAllowed):
        method = getattr(request, "method", "") or ""
        return problem(
            status_code,
            code,
            gettext("Method %(method)s not allowed") % {"method": method},
            meaning,
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        media_type = (getattr(request, "content_type", "") or "").split(";")[0].strip()
        return problem(
            status_code,
            code,
            gettext("Unsupported media type %(media_type)s") % {"media_type": media_type or "-"},
            meaning,
        )
    return problem(status_code, code, title_for(code, status_code), say(str(exc.detail), meaning))


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return problem_response(
            problem(exc.status, exc.code, exc.title, exc.detail, field_errors(exc.errors))
        )
    if isinstance(exc, RequestDataTooBig):
        return problem_response(problem(413, "payload_too_large", _("Request body too large")))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's handler500 answers with a problem too
    if not isinstance(exc, exceptions.APIException):
        return None
    codes = exc.get_codes()
    code = next((c for k, c in _DRF_CODES.items() if isinstance(exc, k)), None)
    code = code or (codes if isinstance(codes, str) else "error")
    if isinstance(exc, exceptions.ValidationError):
        body = problem(
            status.HTTP_400_BAD_REQUEST,
            "validation_error",
            _("Invalid request"),
            _("One or more fields are invalid."),
            flatten_errors(exc.detail),
        )
    else:
        body = _drf_problem(exc, str(code), response.status_code, context.get("request"))
    headers = {
        k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")
    }
    return problem_response(body, headers)


def _json_problem(body: dict[str, Any]) -> JsonResponse:
    return JsonResponse(
        body,
        status=body["status"],
        content_type=CONTENT_TYPE,
        json_dumps_params={"ensure_ascii": False},
    )


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_problem(
        problem(404, "not_found", _("Not found"), f"No resource at {request.path}.")
    )


def handler500(request: HttpRequest) -> JsonResponse:
    return _json_problem(problem(500, "server_error", _("Internal server error")))


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return _json_problem(problem(413, "payload_too_large", _("Request body too large")))
    return _json_problem(problem(400, "bad_request", _("Bad request")))


def _documented_codes() -> list[ErrorCode]:
    """``ERROR_CODES`` and every domain error class not listed there (documented from the
    class itself, so that a new ``DomainError`` is on the page the day it is written)."""
    codes = list(ERROR_CODES)
    known = {entry.code for entry in codes}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.code not in known:
            known.add(cls.code)
            title = gettext_lazy(cls.title)
            codes.append(ErrorCode(cls.code, cls.status, title, title))
    return codes


def error_codes_page(request: HttpRequest) -> HttpResponse:
    """The page every problem ``type`` points at: one anchored entry per code."""
    return render(request, "web/error_codes.html", {"codes": _documented_codes()})
