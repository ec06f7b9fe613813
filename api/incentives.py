"""Incentive endpoints: roles, the tier ladder and a member's tier history, KOC candidates and
decisions, published honor rolls. Thin views over ``incentives``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_actor as _actor
from api.auth import request_community as _community
from api.params import ReadOrAdmin, choice_param, refuse_unknown_params
from api.serializers import StrictBooleanField, StrictCharField
from incentives.config import DEFAULT_TIERS, community_ladder, ladder_document
from incentives.honors import CATEGORIES, LISTED, honor_counts, honor_roll_get
from incentives.koc import koc_candidates, koc_confirm, koc_dismiss
from incentives.models import KocCandidate, KocStatus, Role
from incentives.roles import member_role_set
from incentives.tiers import member_tier_standing, tier_history, tier_ladder_set, tier_set_lock
from points.models import Scope
from points.selectors import member_by_external_id

_DATETIME = serializers.DateTimeField()
KOC_LIST_LIMIT = 500


def _time(value: Any) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


# --- roles ---------------------------------------------------------------------------------------


class RoleInputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=Role.choices, help_text="`member` removes the role. Staff and KOLs are not KOCs."
    )


class RoleOutputSerializer(serializers.Serializer):
    member = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)


class MemberRoleView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="members_role_set",
        summary="Set a member's role (owner, staff, KOL or member); audited",
        request=RoleInputSerializer,
        responses={
            200: RoleOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[OpenApiExample("KOL", value={"role": "kol"}, request_only=True)],
        tags=["incentives"],
    )
    def put(self, request: Request, community: str, member: str) -> Response:
        body = RoleInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        found = member_by_external_id(_community(request), member)
        role = member_role_set(
            community=_community(request),
            member=found,
            role=body.validated_data["role"],
            actor=_actor(request),
        )
        return Response({"member": found.external_id, "role": role})


# --- tiers ---------------------------------------------------------------------------------------


class LadderSerializer(serializers.Serializer):
    points_window_days = serializers.IntegerField(min_value=1, max_value=366)
    low_water = serializers.FloatField(min_value=0.0, max_value=1.0)
    min_stay_days = serializers.IntegerField(min_value=0, max_value=366)
    tiers = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=10)


class TiersView(ReadOrAdmin, APIView):  # type: ignore[misc]
    @extend_schema(
        operation_id="tiers_retrieve",
        summary="The community's tier ladder",
        responses={200: LadderSerializer, 401: schema.PROBLEM, 403: schema.PROBLEM},
        examples=[OpenApiExample("Default ladder", value=DEFAULT_TIERS, response_only=True)],
        tags=["incentives"],
    )
    def get(self, request: Request, community: str) -> Response:
        return Response(ladder_document(community_ladder(_community(request).pk)))

    @extend_schema(
        operation_id="tiers_update",
        summary="Replace the tier ladder (scope admin; validated whole, audited)",
        description=(
            "Each tier: `code`, `name: {zh, en}`, and entry criteria `min_points` (in the last "
            "`points_window_days` local days), `min_check_in_days` (last 30), `min_featured` "
            "(in the points window), `requires_koc`. The first tier has none. Demotion happens "
            "below `low_water` × the criteria after `min_stay_days`, one tier per run."
        ),
        request=LadderSerializer,
        responses={
            200: LadderSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[OpenApiExample("Ladder", value=DEFAULT_TIERS, request_only=True)],
        tags=["incentives"],
    )
    def put(self, request: Request, community: str) -> Response:
        body = LadderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ladder = tier_ladder_set(
            community=_community(request), document=dict(request.data), actor=_actor(request)
        )
        return Response(ladder_document(ladder))


class TierChangeSerializer(serializers.Serializer):
    kind = serializers.CharField()
    from_tier = serializers.CharField()
    to_tier = serializers.CharField()
    reason = serializers.CharField()
    figures = serializers.DictField()
    actor = serializers.CharField()
    at = serializers.DateTimeField()


class CriterionSerializer(serializers.Serializer):
    figure = serializers.CharField()
    value = serializers.IntegerField()
    minimum = serializers.IntegerField()


class MemberTiersSerializer(serializers.Serializer):
    member = serializers.CharField()
    tier = serializers.CharField()
    tier_name = serializers.DictField()
    since = serializers.DateTimeField(allow_null=True)
    locked = StrictBooleanField()
    next_tier = serializers.CharField(allow_null=True)
    progress = serializers.FloatField(
        help_text="0-100: the least advanced criterion of the next tier."
    )
    criteria = CriterionSerializer(many=True)
    history = TierChangeSerializer(many=True)


def tier_body(standing: Any) -> dict[str, Any]:
    """A member's tier as the API shows it (member endpoint and tier history alike)."""
    return {
        "tier": standing.tier.code,
        "tier_name": {"zh": standing.tier.name_zh, "en": standing.tier.name_en},
        "since": _time(standing.since),
        "locked": standing.locked,
        "next_tier": standing.next_tier.code if standing.next_tier else None,
        "progress": standing.progress,
        "criteria": [
            {"figure": c.figure, "value": c.value, "minimum": c.required} for c in standing.criteria
        ],
    }


class MemberTiersView(APIView):
    required_scope = Scope.MEMBERS_READ
    member_access = "self"

    @extend_schema(
        operation_id="members_tiers",
        summary="A member's tier, progress to the next one, and every change with its reason",
        responses={
            200: MemberTiersSerializer,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "History",
                value={
                    "member": "wxid_alice",
                    "tier": "active",
                    "tier_name": {"zh": "活跃成员", "en": "Active"},
                    "since": "2026-11-02T01:07:00+08:00",
                    "locked": False,
                    "next_tier": "core",
                    "progress": 62.5,
                    "criteria": [
                        {"figure": "points", "value": 410, "minimum": 500},
                        {"figure": "check_in_days", "value": 12, "minimum": 15},
                        {"figure": "featured", "value": 1, "minimum": 1},
                    ],
                    "history": [
                        {
                            "kind": "promotion",
                            "from_tier": "newcomer",
                            "to_tier": "active",
                            "reason": "meets the entry criteria of active",
                            "figures": {
                                "points": 130,
                                "points_window_days": 90,
                                "check_in_days": 9,
                                "featured": 0,
                                "koc": False,
                            },
                            "actor": "job:tiers",
                            "at": "2026-11-02T01:07:00+08:00",
                        }
                    ],
                },
                response_only=True,
            )
        ],
        tags=["incentives"],
    )
    def get(self, request: Request, community: str, member: str) -> Response:
        found = member_by_external_id(_community(request), member)
        body = {"member": found.external_id, **tier_body(member_tier_standing(found))}
        body["history"] = [
            {
                "kind": c.kind,
                "from_tier": c.from_code,
                "to_tier": c.to_code,
                "reason": c.reason,
                "figures": c.figures,
                "actor": c.actor,
                "at": _time(c.created_at),
            }
            for c in tier_history(found)
        ]
        return Response(body)


class TierLockInputSerializer(serializers.Serializer):
    locked = StrictBooleanField()
    tier = StrictCharField(max_length=32, required=False, help_text="Move to this tier first.")
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class MemberTierLockView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="members_tier_lock",
        summary="Lock a member's tier (optionally setting it) or unlock it; audited",
        request=TierLockInputSerializer,
        responses={
            200: MemberTiersSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Lock as core",
                value={"locked": True, "tier": "core", "reason": "community moderator"},
                request_only=True,
            )
        ],
        tags=["incentives"],
    )
    def put(self, request: Request, community: str, member: str) -> Response:
        body = TierLockInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        found = member_by_external_id(_community(request), member)
        tier_set_lock(
            community=_community(request),
            member=found,
            locked=data["locked"],
            tier=data.get("tier"),
            reason=data.get("reason", ""),
            actor=_actor(request),
        )
        return Response({"member": found.external_id, **tier_body(member_tier_standing(found))})


# --- KOC ---------------------------------------------------------------------------------------


class KocCandidateSerializer(serializers.Serializer):
    member = serializers.CharField()
    display_name = serializers.CharField()
    status = serializers.ChoiceField(choices=KocStatus.choices)
    score = serializers.FloatField()
    robust_z = serializers.FloatField()
    trust_rank = serializers.FloatField(help_text="1.0 is the average node of the graph.")
    h_index = serializers.IntegerField()
    distinct_reactors = serializers.IntegerField()
    reciprocal_reactors = serializers.IntegerField()
    distinct_days = serializers.IntegerField()
    figures = serializers.DictField()
    window_end = serializers.DateField()
    window_days = serializers.IntegerField()
    detected_at = serializers.DateTimeField()
    decided_by = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)
    note = serializers.CharField()


class KocListSerializer(serializers.Serializer):
    results = KocCandidateSerializer(many=True)


def koc_body(row: KocCandidate) -> dict[str, Any]:
    return {
        "member": row.member.external_id,
        "display_name": row.member.display_name,
        "status": row.status,
        "score": row.score,
        "robust_z": row.robust_z,
        "trust_rank": row.trust_rank,
        "h_index": row.h_index,
        "distinct_reactors": row.distinct_reactors,
        "reciprocal_reactors": row.reciprocal_reactors,
        "distinct_days": row.distinct_days,
        "figures": row.figures,
        "window_end": row.window_end.isoformat(),
        "window_days": row.window_days,
        "detected_at": _time(row.detected_at),
        "decided_by": row.decided_by,
        "decided_at": _time(row.decided_at),
        "note": row.note,
    }


KOC_EXAMPLE = {
    "member": "wxid_dora",
    "display_name": "Dora",
    "status": "candidate",
    "score": 9.12,
    "robust_z": 7.4,
    "trust_rank": 3.1,
    "h_index": 6,
    "distinct_reactors": 48,
    "reciprocal_reactors": 5,
    "distinct_days": 19,
    "figures": {"featured": 2, "min_reactors": 10, "min_days": 5, "min_z": 3.5},
    "window_end": "2026-11-30",
    "window_days": 30,
    "detected_at": "2026-11-30T00:17:00+08:00",
    "decided_by": "",
    "decided_at": None,
    "note": "",
}


class KocListView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="koc_list",
        summary="KOC candidates with the figures that explain them, best first",
        description=(
            "Written by the daily KOC job (docs/incentives.md). Candidates are the community's "
            f"outliers, so the list is short; it returns at most {KOC_LIST_LIMIT}."
        ),
        parameters=[
            OpenApiParameter("status", str, enum=KocStatus.values, required=False),
        ],
        responses={
            200: KocListSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("Candidates", value={"results": [KOC_EXAMPLE]}, response_only=True)
        ],
        tags=["incentives"],
    )
    def get(self, request: Request, community: str) -> Response:
        refuse_unknown_params(request, "status")
        status = choice_param(request, "status", list(KocStatus.values))
        rows = koc_candidates(_community(request), status)[:KOC_LIST_LIMIT]
        return Response({"results": [koc_body(r) for r in rows]})


class KocDecisionInputSerializer(serializers.Serializer):
    note = StrictCharField(max_length=500, required=False, allow_blank=True)


class _KocDecisionView(APIView):
    required_scope = Scope.ADMIN
    decide: Any = None

    def post(self, request: Request, community: str, member: str) -> Response:
        body = KocDecisionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        found = member_by_external_id(_community(request), member)
        row = type(self).decide(
            community=_community(request),
            member=found,
            actor=_actor(request),
            note=body.validated_data.get("note", ""),
        )
        return Response(koc_body(row))


class KocConfirmView(_KocDecisionView):
    decide = staticmethod(koc_confirm)

    @extend_schema(
        operation_id="koc_confirm",
        summary="Confirm a KOC candidate (marked on the member; announced as koc.confirmed)",
        request=KocDecisionInputSerializer,
        responses={
            200: KocCandidateSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("Confirm", value={"note": "her 干货 posts"}, request_only=True),
            schema.example_problem(409, "not_a_koc_candidate", "Not a KOC candidate"),
        ],
        tags=["incentives"],
    )
    def post(self, request: Request, community: str, member: str) -> Response:
        return super().post(request, community, member)


class KocDismissView(_KocDecisionView):
    decide = staticmethod(koc_dismiss)

    @extend_schema(
        operation_id="koc_dismiss",
        summary="Dismiss a KOC candidate (later runs keep the decision)",
        request=KocDecisionInputSerializer,
        examples=[
            OpenApiExample("Dismiss", value={"note": "only reposts"}, request_only=True),
            OpenApiExample(
                "Dismissed",
                value={
                    **KOC_EXAMPLE,
                    "status": "dismissed",
                    "decided_by": "key:Ab12Cd34",
                    "decided_at": "2026-12-01T10:00:00+08:00",
                    "note": "only reposts",
                },
                response_only=True,
            ),
        ],
        responses={
            200: KocCandidateSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
        },
        tags=["incentives"],
    )
    def post(self, request: Request, community: str, member: str) -> Response:
        return super().post(request, community, member)


# --- honor rolls --------------------------------------------------------------------------------


class HonorRollSerializer(serializers.Serializer):
    month = serializers.CharField()
    published_at = serializers.DateTimeField()
    categories = serializers.DictField(
        help_text=f"One ranked list per category: {', '.join(CATEGORIES)}; a category "
        f"without a top lists at most {LISTED} members."
    )
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="How many members each category honors."
    )


class HonorRollView(APIView):
    required_scope = Scope.MEMBERS_READ
    member_access = "public"

    @extend_schema(
        operation_id="honor_roll_retrieve",
        summary="A month's published honor roll (光荣榜), by category",
        description=(
            "Published on the 1st of the next month in the community's time zone, then never "
            "changed. Ranks are competition ranks; `tied` marks a shared rank, and everyone tied "
            "at the last place shown is shown."
        ),
        responses={
            200: HonorRollSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "October",
                value={
                    "month": "2026-10",
                    "published_at": "2026-11-01T00:27:00+08:00",
                    "categories": {
                        "top_points": [
                            {
                                "rank": 1,
                                "member": "wxid_alice",
                                "display_name": "Alice",
                                "tied": False,
                                "value": 820,
                            },
                        ],
                        "full_attendance": [
                            {
                                "rank": 1,
                                "member": "wxid_bob",
                                "display_name": "Bob",
                                "tied": False,
                                "value": 31,
                            },
                        ],
                        "best_content": [
                            {
                                "rank": 1,
                                "member": "wxid_dora",
                                "display_name": "Dora",
                                "tied": False,
                                "featured": 3,
                                "distinct_reactors": 57,
                            },
                        ],
                        "most_helpful": [],
                        "top_inviters": [],
                        "new_kocs": [
                            {
                                "rank": 1,
                                "member": "wxid_dora",
                                "display_name": "Dora",
                                "tied": False,
                            },
                        ],
                        "promotions": [
                            {
                                "rank": 1,
                                "member": "wxid_bob",
                                "display_name": "Bob",
                                "tied": False,
                                "tier": "core",
                            },
                        ],
                    },
                    "counts": {
                        "top_points": 1,
                        "full_attendance": 1,
                        "best_content": 1,
                        "most_helpful": 0,
                        "top_inviters": 0,
                        "new_kocs": 1,
                        "promotions": 1,
                    },
                },
                response_only=True,
            ),
            schema.example_problem(404, "honor_roll_not_found", "Honor roll not found"),
        ],
        tags=["incentives"],
    )
    def get(self, request: Request, community: str, month: str) -> Response:
        roll = honor_roll_get(_community(request), month)
        return Response(
            {
                "month": f"{roll.month:%Y-%m}",
                "published_at": _time(roll.published_at),
                "categories": roll.categories,
                "counts": honor_counts(roll),
            }
        )
