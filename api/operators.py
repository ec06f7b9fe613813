"""Operator endpoints (scope ``admin``): manual adjustments and the community's rule set."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_actor as _actor
from api.auth import request_community as _community
from api.serializers import (
    MemberIdField,
    StrictBooleanField,
    StrictCharField,
    StrictRegexField,
    timestamp,
)
from points.adjustments import AdjustmentInput, adjustment_create
from points.exceptions import FieldError, RulesInvalid
from points.models import Community, RuleSet, Scope
from points.selectors import rules_in_force
from points.services import rule_set_publish


class AdjustmentInputSerializer(serializers.Serializer):
    id = StrictRegexField(
        r"^\S{1,128}$",
        required=False,
        help_text="Your id for this adjustment: a retry with the same id and body gets the "
        "first outcome again, a refusal (404, 409) included; another body is 409.",
    )
    member = MemberIdField()
    points = serializers.IntegerField(
        min_value=-1_000_000, max_value=1_000_000, help_text="Non-zero; negative takes points."
    )
    reason = StrictCharField(max_length=500, help_text="Required; shown in the ledger.")
    create_member = StrictBooleanField(
        required=False,
        default=False,
        help_text="Create the member if the community does not know them (a credit only); "
        "without it an unknown member is 404.",
    )

    def validate_points(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("must not be zero", code="invalid")
        return value


class AdjustmentOutputSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    member = serializers.CharField()
    points = serializers.IntegerField()
    reason = serializers.CharField()
    balance = serializers.IntegerField()
    owed = serializers.IntegerField()
    entries = serializers.ListField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()


class AdjustmentView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="adjustments_create",
        summary="A manual adjustment with a reason, recorded in the audit log",
        request=AdjustmentInputSerializer,
        responses={
            201: AdjustmentOutputSerializer,
            200: AdjustmentOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Prize",
                value={
                    "id": "adj-2026-11-01",
                    "member": "wxid_alice",
                    "points": 100,
                    "reason": "winner of the November quiz",
                    "create_member": True,
                },
                request_only=True,
            ),
            OpenApiExample(
                "Posted",
                value={
                    "id": "adj-2026-11-01",
                    "member": "wxid_alice",
                    "points": 100,
                    "reason": "winner of the November quiz",
                    "balance": 225,
                    "owed": 0,
                    "entries": [981],
                    "created_at": "2026-11-23T10:00:00+08:00",
                },
                response_only=True,
                status_codes=["201", "200"],
            ),
            schema.example_problem(404, "member_not_found", "Member not found"),
            schema.example_problem(409, "insufficient_points", "Not enough spendable points"),
        ],
        tags=["operators"],
    )
    def post(self, request: Request, community: str) -> Response:
        body = AdjustmentInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result, created = adjustment_create(
            community=_community(request),
            item=AdjustmentInput(data["member"], data["points"], data["reason"]),
            actor=_actor(request),
            client_id=data.get("id", ""),
            create_member=data["create_member"],
        )
        if isinstance(result.get("created_at"), str):
            result = {**result, "created_at": timestamp(result["created_at"])}
        return Response(result, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RulesInputSerializer(serializers.Serializer):
    rules = serializers.DictField(help_text="The whole rule set document (docs/rules.md).")
    effective_from = serializers.DateTimeField(
        required=False,
        help_text="When it takes effect (default: now): not before the latest version's, and at "
        "most 366 days ahead.",
    )
    note = StrictCharField(max_length=500, required=False, allow_blank=True)
    confirm_zero = StrictBooleanField(
        required=False,
        default=False,
        help_text="Required (true) to publish a rule set under which no event type scores "
        "points: without it such a rule set is refused (`pays_nothing`).",
    )


class RuleVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    effective_from = serializers.DateTimeField()
    note = serializers.CharField()
    created_at = serializers.DateTimeField()


class RulesOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The version in force now.")
    effective_from = serializers.DateTimeField()
    note = serializers.CharField()
    rules = serializers.DictField()
    versions = RuleVersionSerializer(many=True)


def _rules_body(community: Community, version: int) -> dict[str, Any]:
    versions = list(RuleSet.objects.filter(community=community).order_by("version"))
    current = next(v for v in versions if v.version == version)
    return {
        "version": current.version,
        "effective_from": current.effective_from,
        "note": current.note,
        "rules": current.rules,
        "versions": [
            {
                "version": v.version,
                "effective_from": v.effective_from,
                "note": v.note,
                "created_at": v.created_at,
            }
            for v in versions
        ],
    }


RULES_EXAMPLE = {"points": {"check_in": 5, "share": 5}, "daily_caps": {"share": 20}}


class RulesView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="rules_retrieve",
        summary="The rule set in force now, and every version",
        responses={200: RulesOutputSerializer, 401: schema.PROBLEM, 403: schema.PROBLEM},
        examples=[
            OpenApiExample(
                "In force",
                value={
                    "version": 2,
                    "effective_from": "2026-12-01T00:00:00+08:00",
                    "note": "December: shares count more",
                    "rules": RULES_EXAMPLE,
                    "versions": [
                        {
                            "version": 1,
                            "effective_from": "2000-01-01T08:00:00+08:00",
                            "note": "default rules",
                            "created_at": "2026-09-01T10:00:00+08:00",
                        },
                        {
                            "version": 2,
                            "effective_from": "2026-12-01T00:00:00+08:00",
                            "note": "December: shares count more",
                            "created_at": "2026-11-23T10:00:00+08:00",
                        },
                    ],
                },
                response_only=True,
            )
        ],
        tags=["operators"],
    )
    def get(self, request: Request, community: str) -> Response:
        # fresh: this process's community row may predate a version published by another
        # process; an operator who publishes and reads back must see what they published.
        current = rules_in_force(_community(request), timezone.now(), fresh=True)
        body = _rules_body(_community(request), current.version)
        return Response(RulesOutputSerializer(body).data)

    @extend_schema(
        operation_id="rules_publish",
        summary="Publish a new rule set version (versions are never edited)",
        request=RulesInputSerializer,
        responses={
            201: RulesOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "New version",
                value={
                    "rules": RULES_EXAMPLE,
                    "effective_from": "2026-12-01T00:00:00+08:00",
                    "note": "December: shares count more",
                },
                request_only=True,
            ),
            schema.example_problem(
                400,
                "invalid_rules",
                "The rule set is invalid",
                [
                    {
                        "field": "rules.daily_caps.shares",
                        "code": "unknown_event_type",
                        "message": "…",
                    }
                ],
            ),
        ],
        tags=["operators"],
    )
    def put(self, request: Request, community: str) -> Response:
        body = RulesInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        found = _community(request)
        try:
            rule_set = rule_set_publish(
                community=found,
                rules=data["rules"],
                effective_from=data.get("effective_from"),
                note=data.get("note", ""),
                actor=_actor(request),
                confirm_zero=data["confirm_zero"],
            )
        except RulesInvalid as exc:
            raise RulesInvalid(
                [FieldError(f"rules.{e.field}", e.code, e.message) for e in exc.errors]
            ) from exc
        body_out = _rules_body(found, rule_set.version)
        return Response(RulesOutputSerializer(body_out).data, status=status.HTTP_201_CREATED)
