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
