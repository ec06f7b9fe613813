"""Small request checks that every view module shares: unknown query parameters and body
fields are refused (400 naming them), a query choice is validated, and a view that reads with
``members:read`` and writes with ``admin``."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from points.exceptions import FieldError, ValidationFailed
from points.models import Scope


class ReadOrAdmin:
    """GET needs ``members:read``; every other method needs ``admin``."""

    request: Request

    @property
    def required_scope(self) -> str:
        return Scope.MEMBERS_READ if self.request.method == "GET" else Scope.ADMIN


def refuse_unknown_fields(serializer: serializers.Serializer, data: Any, prefix: str = "") -> None:
    """A body key the serializer does not declare is an error, not silently ignored."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(serializer.fields))
        if unknown:
            raise ValidationFailed(
                "Unknown field.",
                [FieldError(f"{prefix}{k}", "unknown_field", "is not a field") for k in unknown],
            )


def refuse_unknown_params(request: Request, *known: str) -> None:
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise ValidationFailed(
            "Unknown query parameter.",
            [FieldError(name, "unknown_parameter", "is not a parameter") for name in unknown],
        )


def choice_param(request: Request, name: str, choices: list[str]) -> str | None:
    """``?name=`` when sent (one of ``choices``, else 400 naming it), else None."""
    value = request.query_params.get(name)
    if value is not None and value not in choices:
        raise ValidationFailed(
            "Invalid filter.", [FieldError(name, "invalid_choice", f"must be one of {choices}")]
        )
    return value
