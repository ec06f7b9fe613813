"""Shared OpenAPI pieces: the problem+json response and its examples."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

from api.errors import PROBLEM_BASE

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
