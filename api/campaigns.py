"""Red packet campaign endpoints: create (audience resolved, split stored), read, approve (one
or two admins; payouts requested), cancel, and the stored allocation page by page. Thin views
over ``rewards.campaigns``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from api import schema
from api.auth import request_actor as _actor
from api.auth import request_community as _community
from api.pagination import cursor_decode, cursor_encode
from api.params import ReadOrAdmin, refuse_unknown_fields, refuse_unknown_params
from api.serializers import StrictCharField, StrictRegexField, timestamp
from points.exceptions import FieldError, ValidationFailed
from points.models import Scope
from rewards.campaigns import (
    MAX_ACTIVE_DAYS,
    MAX_PACKETS,
    MAX_TOTAL_FEN,
    Approval,
    allocations_page,
    campaign_approve,
    campaign_body,
    campaign_cancel,
    campaign_create,
    campaign_get,
)
from rewards.models import CampaignKind, CampaignStatus, SplitMethod
from rewards.splits import DEFAULT_MAX_FEN, DEFAULT_MIN_FEN

PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
FEN_MAX = 2**31 - 1


# --- serializers ---------------------------------------------------------------------------------


class AudienceSerializer(serializers.Serializer):
    active_days = serializers.IntegerField(
        min_value=1,
        max_value=MAX_ACTIVE_DAYS,
        required=False,
        help_text="An event in the last N local days, today included.",
    )
    min_tier = StrictRegexField(
        r"^[a-z][a-z0-9_]{0,31}$",
        required=False,
        help_text="A tier code of the community's ladder: that tier or a higher one.",
    )
    honor_roll = StrictRegexField(
        r"^\d{4}-\d{2}$", required=False, help_text="YYYY-MM: on that month's honor roll."
    )
    newcomers_since = StrictRegexField(
        r"^\d{4}-\d{2}-\d{2}$",
        required=False,
        help_text="YYYY-MM-DD: joined on or after that local day.",
    )
    featured_authors_since = StrictRegexField(
        r"^\d{4}-\d{2}-\d{2}$",
        required=False,
        help_text="YYYY-MM-DD: a counted content_featured on or after that local day.",
    )


class CampaignInputSerializer(serializers.Serializer):
    id = StrictRegexField(
        r"^[^\s/]{1,128}$",
        help_text="Your id for the campaign (no spaces or '/'): a retry with the same body "
        "replays. Ids starting `welcome:` or `featured:` are the automatic campaigns'.",
    )
    kind = serializers.ChoiceField(
        choices=[CampaignKind.HOLIDAY.value, CampaignKind.CUSTOM.value],
        required=False,
        help_text="`custom` by default; `welcome` and `content` are the automatic campaigns'.",
    )
    title = StrictCharField(max_length=200)
    total_fen = serializers.IntegerField(min_value=1, max_value=MAX_TOTAL_FEN)
    packets = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PACKETS,
        required=False,
        help_text="One packet per audience member; when sent, it must equal the audience's size.",
    )
    audience = AudienceSerializer(
        help_text="Filters, all of which a member must meet (active members only)."
    )
    split = serializers.ChoiceField(
        choices=SplitMethod.choices,
        help_text="`equal` (leftover fen to the first packets), `lucky` (double-mean) or "
        "`lucky_line_cut`.",
    )
    min_fen = serializers.IntegerField(min_value=1, max_value=FEN_MAX, required=False)
    max_fen = serializers.IntegerField(min_value=1, max_value=FEN_MAX, required=False)


class CampaignOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=CampaignKind.choices)
    title = serializers.CharField()
    total_fen = serializers.IntegerField()
    packets = serializers.IntegerField()
    audience = serializers.DictField()
    split = serializers.ChoiceField(choices=SplitMethod.choices)
    min_fen = serializers.IntegerField()
    max_fen = serializers.IntegerField()
    seed = serializers.CharField(help_text="Hex; lucky splits are derived from it.")
    algorithm_version = serializers.IntegerField()
    allocation_digest = serializers.CharField(
        help_text="sha256 of the stored split (rewards.splits.allocation_digest)."
    )
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    awaiting_second_approval = serializers.BooleanField()
    created_by = serializers.CharField()
    approved_by = serializers.CharField()
    second_approved_by = serializers.CharField()
    approved_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    paid_packets = serializers.IntegerField(help_text="Packets with a payout.")
    paid_fen = serializers.IntegerField()


class SkippedSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    member = serializers.CharField()
    amount_fen = serializers.IntegerField()
    reason = serializers.ChoiceField(choices=["member_left", "daily_packets", "daily_fen"])


class CampaignApprovalSerializer(serializers.Serializer):
    campaign = CampaignOutputSerializer()
    completed = serializers.BooleanField(
        help_text="false: a first approval; a second, different admin must approve too."
    )
    paid = serializers.IntegerField(help_text="Payouts requested by this approval.")
    paid_fen = serializers.IntegerField()
    skipped = SkippedSerializer(
        many=True, help_text="Packets not paid: the member left or is over a daily limit."
    )


class CancelInputSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class AllocationPayoutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    reference = serializers.CharField()


class AllocationSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    member = serializers.CharField(allow_null=True)
    amount_fen = serializers.IntegerField()
    payout = AllocationPayoutSerializer(
        allow_null=True, help_text="null: not approved yet, or skipped at approval."
    )


class AllocationPageSerializer(serializers.Serializer):
    results = AllocationSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="The next page's URL; null at the end.")


def _campaign(row: Any) -> dict[str, Any]:
    body = campaign_body(row)
    for key in ("approved_at", "created_at"):
        if body[key] is not None:
            body[key] = timestamp(body[key])
    return body


CAMPAIGN_EXAMPLE = {
    "id": "spring-festival-2027",
    "kind": "holiday",
    "title": "新春红包",
    "total_fen": 88_800,
    "packets": 120,
    "audience": {"active_days": 30},
    "split": "lucky",
    "min_fen": 1,
    "max_fen": 20_000,
    "seed": "5f1c0d…",
    "algorithm_version": 1,
    "allocation_digest": "9a0b2c…",
    "status": "draft",
    "awaiting_second_approval": False,
    "created_by": "key:Ab12Cd34",
    "approved_by": "",
    "second_approved_by": "",
    "approved_at": None,
    "created_at": "2027-01-28T02:00:00Z",
    "paid_packets": 0,
    "paid_fen": 0,
}
APPROVED_EXAMPLE = {
    "campaign": {
        **CAMPAIGN_EXAMPLE,
        "status": "approved",
        "approved_by": "key:Ab12Cd34",
        "second_approved_by": "key:Ef56Gh78",
        "approved_at": "2027-01-28T03:00:00Z",
        "paid_packets": 119,
        "paid_fen": 88_412,
    },
    "completed": True,
    "paid": 119,
    "paid_fen": 88_412,
    "skipped": [{"index": 7, "member": "wxid_bob", "amount_fen": 388, "reason": "daily_packets"}],
}
ERRORS = {
    400: schema.PROBLEM,
    401: schema.PROBLEM,
    403: schema.PROBLEM,
    404: schema.PROBLEM,
    409: schema.PROBLEM,
}
NOT_FOUND = schema.example_problem(404, "campaign_not_found", "Campaign not found")
INVALID_TRANSITION = schema.example_problem(
    409, "invalid_transition", "Not allowed in the current state"
)


# --- views ---------------------------------------------------------------------------------------


class CampaignsView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a red packet campaign (a draft): audience resolved, split stored",
        description=(
            "The audience is resolved now to its active members, sorted by their internal id; "
            "packet `i` goes to the `i`-th. Feasibility (`packets × min_fen ≤ total_fen ≤ "
            "packets × max_fen`) is checked first. The split is derived from a fresh seed and "
            "stored with its digest. Idempotent by `id`: the same body again answers the "
            "stored campaign with 200; another body is 409. Nothing is paid until approved."
        ),
        request=CampaignInputSerializer,
        responses={201: CampaignOutputSerializer, 200: CampaignOutputSerializer, **ERRORS},
        examples=[
            OpenApiExample(
                "Holiday packets for the active",
                value={
                    "id": "spring-festival-2027",
                    "kind": "holiday",
                    "title": "新春红包",
                    "total_fen": 88_800,
                    "audience": {"active_days": 30},
                    "split": "lucky",
                },
                request_only=True,
            ),
            OpenApiExample(
                "Equal split for last month's honor roll, core tier and above",
                value={
                    "id": "honor-2026-11",
                    "title": "光荣榜奖励",
                    "total_fen": 50_000,
                    "audience": {"honor_roll": "2026-11", "min_tier": "core"},
                    "split": "equal",
                    "min_fen": 100,
                },
                request_only=True,
            ),
            OpenApiExample(
                "Draft", value=CAMPAIGN_EXAMPLE, response_only=True, status_codes=["201", "200"]
            ),
            schema.example_problem(
                400,
                "invalid_campaign",
                "The campaign is invalid",
                [
                    {
                        "field": "total_fen",
                        "code": "infeasible",
                        "message": "total_fen 50 is below packets × min_fen = 120 × 1 = 120 "
                        "fen: fewer packets or a lower minimum are needed",
                    }
                ],
            ),
            schema.example_problem(409, "campaign_conflict", "Campaign id already used"),
        ],
        tags=["campaigns"],
    )
    def post(self, request: Request, community: str) -> Response:
        body = CampaignInputSerializer(data=request.data)
        refuse_unknown_fields(body, request.data)
        if isinstance(request.data, dict):
            refuse_unknown_fields(AudienceSerializer(), request.data.get("audience"), "audience.")
        body.is_valid(raise_exception=True)
        data = body.validated_data
        row, created = campaign_create(
            community=_community(request),
            client_id=data["id"],
            kind=data.get("kind", CampaignKind.CUSTOM),
            title=data["title"],
            total_fen=data["total_fen"],
            packets=data.get("packets"),
            audience=dict(data["audience"]),
            split=data["split"],
            min_fen=data.get("min_fen", DEFAULT_MIN_FEN),
            max_fen=data.get("max_fen", DEFAULT_MAX_FEN),
            actor=_actor(request),
        )
        return Response(
            _campaign(row), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class CampaignDetailView(ReadOrAdmin, APIView):  # type: ignore[misc]
    @extend_schema(
        operation_id="campaigns_retrieve",
        summary="One campaign: its split's seed and digest, its approvals, what was paid",
        responses={
            200: CampaignOutputSerializer,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("Draft", value=CAMPAIGN_EXAMPLE, response_only=True),
            NOT_FOUND,
        ],
        tags=["campaigns"],
    )
    def get(self, request: Request, community: str, campaign_id: str) -> Response:
        return Response(_campaign(campaign_get(_community(request), campaign_id)))


class CampaignApproveView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="campaigns_approve",
        summary="Approve a draft: the split is frozen and one payout requested per packet",
        description=(
            "Above the community's second-approval amount the first approval only records the "
            "approver (`awaiting_second_approval`); a different admin completes it. Completing "
            "re-checks the stored split against its digest and the monthly cash budget (409 "
            "`budget_exceeded`). A member over their daily limits (packets or fen, across "
            "campaigns) or gone is skipped and listed in `skipped`. Only a draft is approved: "
            "a second approval, even at the same moment, is 409 and pays nothing."
        ),
        request=None,
        responses={200: CampaignApprovalSerializer, **ERRORS},
        examples=[
            OpenApiExample("Approved", value=APPROVED_EXAMPLE, response_only=True),
            OpenApiExample(
                "First of two approvals",
                value={
                    "campaign": {
                        **CAMPAIGN_EXAMPLE,
                        "awaiting_second_approval": True,
                        "approved_by": "key:Ab12Cd34",
                    },
                    "completed": False,
                    "paid": 0,
                    "paid_fen": 0,
                    "skipped": [],
                },
                response_only=True,
            ),
            schema.example_problem(
                409, "budget_exceeded", "The monthly cash budget would be exceeded"
            ),
            schema.example_problem(
                409, "second_approver_required", "A second, different admin must approve"
            ),
            INVALID_TRANSITION,
            NOT_FOUND,
        ],
        tags=["campaigns"],
    )
    def post(self, request: Request, community: str, campaign_id: str) -> Response:
        result: Approval = campaign_approve(
            community=_community(request), client_id=campaign_id, actor=_actor(request)
        )
        return Response(
            {
                "campaign": _campaign(result.campaign),
                "completed": result.completed,
                "paid": result.paid,
                "paid_fen": result.paid_fen,
                "skipped": [s.as_dict() for s in result.skipped],
            }
        )


class CampaignCancelView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="campaigns_cancel",
        summary="Cancel a draft campaign (nothing was paid); audited with the reason",
        request=CancelInputSerializer,
        responses={200: CampaignOutputSerializer, **ERRORS},
        examples=[
            OpenApiExample("Request", value={"reason": "wrong audience"}, request_only=True),
            OpenApiExample(
                "Cancelled", value={**CAMPAIGN_EXAMPLE, "status": "cancelled"}, response_only=True
            ),
            INVALID_TRANSITION,
            NOT_FOUND,
        ],
        tags=["campaigns"],
    )
    def post(self, request: Request, community: str, campaign_id: str) -> Response:
        body = CancelInputSerializer(data=request.data)
        refuse_unknown_fields(body, request.data)
        body.is_valid(raise_exception=True)
        row = campaign_cancel(
            community=_community(request),
            client_id=campaign_id,
            actor=_actor(request),
            reason=body.validated_data.get("reason", ""),
        )
        return Response(_campaign(row))


class CampaignAllocationsView(APIView):
    required_scope = Scope.MEMBERS_READ

    @extend_schema(
        operation_id="campaigns_allocations",
        summary="The stored allocation in index order: each packet's member, amount, payout",
        parameters=[
            OpenApiParameter("cursor", str, required=False, description="From `next`."),
            OpenApiParameter(
                "page_size",
                int,
                required=False,
                description=f"1 to {MAX_PAGE_SIZE}; {PAGE_SIZE} by default.",
            ),
        ],
        responses={
            200: AllocationPageSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "First page",
                value={
                    "results": [
                        {
                            "index": 1,
                            "member": "wxid_alice",
                            "amount_fen": 1288,
                            "payout": {"id": 501, "status": "confirmed", "reference": "wx-1"},
                        },
                        {"index": 2, "member": "wxid_bob", "amount_fen": 388, "payout": None},
                    ],
                    "next": "https://points.example.com/api/v1/communities/acme/campaigns/"
                    "spring-festival-2027/allocations?cursor=aT0y",
                },
                response_only=True,
            ),
            NOT_FOUND,
        ],
        tags=["campaigns"],
    )
    def get(self, request: Request, community: str, campaign_id: str) -> Response:
        refuse_unknown_params(request, "cursor", "page_size")
        size = request.query_params.get("page_size")
        limit = PAGE_SIZE
        if size is not None:
            if not size.isascii() or not size.isdigit() or not 1 <= int(size) <= MAX_PAGE_SIZE:
                raise ValidationFailed(
                    "Invalid page size.",
                    [FieldError("page_size", "invalid", f"an integer from 1 to {MAX_PAGE_SIZE}")],
                )
            limit = int(size)
        after = 0
        cursor = request.query_params.get("cursor")
        if cursor is not None:
            after = cursor_decode(cursor, {"i": MAX_PACKETS}).get("i", 0)
        campaign = campaign_get(_community(request), campaign_id)
        rows = allocations_page(campaign, after_index=after, limit=limit + 1)
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            following = replace_query_param(
                request.build_absolute_uri(), "cursor", cursor_encode({"i": rows[-1]["index"]})
            )
        return Response({"results": rows, "next": following})
