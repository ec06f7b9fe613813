"""Rewards endpoints: the catalog (and what a member may redeem), redemptions and their admin
steps, payouts confirmed by the paying bot. Thin views over ``rewards``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_actor as _actor
from api.auth import request_community as _community
from api.errors import say
from api.params import choice_param, refuse_unknown_params
from api.serializers import (
    AwareDateTimeField,
    MemberIdField,
    StrictBooleanField,
    StrictCharField,
    StrictRegexField,
    timestamp,
)
from points.exceptions import DomainError, FieldError, ValidationFailed
from points.ingest import member_id_problem
from points.models import Scope
from points.selectors import member_by_external_id
from rewards.catalog import (
    RewardInput,
    VariantInput,
    catalog,
    catalog_for_member,
    reward_by_code,
    reward_save,
)
from rewards.models import PayoutStatus, RedemptionStatus, Reward, RewardKind
from rewards.payouts import (
    payout_body,
    payout_cancel,
    payout_confirm,
    payout_fail,
    payout_get,
    payout_retry,
    payouts,
)
from rewards.redemptions import (
    QUANTITY_MAX,
    RedemptionRequest,
    redemption_approve,
    redemption_body,
    redemption_cancel,
    redemption_fulfil,
    redemption_get,
    redemption_reject,
    redemption_request,
    rejection_reason_check,
)
from rewards.selectors import MemberContext, member_contexts

LIST_LIMIT = 500


def _member_param(request: Request) -> str:
    """``?member=``, refused (400 naming it) unless it could be a member id."""
    value = request.query_params.get("member", "")
    problem = member_id_problem(value)
    if problem:
        raise ValidationFailed(
            "Invalid member.", [FieldError("member", "invalid_member_id", problem)]
        )
    return value


def _times(body: dict[str, Any]) -> dict[str, Any]:
    return {
        key: timestamp(value) if key.endswith("_at") and value is not None else value
        for key, value in body.items()
    }


# --- catalog -------------------------------------------------------------------------------------


class VariantSerializer(serializers.Serializer):
    code = StrictRegexField(r"^[a-z0-9][a-z0-9_-]{0,63}$")
    label = StrictCharField(max_length=100)  # type: ignore[assignment]
    stock = serializers.IntegerField(min_value=0, max_value=2**31 - 1)


class RewardInputSerializer(serializers.Serializer):
    code = StrictRegexField(r"^[a-z0-9][a-z0-9_-]{0,63}$", help_text="Your id for the item.")
    kind = serializers.ChoiceField(choices=RewardKind.choices)
    title = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, max_length=5000)
    image_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    cost_points = serializers.IntegerField(min_value=1, max_value=100_000_000)
    value_fen = serializers.IntegerField(
        min_value=0, max_value=10**10, required=False, help_text="A red packet's amount (fen)."
    )
    min_tier = StrictCharField(required=False, allow_blank=True, max_length=32)
    honor_months = serializers.IntegerField(min_value=0, max_value=24, required=False)
    limit_per_month = serializers.IntegerField(
        min_value=1, max_value=10_000, required=False, allow_null=True
    )
    available_from = AwareDateTimeField(required=False, allow_null=True)
    available_until = AwareDateTimeField(required=False, allow_null=True)
    active = StrictBooleanField(required=False)
    variants = VariantSerializer(many=True, required=False, help_text="Merch only.")

    def to_input(self) -> RewardInput:
        data = self.validated_data
        return RewardInput(
            code=data["code"],
            kind=data["kind"],
            title=data["title"],
            cost_points=data["cost_points"],
            value_fen=data.get("value_fen", 0),
            description=data.get("description", ""),
            image_url=data.get("image_url", ""),
            min_tier=data.get("min_tier", ""),
            honor_months=data.get("honor_months", 0),
            limit_per_month=data.get("limit_per_month"),
            available_from=data.get("available_from"),
            available_until=data.get("available_until"),
            active=data.get("active", True),
            variants=tuple(
                VariantInput(v["code"], v["label"], v["stock"]) for v in data.get("variants", [])
            ),
        )


class VariantOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    stock = serializers.IntegerField()
    available = serializers.IntegerField()


class RefusalSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class RewardOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    kind = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    image_url = serializers.CharField()
    cost_points = serializers.IntegerField()
    value_fen = serializers.IntegerField()
    min_tier = serializers.CharField()
    honor_months = serializers.IntegerField()
    limit_per_month = serializers.IntegerField(allow_null=True)
    available_from = serializers.DateTimeField(allow_null=True)
    available_until = serializers.DateTimeField(allow_null=True)
    active = serializers.BooleanField()
    variants = VariantOutputSerializer(many=True)
    eligible = serializers.BooleanField(
        required=False, help_text="With ?member=: whether that member may redeem it now."
    )
    refusals = RefusalSerializer(many=True, required=False, help_text="With ?member=: why not.")


class CatalogSerializer(serializers.Serializer):
    results = RewardOutputSerializer(many=True)


def reward_body(reward: Reward, variants: list[Any] | None = None) -> dict[str, Any]:
    variants = variants if variants is not None else list(reward.variants.all())
    return {
        "code": reward.code,
        "kind": reward.kind,
        "title": reward.title,
        "description": reward.description,
        "image_url": reward.image_url,
        "cost_points": reward.cost_points,
        "value_fen": reward.value_fen,
        "min_tier": reward.min_tier,
        "honor_months": reward.honor_months,
        "limit_per_month": reward.limit_per_month,
        "available_from": timestamp(reward.available_from) if reward.available_from else None,
        "available_until": timestamp(reward.available_until) if reward.available_until else None,
        "active": reward.active,
        "variants": [
            {"code": v.code, "label": v.label, "stock": v.stock, "available": v.available}
            for v in sorted(variants, key=lambda v: v.code)
        ],
    }


REWARD_EXAMPLE = {
    "code": "hoodie-2026",
    "kind": "merch",
    "title": "社群卫衣 Community hoodie",
    "description": "Only for members with a clear contribution.",
    "image_url": "",
    "cost_points": 800,
    "value_fen": 0,
    "min_tier": "core",
    "honor_months": 3,
    "limit_per_month": 1,
    "available_from": None,
    "available_until": None,
    "active": True,
    "variants": [{"code": "m", "label": "M", "stock": 20, "available": 18}],
}


class RewardsView(APIView):
    @property
    def required_scope(self) -> str:
        return Scope.MEMBERS_READ if self.request.method == "GET" else Scope.ADMIN

    @extend_schema(
        operation_id="rewards_list",
        summary="The catalog; with ?member=, what that member may redeem and why not",
        parameters=[OpenApiParameter("member", str, required=False)],
        responses={
            200: CatalogSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "For a member",
                value={
                    "results": [
                        {
                            **REWARD_EXAMPLE,
                            "eligible": False,
                            "refusals": [
                                {"code": "tier_too_low", "message": "needs tier core (Core)"}
                            ],
                        }
                    ]
                },
                response_only=True,
            )
        ],
        tags=["rewards"],
    )
    def get(self, request: Request, community: str) -> Response:
        refuse_unknown_params(request, "member")
        if "member" not in request.query_params:
            return Response({"results": [reward_body(r) for r in catalog(_community(request))]})
        member = member_by_external_id(_community(request), _member_param(request))
        rows = []
        for item in catalog_for_member(member):
            body = reward_body(item["reward"], item["variants"])
            body["eligible"] = item["eligible"]
            body["refusals"] = [{"code": r.code, "message": r.message} for r in item["refusals"]]
            rows.append(body)
        return Response({"results": rows})

    @extend_schema(
        operation_id="rewards_create",
        summary="Add a catalog item (scope admin; audited)",
        request=RewardInputSerializer,
        responses={
            201: RewardOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Merch",
                value={k: v for k, v in REWARD_EXAMPLE.items() if k != "variants"}
                | {"variants": [{"code": "m", "label": "M", "stock": 20}]},
                request_only=True,
            ),
            OpenApiExample("Created", value=REWARD_EXAMPLE, response_only=True),
        ],
        tags=["rewards"],
    )
    def post(self, request: Request, community: str) -> Response:
        body = RewardInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reward = reward_save(
            community=_community(request), item=body.to_input(), actor=_actor(request), create=True
        )
        return Response(reward_body(reward), status=status.HTTP_201_CREATED)


class RewardDetailView(APIView):
    @property
    def required_scope(self) -> str:
        return Scope.MEMBERS_READ if self.request.method == "GET" else Scope.ADMIN

    @extend_schema(
        operation_id="rewards_retrieve",
        summary="One catalog item",
        responses={
            200: RewardOutputSerializer,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[OpenApiExample("Item", value=REWARD_EXAMPLE, response_only=True)],
        tags=["rewards"],
    )
    def get(self, request: Request, community: str, code: str) -> Response:
        return Response(reward_body(reward_by_code(_community(request), code)))

    @extend_schema(
        operation_id="rewards_update",
        summary="Change a catalog item: send the fields that change (scope admin; audited)",
        description="Stock can be set per variant, never below what pending redemptions reserve.",
        request=RewardInputSerializer(partial=True),
        responses={
            200: RewardOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Restock",
                value={"variants": [{"code": "m", "label": "M", "stock": 50}]},
                request_only=True,
            ),
            OpenApiExample("Updated", value=REWARD_EXAMPLE, response_only=True),
        ],
        tags=["rewards"],
    )
    def patch(self, request: Request, community: str, code: str) -> Response:
        current = reward_body(reward_by_code(_community(request), code))
        if not isinstance(request.data, dict):
            raise ValidationFailed("Invalid request.", [FieldError("", "invalid", "an object")])
        merged = {
            key: value
            for key, value in current.items()
            if key not in ("variants",) and value is not None
        }
        merged["variants"] = [
            {"code": v["code"], "label": v["label"], "stock": v["stock"]}
            for v in current["variants"]
        ]
        merged.update(request.data)
        merged["code"] = code
        body = RewardInputSerializer(data=merged)
        body.is_valid(raise_exception=True)
        reward = reward_save(
            community=_community(request),
            item=body.to_input(),
            actor=_actor(request),
            create=False,
        )
        return Response(reward_body(reward))


# --- redemptions ---------------------------------------------------------------------------------


class ShippingSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    phone = StrictCharField(max_length=40)
    address = StrictCharField(max_length=500)


class RedemptionInputSerializer(serializers.Serializer):
    id = StrictRegexField(r"^\S{1,128}$", help_text="Your id: a retry with the same body replays.")
    member = MemberIdField()
    reward = StrictCharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=QUANTITY_MAX, required=False)
    variant = StrictCharField(max_length=64, required=False)
    shipping = ShippingSerializer(required=False, help_text="Merch: where to send it.")

    def to_request(self) -> RedemptionRequest:
        data = self.validated_data
        return RedemptionRequest(
            client_id=data["id"],
            member=data["member"],
            reward=data["reward"],
            quantity=data.get("quantity", 1),
            variant=data.get("variant", ""),
            shipping=dict(data["shipping"]) if data.get("shipping") else None,
        )


class RedemptionOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    member = serializers.CharField()
    reward = serializers.CharField()
    variant = serializers.CharField(allow_null=True)
    quantity = serializers.IntegerField()
    points = serializers.IntegerField()
    value_fen = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RedemptionStatus.choices)
    awaiting_second_approval = serializers.BooleanField()
    approved_by = serializers.CharField()
    second_approved_by = serializers.CharField()
    decided_by = serializers.CharField()
    reason = serializers.CharField()
    payout_reference = serializers.CharField()
    tracking_number = serializers.CharField()
    shipping = ShippingSerializer(allow_null=True)
    channel = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class RedemptionListSerializer(serializers.Serializer):
    results = RedemptionOutputSerializer(many=True)


REDEMPTION_EXAMPLE = {
    "id": "redeem-20261202-0001",
    "member": "wxid_alice",
    "reward": "hoodie-2026",
    "variant": "m",
    "quantity": 1,
    "points": 800,
    "value_fen": 0,
    "status": "requested",
    "awaiting_second_approval": False,
    "approved_by": "",
    "second_approved_by": "",
    "decided_by": "",
    "reason": "",
    "payout_reference": "",
    "tracking_number": "",
    "shipping": {"name": "Alice", "phone": "138-0000-0000", "address": "上海市…"},
    "channel": "bot",
    "created_at": "2026-12-02T02:00:00Z",
    "updated_at": "2026-12-02T02:00:00Z",
}


def _redemption(row: Any) -> dict[str, Any]:
    return _times(redemption_body(row))


class RedemptionsView(APIView):
    @property
    def required_scope(self) -> str:
        return Scope.ADMIN if self.request.method == "GET" else Scope.REWARDS_WRITE

    @extend_schema(
        operation_id="redemptions_create",
        summary="Request a redemption: points held, stock reserved, then an admin decides",
        description=(
            "Idempotent by `id`: the same body again answers the stored redemption with 200; "
            "another body is 409. A refusal (not eligible, not enough points, out of stock) "
            "stores nothing."
        ),
        request=RedemptionInputSerializer,
        responses={
            201: RedemptionOutputSerializer,
            200: RedemptionOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Hoodie",
                value={
                    "id": "redeem-20261202-0001",
                    "member": "wxid_alice",
                    "reward": "hoodie-2026",
                    "variant": "m",
                    "shipping": {"name": "Alice", "phone": "138-0000-0000", "address": "上海市…"},
                },
                request_only=True,
            ),
            OpenApiExample(
                "Pending", value=REDEMPTION_EXAMPLE, response_only=True, status_codes=["201", "200"]
            ),
            schema.example_problem(409, "out_of_stock", "Out of stock"),
        ],
        tags=["rewards"],
    )
    def post(self, request: Request, community: str) -> Response:
        body = RedemptionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row, created = redemption_request(
            community=_community(request), item=body.to_request(), actor=_actor(request)
        )
        return Response(
            _redemption(row), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="redemptions_list",
        summary="Redemptions, newest first (the approval queue: ?status=requested)",
        parameters=[
            OpenApiParameter("status", str, enum=RedemptionStatus.values, required=False),
            OpenApiParameter("member", str, required=False),
        ],
        responses={
            200: RedemptionListSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("Queue", value={"results": [REDEMPTION_EXAMPLE]}, response_only=True)
        ],
        tags=["rewards"],
    )
    def get(self, request: Request, community: str) -> Response:
        from rewards.models import Redemption

        refuse_unknown_params(request, "status", "member")
        wanted = choice_param(request, "status", list(RedemptionStatus.values))
        rows = Redemption.objects.filter(community=_community(request)).select_related(
            "member", "reward", "variant"
        )
        if wanted:
            rows = rows.filter(status=wanted)
        if "member" in request.query_params:
            rows = rows.filter(member__external_id=_member_param(request))
        page = list(rows.select_related("member__community").order_by("-id")[:LIST_LIMIT])
        contexts = member_contexts([r.member for r in page])
        return Response(
            {
                "results": [
                    {**_redemption(r), "member_context": _context(contexts[r.member_id])}
                    for r in page
                ]
            }
        )


def _context(found: MemberContext) -> dict[str, Any]:
    return {
        "tier": found.tier,
        "koc": found.koc,
        "last_event_at": timestamp(found.last_event_at) if found.last_event_at else None,
        "month": found.month,
        "points_this_month": found.points_this_month,
        "redemptions": found.redemptions,
        "honors": [{"month": m, "category": c, "rank": r} for m, c, r in found.honors],
    }


class MemberContextSerializer(serializers.Serializer):
    tier = serializers.CharField()
    koc = serializers.BooleanField()
    last_event_at = serializers.DateTimeField(allow_null=True)
    month = serializers.CharField()
    points_this_month = serializers.IntegerField()
    redemptions = serializers.DictField(
        child=serializers.IntegerField(), help_text="The member's redemptions by status."
    )
    honors = serializers.ListField(child=serializers.DictField())


class QueuedRedemptionSerializer(RedemptionOutputSerializer):
    member_context = MemberContextSerializer(
        help_text="What an admin weighs: tier, KOC, activity, earlier redemptions, honors."
    )


class RedemptionQueueSerializer(serializers.Serializer):
    results = QueuedRedemptionSerializer(many=True)


class BulkDecisionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["approve", "reject"])
    ids = serializers.ListField(
        child=StrictRegexField(r"^\S{1,128}$"), min_length=1, max_length=200
    )
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class BulkOutcomeSerializer(serializers.Serializer):
    id = serializers.CharField()
    ok = serializers.BooleanField()
    status = serializers.CharField(allow_null=True)
    error = serializers.DictField(allow_null=True)


class BulkResultSerializer(serializers.Serializer):
    results = BulkOutcomeSerializer(many=True)


class RedemptionBulkView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="redemptions_decide",
        summary="Approve or reject several pending redemptions (each on its own)",
        description=(
            "Each id is decided in its own transaction, as one approve or reject would be: a "
            "refused one (wrong state, the same admin twice, budget) carries its error and the "
            "others go ahead. Rejecting needs a reason."
        ),
        request=BulkDecisionSerializer,
        responses={
            200: BulkResultSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Approve two",
                value={"action": "approve", "ids": ["r-1", "r-2"]},
                request_only=True,
            ),
            OpenApiExample(
                "Outcomes",
                value={
                    "results": [
                        {"id": "r-1", "ok": True, "status": "approved", "error": None},
                        {
                            "id": "r-2",
                            "ok": False,
                            "status": None,
                            "error": {
                                "code": "invalid_transition",
                                "message": "Redemption 'r-2' is rejected; this step "
                                "needs requested.",
                            },
                        },
                    ]
                },
                response_only=True,
            ),
        ],
        tags=["rewards"],
    )
    def post(self, request: Request, community: str) -> Response:
        body = BulkDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data["action"] == "reject":
            rejection_reason_check(data.get("reason", ""))
        results = []
        for client_id in dict.fromkeys(data["ids"]):
            try:
                if data["action"] == "approve":
                    row = redemption_approve(
                        community=_community(request), client_id=client_id, actor=_actor(request)
                    )
                else:
                    row = redemption_reject(
                        community=_community(request),
                        client_id=client_id,
                        actor=_actor(request),
                        reason=data["reason"],
                    )
            except DomainError as exc:
                results.append(
                    {
                        "id": client_id,
                        "ok": False,
                        "status": None,
                        "error": {"code": exc.code, "message": say(exc.detail)},
                    }
                )
                continue
            results.append({"id": client_id, "ok": True, "status": row.status, "error": None})
        return Response({"results": results})


class RedemptionDetailView(APIView):
    required_scope = Scope.REWARDS_WRITE

    @extend_schema(
        operation_id="redemptions_retrieve",
        summary="One redemption",
        responses={
            200: RedemptionOutputSerializer,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[OpenApiExample("Pending", value=REDEMPTION_EXAMPLE, response_only=True)],
        tags=["rewards"],
    )
    def get(self, request: Request, community: str, redemption_id: str) -> Response:
        return Response(_redemption(redemption_get(_community(request), redemption_id)))


class ReasonSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500, required=False, allow_blank=True)


class FulfilSerializer(serializers.Serializer):
    payout_reference = StrictCharField(max_length=200, required=False, allow_blank=True)
    tracking_number = StrictCharField(max_length=200, required=False, allow_blank=True)


def _step_schema(
    operation_id: str, summary: str, request: Any, example: dict[str, Any], status_word: str
) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        request=request,
        responses={
            200: RedemptionOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("Request", value=example, request_only=True),
            OpenApiExample(
                "Result", value={**REDEMPTION_EXAMPLE, "status": status_word}, response_only=True
            ),
            schema.example_problem(409, "invalid_transition", "Not allowed in the current state"),
        ],
        tags=["rewards"],
    )


class RedemptionApproveView(APIView):
    required_scope = Scope.ADMIN

    @_step_schema(
        "redemptions_approve",
        "Approve (points spent, stock taken; a red packet's payout requested). Above the "
        "community's amount a second, different admin must approve too.",
        None,
        {},
        "approved",
    )
    def post(self, request: Request, community: str, redemption_id: str) -> Response:
        row = redemption_approve(
            community=_community(request), client_id=redemption_id, actor=_actor(request)
        )
        return Response(_redemption(redemption_get(_community(request), row.client_id)))


class RedemptionRejectView(APIView):
    required_scope = Scope.ADMIN

    @_step_schema(
        "redemptions_reject",
        "Reject with a reason (points and stock released)",
        ReasonSerializer,
        {"reason": "address outside mainland China"},
        "rejected",
    )
    def post(self, request: Request, community: str, redemption_id: str) -> Response:
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        redemption_reject(
            community=_community(request),
            client_id=redemption_id,
            actor=_actor(request),
            reason=body.validated_data.get("reason", ""),
        )
        return Response(_redemption(redemption_get(_community(request), redemption_id)))


class RedemptionCancelView(APIView):
    required_scope = Scope.REWARDS_WRITE

    @_step_schema(
        "redemptions_cancel",
        "Cancel a pending redemption (points and stock released)",
        ReasonSerializer,
        {"reason": "changed my mind"},
        "cancelled",
    )
    def post(self, request: Request, community: str, redemption_id: str) -> Response:
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        redemption_cancel(
            community=_community(request),
            client_id=redemption_id,
            actor=_actor(request),
            reason=body.validated_data.get("reason", ""),
        )
        return Response(_redemption(redemption_get(_community(request), redemption_id)))


class RedemptionFulfilView(APIView):
    required_scope = Scope.ADMIN

    @_step_schema(
        "redemptions_fulfil",
        "Fulfil an approved redemption: a tracking number (merch) or the payout "
        "reference (red packet)",
        FulfilSerializer,
        {"tracking_number": "SF1234567890"},
        "fulfilled",
    )
    def post(self, request: Request, community: str, redemption_id: str) -> Response:
        body = FulfilSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        redemption_fulfil(
            community=_community(request),
            client_id=redemption_id,
            actor=_actor(request),
            reference=body.validated_data.get("payout_reference", ""),
            tracking_number=body.validated_data.get("tracking_number", ""),
        )
        return Response(_redemption(redemption_get(_community(request), redemption_id)))


# --- payouts -------------------------------------------------------------------------------------


class PayoutOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    member = serializers.CharField()
    amount_fen = serializers.IntegerField()
    status = serializers.ChoiceField(choices=PayoutStatus.choices)
    reference = serializers.CharField()
    attempts = serializers.IntegerField()
    failure = serializers.CharField()
    redemption = serializers.CharField(allow_null=True)
    campaign = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PayoutListSerializer(serializers.Serializer):
    results = PayoutOutputSerializer(many=True)


PAYOUT_EXAMPLE = {
    "id": 42,
    "member": "wxid_alice",
    "amount_fen": 500,
    "status": "requested",
    "reference": "",
    "attempts": 1,
    "failure": "",
    "redemption": "redeem-20261202-0002",
    "campaign": None,
    "created_at": "2026-12-02T02:00:00Z",
    "updated_at": "2026-12-02T02:00:00Z",
}


class PayoutsView(APIView):
    required_scope = Scope.REWARDS_WRITE

    @extend_schema(
        operation_id="payouts_list",
        summary="Payouts for the paying bot, newest first (?status=requested: what to pay)",
        parameters=[OpenApiParameter("status", str, enum=PayoutStatus.values, required=False)],
        responses={
            200: PayoutListSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("To pay", value={"results": [PAYOUT_EXAMPLE]}, response_only=True)
        ],
        tags=["rewards"],
    )
    def get(self, request: Request, community: str) -> Response:
        refuse_unknown_params(request, "status")
        wanted = choice_param(request, "status", list(PayoutStatus.values))
        rows = payouts(_community(request), wanted)[:LIST_LIMIT]
        return Response({"results": [_times(payout_body(r)) for r in rows]})


class ReferenceSerializer(serializers.Serializer):
    reference = StrictCharField(max_length=200, help_text="The payment's reference.")


class FailureSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=500)


def _payout_schema(
    operation_id: str, summary: str, request: Any, example: dict[str, Any], status_word: str
) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        request=request,
        responses={
            200: PayoutOutputSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
        },
        examples=[
            OpenApiExample("Request", value=example, request_only=True),
            OpenApiExample(
                "Result", value={**PAYOUT_EXAMPLE, "status": status_word}, response_only=True
            ),
            schema.example_problem(409, "invalid_transition", "Not allowed in the current state"),
        ],
        tags=["rewards"],
    )


def _payout_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "³".isdigit() is True
        raise ValidationFailed("Invalid payout id.", [FieldError("id", "invalid", "an integer")])
    return int(value)


class PayoutConfirmView(APIView):
    required_scope = Scope.REWARDS_WRITE

    @_payout_schema(
        "payouts_confirm",
        "The bot paid: confirm with the payment reference (idempotent; a red packet "
        "redemption becomes fulfilled)",
        ReferenceSerializer,
        {"reference": "wxpay-4200001234"},
        "confirmed",
    )
    def post(self, request: Request, community: str, payout_id: str) -> Response:
        body = ReferenceSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row, _ = payout_confirm(
            community=_community(request),
            payout_id=_payout_id(payout_id),
            reference=body.validated_data["reference"],
            actor=_actor(request),
        )
        return Response(_times(payout_body(payout_get(_community(request), row.pk))))


class PayoutFailView(APIView):
    required_scope = Scope.REWARDS_WRITE

    @_payout_schema(
        "payouts_fail",
        "The bot could not pay (retry or cancel follows)",
        FailureSerializer,
        {"reason": "recipient has no real-name WeChat Pay"},
        "failed",
    )
    def post(self, request: Request, community: str, payout_id: str) -> Response:
        body = FailureSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row = payout_fail(
            community=_community(request),
            payout_id=_payout_id(payout_id),
            reason=body.validated_data["reason"],
            actor=_actor(request),
        )
        return Response(_times(payout_body(payout_get(_community(request), row.pk))))


class PayoutRetryView(APIView):
    required_scope = Scope.ADMIN

    @_payout_schema("payouts_retry", "Ask the bot again for a failed payout", None, {}, "requested")
    def post(self, request: Request, community: str, payout_id: str) -> Response:
        row = payout_retry(
            community=_community(request), payout_id=_payout_id(payout_id), actor=_actor(request)
        )
        return Response(_times(payout_body(payout_get(_community(request), row.pk))))


class PayoutCancelView(APIView):
    required_scope = Scope.ADMIN

    @_payout_schema(
        "payouts_cancel",
        "Give up a failed payout (a red packet redemption's points come back)",
        FailureSerializer,
        {"reason": "member left before being paid"},
        "cancelled",
    )
    def post(self, request: Request, community: str, payout_id: str) -> Response:
        body = FailureSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row = payout_cancel(
            community=_community(request),
            payout_id=_payout_id(payout_id),
            actor=_actor(request),
            reason=body.validated_data["reason"],
        )
        return Response(_times(payout_body(payout_get(_community(request), row.pk))))
