"""Shared OpenAPI pieces: the problem+json response and its examples."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

from api.errors import CONTENT_TYPE, PROBLEM_BASE


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents ``api.auth.ApiKeyAuthentication`` as the ``ApiKeyAuth`` security scheme."""

    target_class = "api.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`",
        }


class MemberTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Member <token>``: listed only on the views a member token may read."""

    target_class = "api.auth.MemberTokenAuthentication"
    name = "MemberToken"

    def get_security_requirement(self, auto_schema: Any) -> Any:
        if getattr(auto_schema.view, "member_access", None) is None:
            return []
        return {self.name: []}

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Member <token>` from POST …/members/{m}/token (read-only).",
        }


NO_NUL = "^[^\\u0000]*$"


def _no_nul_strings(node: Any) -> None:
    """Text we accept can never hold U+0000 (PostgreSQL text cannot): say so in the schema
    with a pattern on every request string that has no pattern or format of its own."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "pattern" not in node and "format" not in node:
            if "enum" not in node:
                node["pattern"] = NO_NUL
        for value in node.values():
            _no_nul_strings(value)
    elif isinstance(node, list):
        for value in node:
            _no_nul_strings(value)


def strict_request_strings(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: request bodies' and query parameters' strings refuse NUL."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request"):
            _no_nul_strings(component)
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "query":
                        _no_nul_strings(parameter.get("schema", {}))
    return result


def problem_media_type(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: error responses are served as ``application/problem+json``."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for code, response in operation.get("responses", {}).items():
                content = response.get("content") if isinstance(response, dict) else None
                if str(code)[:1] in ("4", "5") and content and "application/json" in content:
                    content[CONTENT_TYPE] = content.pop("application/json")
    return result


PROBLEM = OpenApiResponse(
    inline_serializer(
        "Problem",
        fields={
            "type": serializers.CharField(),
            "title": serializers.CharField(),
            "status": serializers.IntegerField(),
            "detail": serializers.CharField(),
            "code": serializers.CharField(help_text="Stable, machine-readable."),
            "errors": inline_serializer(
                "ProblemFieldError",
                fields={
                    "field": serializers.CharField(),
                    "code": serializers.CharField(),
                    "message": serializers.CharField(),
                },
                many=True,
                required=False,
            ),
        },
    ),
    description="RFC 9457 problem details (application/problem+json).",
)


def example_problem(
    status: int, code: str, title: str, errors: list[dict[str, str]] | None = None
) -> OpenApiExample:
    value: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": title,
        "code": code,
    }
    if errors:
        value["errors"] = errors
    return OpenApiExample(
        f"{status} {code}", value=value, response_only=True, status_codes=[str(status)]
    )
