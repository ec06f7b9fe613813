"""Member refresh (换血) endpoints: a month's candidates with their figures, and an operator's
decision on each (confirm or spare). Thin views over ``incentives.refresh``; scope ``admin``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from api import schema
from api.auth import request_actor as _actor
from api.auth import request_community as _community
from api.pagination import cursor_decode, cursor_encode
from api.params import refuse_unknown_fields, refuse_unknown_params
from api.serializers import StrictCharField
from incentives.honors import parse_month
from incentives.models import RefreshCandidate, RefreshStatus
from incentives.refresh import NOTE_MAX, refresh_candidates, refresh_decide
from points.exceptions import FieldError, ValidationFailed
from points.models import Community, Scope
from points.selectors import member_by_external_id
from points.timeutils import month_start, today

PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
ID_MAX = 10**18 - 1
_DATETIME = serializers.DateTimeField()


def _time(value: Any) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


def _month(value: str | None, community: Community) -> str:
    """``YYYY-MM`` (default: the community's current local month); a 400 naming ``month``."""
    if value is None:
        return f"{month_start(today(community.timezone)):%Y-%m}"
    if len(value) != 7:
        raise ValidationFailed(
            "The month is invalid.", [FieldError("month", "invalid", "must be YYYY-MM")]
        )
    return f"{parse_month(value, 'month'):%Y-%m}"


class RefreshCandidateSerializer(serializers.Serializer):
    member = serializers.CharField()
    display_name = serializers.CharField()
    month = serializers.CharField()
    status = serializers.ChoiceField(choices=RefreshStatus.choices)
    speaking_days = serializers.IntegerField(
        help_text="Local days in the window with at least one `message`."
    )
    check_in_days = serializers.IntegerField(
        help_text="Local days in the window with a counted check-in."
    )
    window_days = serializers.IntegerField()
    figures = serializers.DictField(
        help_text="The window, each figure beside its threshold, the activity measure, its "
        "percent rank among the members judged, the bottom share and the previous status."
    )
    flagged_at = serializers.DateTimeField()
    recovery_until = serializers.DateTimeField(
        allow_null=True, help_text="`at_risk` only: the end of the recovery window announced."
    )
    decided_by = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)
    note = serializers.CharField()


class RefreshPageSerializer(serializers.Serializer):
    results = RefreshCandidateSerializer(many=True)
    next = serializers.URLField(allow_null=True)


def refresh_body(row: RefreshCandidate) -> dict[str, Any]:
    return {
        "member": row.member.external_id,
        "display_name": row.member.display_name,
        "month": row.period,
        "status": row.status,
        "speaking_days": row.speaking_days,
        "check_in_days": row.check_in_days,
        "window_days": row.window_days,
        "figures": row.figures,
        "flagged_at": _time(row.flagged_at),
        "recovery_until": _time(row.recovery_until),
        "decided_by": row.decided_by,
        "decided_at": _time(row.decided_at),
        "note": row.note,
    }


EXAMPLE = {
    "member": "wxid_quiet",
    "display_name": "Quiet",
    "month": "2026-12",
    "status": "to_refresh",
    "speaking_days": 0,
    "check_in_days": 1,
    "window_days": 30,
    "figures": {
        "window_from": "2026-11-02",
        "window_to": "2026-12-01",
        "speaking_days": 0,
        "min_speaking_days": 2,
        "check_in_days": 1,
        "min_check_in_days": 4,
        "activity": 1,
        "percent_rank": 0.0312,
        "bottom_share": 0.2,
        "judged": 420,
        "previous": "at_risk",
    },
    "flagged_at": "2026-12-01T00:37:00+08:00",
    "recovery_until": None,
    "decided_by": "",
    "decided_at": None,
    "note": "",
}
NOT_FOUND = schema.example_problem(
    404, "refresh_candidate_not_found", "Refresh candidate not found"
)
NOT_DECIDABLE = schema.example_problem(
    409, "refresh_not_decidable", "The refresh candidate cannot be decided so"
)


class RefreshCandidatesView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="refresh_candidates_list",
        summary="A month's refresh (换血) candidates with the figures behind each, least active "
        "first",
        description=(
            "Written by the monthly refresh job (docs/incentives.md): members under both the "
            "speaking-days and the check-in-days thresholds and in the community's bottom share "
            "by activity; `at_risk` the first month (warned, with a recovery window), "
            "`to_refresh` when still flagged the next month, then `confirmed` or `spared` by an "
            "operator."
        ),
        parameters=[
            OpenApiParameter(
                "month",
                str,
                required=False,
                description="YYYY-MM (default: the community's current local month).",
            ),
            OpenApiParameter("status", str, enum=RefreshStatus.values, required=False),
            OpenApiParameter("cursor", str, required=False, description="From `next`."),
            OpenApiParameter(
                "page_size",
                int,
                required=False,
                description=f"1 to {MAX_PAGE_SIZE}; {PAGE_SIZE} by default.",
            ),
        ],
        responses={
            200: RefreshPageSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Candidates", value={"results": [EXAMPLE], "next": None}, response_only=True
            )
        ],
        tags=["incentives"],
    )
    def get(self, request: Request, community: str) -> Response:
        params = request.query_params
        refuse_unknown_params(request, "month", "status", "cursor", "page_size")
        found = _community(request)
        month = _month(params.get("month"), found)
        status = params.get("status")
        if status is not None and status not in RefreshStatus.values:
            raise ValidationFailed(
                "Invalid filter.",
                [FieldError("status", "invalid_choice", f"must be one of {RefreshStatus.values}")],
            )
        limit = PAGE_SIZE
        size = params.get("page_size")
        if size is not None:
            if not size.isascii() or not size.isdigit() or not 1 <= int(size) <= MAX_PAGE_SIZE:
                raise ValidationFailed(
                    "Invalid page size.",
                    [FieldError("page_size", "invalid", f"an integer from 1 to {MAX_PAGE_SIZE}")],
                )
            limit = int(size)
        cursor = params.get("cursor")
        after = 0 if cursor is None else cursor_decode(cursor, {"i": ID_MAX}).get("i", 0)
        rows = list(refresh_candidates(found, month, status, after_id=after)[: limit + 1])
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            following = replace_query_param(
                request.build_absolute_uri(), "cursor", cursor_encode({"i": rows[-1].pk})
            )
        return Response({"results": [refresh_body(r) for r in rows], "next": following})


class RefreshDecisionInputSerializer(serializers.Serializer):
    month = StrictCharField(max_length=7, help_text="YYYY-MM: the month of the candidate's row.")
    note = StrictCharField(max_length=NOTE_MAX, required=False, allow_blank=True)


class _RefreshDecisionView(APIView):
    required_scope = Scope.ADMIN
    decision = ""

    def post(self, request: Request, community: str, member: str) -> Response:
        body = RefreshDecisionInputSerializer(data=request.data)
        refuse_unknown_fields(body, request.data)
        body.is_valid(raise_exception=True)
        found = _community(request)
        month = _month(body.validated_data["month"], found)
        row = refresh_decide(
            community=found,
            member=member_by_external_id(found, member),
            period=month,
            decision=self.decision,
            actor=_actor(request),
            note=body.validated_data.get("note", ""),
        )
        return Response(refresh_body(row))


_DECISION_RESPONSES = {
    200: RefreshCandidateSerializer,
    400: schema.PROBLEM,
    401: schema.PROBLEM,
    403: schema.PROBLEM,
    404: schema.PROBLEM,
    409: schema.PROBLEM,
}


class RefreshConfirmView(_RefreshDecisionView):
    decision = "confirm"

    @extend_schema(
        operation_id="refresh_candidates_confirm",
        summary="Confirm a `to_refresh` member's removal (audited; announced as "
        "refresh.confirmed so that a bot removes them)",
        request=RefreshDecisionInputSerializer,
        responses=_DECISION_RESPONSES,
        examples=[
            OpenApiExample(
                "Confirm",
                value={"month": "2026-12", "note": "silent since August"},
                request_only=True,
            ),
            OpenApiExample(
                "Confirmed",
                value={
                    **EXAMPLE,
                    "status": "confirmed",
                    "decided_by": "key:Ab12Cd34",
                    "decided_at": "2026-12-02T10:00:00+08:00",
                    "note": "silent since August",
                },
                response_only=True,
            ),
            NOT_FOUND,
            NOT_DECIDABLE,
        ],
        tags=["incentives"],
    )
    def post(self, request: Request, community: str, member: str) -> Response:
        return super().post(request, community, member)


class RefreshSpareView(_RefreshDecisionView):
    decision = "spare"

    @extend_schema(
        operation_id="refresh_candidates_spare",
        summary="Spare an `at_risk` or `to_refresh` member (audited; they stay)",
        request=RefreshDecisionInputSerializer,
        responses=_DECISION_RESPONSES,
        examples=[
            OpenApiExample(
                "Spare",
                value={"month": "2026-12", "note": "on parental leave"},
                request_only=True,
            ),
            NOT_FOUND,
            NOT_DECIDABLE,
        ],
        tags=["incentives"],
    )
    def post(self, request: Request, community: str, member: str) -> Response:
        return super().post(request, community, member)
