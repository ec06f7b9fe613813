"""Every error leaves the API as an RFC 9457 problem (``application/problem+json``).

Shape: ``{type, title, status, detail, code, errors: [{field, code, message}]}``. ``code`` is
stable and meant for bots; ``errors`` names each bad field with a dotted path.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from api.auth import InvalidMemberTokenFailed
from api.parsers import PayloadTooLarge
from points.exceptions import DomainError, FieldError

PROBLEM_BASE = "https://docs.incentives.example/problems/"
CONTENT_TYPE = "application/problem+json"

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


def problem(
    status_code: int,
    code: str,
    title: str,
    detail: str = "",
    errors: list[dict[str, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status_code,
        "detail": detail or title,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def flatten_errors(detail: Any, path: str = "") -> list[dict[str, str]]:
    """DRF's nested error detail → ``[{field, code, message}]`` with dotted/indexed paths."""
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
                    {"field": path or "body", "code": d.code or "invalid", "message": str(d)}
                )
        else:
            for index, item in enumerate(detail):
                if item:
                    out.extend(flatten_errors(item, f"{path}[{index}]"))
    else:
        code = getattr(detail, "code", None) or "invalid"
        out.append({"field": path or "body", "code": str(code), "message": str(detail)})
    return out


def field_errors(errors: list[FieldError]) -> list[dict[str, str]]:
    return [e.as_dict() for e in errors]


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=body["status"], headers=headers)
    response.content_type = CONTENT_TYPE
    return response


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return problem_response(
            problem(exc.status, exc.code, exc.title, exc.detail, field_errors(exc.errors))
        )
    if isinstance(exc, RequestDataTooBig):
        return problem_response(
            problem(413, "payload_too_large", "Request body too large", str(exc))
        )
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
            "Invalid request",
            "One or more fields are invalid.",
            flatten_errors(exc.detail),
        )
    else:
        title = str(exc.default_detail)
        body = problem(response.status_code, str(code), title, str(exc.detail))
    headers = {
        k: v for k, v in response.items() if k in ("WWW-Authenticate", "Retry-After", "Allow")
    }
    return problem_response(body, headers)


def _json_problem(body: dict[str, Any]) -> JsonResponse:
    return JsonResponse(body, status=body["status"], content_type=CONTENT_TYPE)


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _json_problem(problem(404, "not_found", "Not found", f"No resource at {request.path}."))


def handler500(request: HttpRequest) -> JsonResponse:
    return _json_problem(problem(500, "server_error", "Internal server error"))


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    if isinstance(exception, RequestDataTooBig):
        return _json_problem(problem(413, "payload_too_large", "Request body too large"))
    return _json_problem(problem(400, "bad_request", "Bad request"))
