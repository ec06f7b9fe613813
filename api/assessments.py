"""Assessment round endpoints (群门槛 / reviews): open a round, read it, give the owner's scores,
read the results with every part, close it (results frozen). Thin views over
``incentives.assessments``; every operation needs the ``admin`` scope (results show who
failed and the owner's scores)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_actor as _actor
from api.auth import request_community as _community
from api.params import refuse_unknown_fields, refuse_unknown_params
from api.serializers import (
    AwareDateTimeField,
    MemberIdField,
    StrictCharField,
    StrictRegexField,
    timestamp,
)
from incentives.assessments import (
    BAYES_M,
    DEFAULT_ACTIVITY,
    MAX_MEMBERS,
    MAX_UNITS,
    TRIM_MIN_RATERS,
    assessment_close,
    assessment_get,
    assessment_members,
    assessment_open,
    assessment_results,
    owner_scores_set,
)
from incentives.models import Assessment, AssessmentStatus
from points.models import Scope

TAGS = ["assessments"]


class _StrictFloatField(serializers.FloatField):
    """A JSON number only: ``"0.5"`` or ``true`` are refused, not coerced."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


class _StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: ``"4"``, ``4.0`` or ``true`` are refused, not coerced."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


# --- serializers ---------------------------------------------------------------------------------


def _units_field(key: str, counted: str) -> serializers.Field:
    return _StrictIntegerField(
        min_value=0,
        max_value=MAX_UNITS,
        required=False,
        help_text=f"Units per {counted}; {DEFAULT_ACTIVITY[key]} by default.",
    )


class ActivityUnitsSerializer(serializers.Serializer):
    check_in = _units_field("check_in", "local day with a check-in")
    share = _units_field("share", "share (a repeated content once)")
    invite = _units_field("invite", "invitee who joined")
    help = _units_field("help", "help event")
    cap = _StrictIntegerField(
        min_value=1,
        max_value=100_000,
        required=False,
        help_text="Units that make an activity score of 100; "
        f"{DEFAULT_ACTIVITY['cap']} by default.",
    )


def _weight_field(name: str) -> serializers.Field:
    return _StrictFloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        help_text=f"0 to 1; the community's {name} by default. Weights are normalised over the "
        "parts a member has.",
    )


class AssessmentInputSerializer(serializers.Serializer):
    id = StrictRegexField(
        r"^[^\s/]{1,128}$",
        max_length=128,
        help_text="Your id for the round (no spaces or '/'): a retry with the same body replays.",
    )
    title = StrictCharField(max_length=200)
    members = serializers.ListField(
        child=MemberIdField(),
        min_length=1,
        max_length=MAX_MEMBERS,
        help_text=f"The members assessed (1 to {MAX_MEMBERS}), each once.",
    )
    window_start = AwareDateTimeField(help_text="Peer scores and activity count from here …")
    window_end = AwareDateTimeField(help_text="… to here (excluded); at most 366 days later.")
    w_peer = _weight_field("w_peer (0.6)")
    w_owner = _weight_field("w_owner (0.4)")
    w_activity = _weight_field("w_activity (0)")
    pass_mark = _StrictFloatField(
        min_value=0.0,
        max_value=100.0,
        required=False,
        help_text="0 to 100; the community's pass mark (60) by default.",
    )
    activity = ActivityUnitsSerializer(
        required=False, help_text="Merged key by key with the community's units."
    )


class AssessmentMemberSerializer(serializers.Serializer):
    member = serializers.CharField()
    display_name = serializers.CharField()
    owner_score = serializers.IntegerField(allow_null=True, help_text="1-5; null until given.")
    owner_scored_by = serializers.CharField()
    owner_scored_at = serializers.DateTimeField(allow_null=True)


class ActivityDocumentSerializer(serializers.Serializer):
    check_in = serializers.IntegerField()
    share = serializers.IntegerField()
    invite = serializers.IntegerField()
    help = serializers.IntegerField()
    cap = serializers.IntegerField()


class AssessmentOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    status = serializers.ChoiceField(choices=AssessmentStatus.choices)
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    w_peer = serializers.FloatField()
    w_owner = serializers.FloatField()
    w_activity = serializers.FloatField()
    pass_mark = serializers.FloatField()
    activity = ActivityDocumentSerializer()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    members = AssessmentMemberSerializer(many=True)


class OwnerScoresInputSerializer(serializers.Serializer):
    scores = serializers.DictField(
        child=_StrictIntegerField(min_value=1, max_value=5),
        allow_empty=False,
        help_text="Member id → the owner's score, an integer 1 to 5. Members of the round only.",
    )


class PeerPartSerializer(serializers.Serializer):
    ratings = serializers.IntegerField(
        help_text="peer_score events about the member in the window (repeats included)."
    )
    self_ratings_ignored = serializers.IntegerField()
    raters = serializers.IntegerField(help_text="Distinct raters: one rating each counts.")
    scores = serializers.ListField(
        child=serializers.IntegerField(), help_text="The counted (latest) ratings, 1-5, sorted."
    )
    method = serializers.ChoiceField(
        choices=["trimmed_mean", "bayesian"],
        allow_null=True,
        help_text=f"trimmed_mean from {TRIM_MIN_RATERS} raters, else bayesian; null: no rater.",
    )
    mean = serializers.FloatField(allow_null=True, help_text="Plain mean, 0-100.")
    score = serializers.FloatField(allow_null=True, help_text="0-100; null: no rater.")


class OwnerPartSerializer(serializers.Serializer):
    score_1_5 = serializers.IntegerField(allow_null=True)
    score = serializers.FloatField(allow_null=True, help_text="0-100; null until given.")
    scored_by = serializers.CharField()
    scored_at = serializers.DateTimeField(allow_null=True)


class ActivityCountsSerializer(serializers.Serializer):
    check_in = serializers.IntegerField(help_text="Local days with a check-in.")
    share = serializers.IntegerField(help_text="Shares, a repeated content counted once.")
    invite = serializers.IntegerField(help_text="Invitees who joined in the window.")
    help = serializers.IntegerField()


class ActivityPartSerializer(serializers.Serializer):
    counts = ActivityCountsSerializer()
    units = serializers.IntegerField()
    cap = serializers.IntegerField()
    score = serializers.FloatField(help_text="min(units, cap) / cap × 100.")


class WeightsSerializer(serializers.Serializer):
    peer = serializers.FloatField()
    owner = serializers.FloatField()
    activity = serializers.FloatField()


class MemberResultSerializer(serializers.Serializer):
    member = serializers.CharField()
    display_name = serializers.CharField()
    peer = PeerPartSerializer()
    owner = OwnerPartSerializer()
    activity = ActivityPartSerializer()
    weights_used = WeightsSerializer(
        help_text="The round's weights normalised over the parts this member has."
    )
    missing = serializers.ListField(
        child=serializers.ChoiceField(choices=["peer", "owner"]),
        help_text="Weighted parts without a value (left out of the total, not counted as 0).",
    )
    complete = serializers.BooleanField()
    total = serializers.FloatField(allow_null=True, help_text="0-100, 2 decimals.")
    passed = serializers.BooleanField(allow_null=True, help_text="total ≥ pass_mark.")


class MethodSerializer(serializers.Serializer):
    trim_min_raters = serializers.IntegerField()
    trim_share = serializers.FloatField()
    bayes_m = serializers.IntegerField()
    round_mean = serializers.FloatField(
        allow_null=True, help_text="C of the Bayesian average: every counted rating, 0-100."
    )
    ratings_counted = serializers.IntegerField()


class ResultsSerializer(serializers.Serializer):
    assessment = serializers.CharField()
    status = serializers.CharField(help_text="open or closed.")
    frozen = serializers.BooleanField(help_text="Closed: the snapshot taken at the close.")
    computed_at = serializers.DateTimeField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    weights = WeightsSerializer()
    pass_mark = serializers.FloatField()
    activity_units = ActivityDocumentSerializer()
    method = MethodSerializer()
    results = MemberResultSerializer(many=True, help_text="Best total first.")


# --- bodies --------------------------------------------------------------------------------------


def _time(value: Any) -> str | None:
    return None if value is None else timestamp(value)


def assessment_body(row: Assessment) -> dict[str, Any]:
    return {
        "id": row.client_id,
        "title": row.title,
        "status": row.status,
        "window_start": _time(row.window_start),
        "window_end": _time(row.window_end),
        "w_peer": row.w_peer,
        "w_owner": row.w_owner,
        "w_activity": row.w_activity,
        "pass_mark": row.pass_mark,
        "activity": row.activity,
        "created_by": row.created_by,
        "created_at": _time(row.created_at),
        "members": [
            {
                "member": m.member.external_id,
                "display_name": m.member.display_name,
                "owner_score": m.owner_score,
                "owner_scored_by": m.owner_scored_by,
                "owner_scored_at": _time(m.owner_scored_at),
            }
            for m in assessment_members(row)
        ],
    }


def results_body(data: dict[str, Any]) -> dict[str, Any]:
    """The selector's results with every time in the API's one format."""
    body = {**data}
    for key in ("computed_at", "window_start", "window_end"):
        body[key] = _time(body[key])
    body["results"] = [
        {**r, "owner": {**r["owner"], "scored_at": _time(r["owner"]["scored_at"])}}
        for r in data["results"]
    ]
    return body


MEMBERS_EXAMPLE: list[dict[str, Any]] = [
    {
        "member": "wxid_alice",
        "display_name": "Alice",
        "owner_score": 4,
        "owner_scored_by": "key:Ab12Cd34",
        "owner_scored_at": "2026-12-08T02:00:00Z",
    },
    {
        "member": "wxid_bob",
        "display_name": "Bob",
        "owner_score": None,
        "owner_scored_by": "",
        "owner_scored_at": None,
    },
]
ASSESSMENT_EXAMPLE = {
    "id": "core-2026-12",
    "title": "核心群门槛 12月",
    "status": "open",
    "window_start": "2026-12-01T00:00:00Z",
    "window_end": "2026-12-08T00:00:00Z",
    "w_peer": 0.6,
    "w_owner": 0.4,
    "w_activity": 0.0,
    "pass_mark": 60.0,
    "activity": DEFAULT_ACTIVITY,
    "created_by": "key:Ab12Cd34",
    "created_at": "2026-11-30T10:00:00Z",
    "members": MEMBERS_EXAMPLE,
}
RESULTS_EXAMPLE = {
    "assessment": "core-2026-12",
    "status": "open",
    "frozen": False,
    "computed_at": "2026-12-08T03:00:00Z",
    "window_start": "2026-12-01T00:00:00Z",
    "window_end": "2026-12-08T00:00:00Z",
    "weights": {"peer": 0.6, "owner": 0.4, "activity": 0.0},
    "pass_mark": 60.0,
    "activity_units": DEFAULT_ACTIVITY,
    "method": {
        "trim_min_raters": TRIM_MIN_RATERS,
        "trim_share": 0.2,
        "bayes_m": BAYES_M,
        "round_mean": 68.75,
        "ratings_counted": 8,
    },
    "results": [
        {
            "member": "wxid_alice",
            "display_name": "Alice",
            "peer": {
                "ratings": 6,
                "self_ratings_ignored": 1,
                "raters": 5,
                "scores": [1, 2, 4, 5, 5],
                "method": "trimmed_mean",
                "mean": 65.0,
                "score": 66.67,
            },
            "owner": {
                "score_1_5": 4,
                "score": 75.0,
                "scored_by": "key:Ab12Cd34",
                "scored_at": "2026-12-08T02:00:00Z",
            },
            "activity": {
                "counts": {"check_in": 5, "share": 2, "invite": 0, "help": 1},
                "units": 11,
                "cap": 20,
                "score": 55.0,
            },
            "weights_used": {"peer": 0.6, "owner": 0.4, "activity": 0.0},
            "missing": [],
            "complete": True,
            "total": 70.0,
            "passed": True,
        },
        {
            "member": "wxid_bob",
            "display_name": "Bob",
            "peer": {
                "ratings": 3,
                "self_ratings_ignored": 0,
                "raters": 3,
                "scores": [3, 4, 5],
                "method": "bayesian",
                "mean": 75.0,
                "score": 71.09,
            },
            "owner": {"score_1_5": None, "score": None, "scored_by": "", "scored_at": None},
            "activity": {
                "counts": {"check_in": 0, "share": 0, "invite": 0, "help": 0},
                "units": 0,
                "cap": 20,
                "score": 0.0,
            },
            "weights_used": {"peer": 1.0, "owner": 0.0, "activity": 0.0},
            "missing": ["owner"],
            "complete": False,
            "total": 71.09,
            "passed": True,
        },
    ],
}
ERRORS = {
    400: schema.PROBLEM,
    401: schema.PROBLEM,
    403: schema.PROBLEM,
    404: schema.PROBLEM,
    409: schema.PROBLEM,
}
READ_ERRORS = {400: schema.PROBLEM, 401: schema.PROBLEM, 403: schema.PROBLEM, 404: schema.PROBLEM}
NOT_FOUND = schema.example_problem(404, "assessment_not_found", "Assessment not found")
CLOSED = schema.example_problem(409, "assessment_closed", "The assessment is closed")


# --- views ---------------------------------------------------------------------------------------


class AssessmentsView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="assessments_create",
        summary="Open an assessment round (群门槛): members, window, weights, pass mark; audited",
        description=(
            "Peer scores are the `peer_score` events about the members that occur in "
            "`[window_start, window_end)`; the owner's come through …/owner-scores. Omitted "
            "weights, pass mark and activity units are the community's (defaults: w_peer 0.6, "
            "w_owner 0.4, w_activity 0, pass mark 60, activity "
            f"{DEFAULT_ACTIVITY}), frozen in the round. Idempotent by `id`: the same body "
            "again answers the round with 200; another body is 409 naming what differs. An "
            "unknown member is 404 naming each (`members[i]`)."
        ),
        request=AssessmentInputSerializer,
        responses={201: AssessmentOutputSerializer, 200: AssessmentOutputSerializer, **ERRORS},
        examples=[
            OpenApiExample(
                "Peers and owner (community weights)",
                value={
                    "id": "core-2026-12",
                    "title": "核心群门槛 12月",
                    "members": ["wxid_alice", "wxid_bob"],
                    "window_start": "2026-12-01T00:00:00+08:00",
                    "window_end": "2026-12-08T00:00:00+08:00",
                },
                request_only=True,
            ),
            OpenApiExample(
                "With an activity part",
                value={
                    "id": "review-q4",
                    "title": "Q4 review",
                    "members": ["wxid_alice"],
                    "window_start": "2026-10-01T00:00:00+08:00",
                    "window_end": "2027-01-01T00:00:00+08:00",
                    "w_peer": 0.5,
                    "w_owner": 0.3,
                    "w_activity": 0.2,
                    "pass_mark": 65,
                    "activity": {"check_in": 1, "share": 2, "cap": 60},
                },
                request_only=True,
            ),
            OpenApiExample(
                "Opened",
                value={
                    **ASSESSMENT_EXAMPLE,
                    "members": [
                        {**m, "owner_score": None, "owner_scored_by": "", "owner_scored_at": None}
                        for m in MEMBERS_EXAMPLE
                    ],
                },
                response_only=True,
                status_codes=["201", "200"],
            ),
            schema.example_problem(
                400,
                "invalid_assessment",
                "The assessment is invalid",
                [
                    {
                        "field": "window_end",
                        "code": "before_start",
                        "message": "must be after window_start",
                    }
                ],
            ),
            schema.example_problem(
                404,
                "member_not_found",
                "Member not found",
                [{"field": "members[1]", "code": "not_found", "message": "no member 'wxid_bob'"}],
            ),
            schema.example_problem(
                409,
                "assessment_conflict",
                "Assessment id already used",
                [
                    {
                        "field": "id",
                        "code": "conflict",
                        "message": "this id was already used with a different body",
                    },
                    {"field": "pass_mark", "code": "conflict", "message": "differs from the first"},
                ],
            ),
        ],
        tags=TAGS,
    )
    def post(self, request: Request, community: str) -> Response:
        body = AssessmentInputSerializer(data=request.data)
        refuse_unknown_fields(body, request.data)
        if isinstance(request.data, dict):
            refuse_unknown_fields(
                ActivityUnitsSerializer(), request.data.get("activity"), "activity."
            )
        body.is_valid(raise_exception=True)
        data = body.validated_data
        row, created = assessment_open(
            community=_community(request),
            client_id=data["id"],
            title=data["title"],
            members=list(data["members"]),
            window_start=data["window_start"],
            window_end=data["window_end"],
            w_peer=data.get("w_peer"),
            w_owner=data.get("w_owner"),
            w_activity=data.get("w_activity"),
            pass_mark=data.get("pass_mark"),
            activity=dict(data["activity"]) if "activity" in data else None,
            actor=_actor(request),
        )
        return Response(
            assessment_body(row),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AssessmentDetailView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="assessments_retrieve",
        summary="One assessment round: its settings, members and the owner's scores",
        responses={200: AssessmentOutputSerializer, **READ_ERRORS},
        examples=[OpenApiExample("Round", value=ASSESSMENT_EXAMPLE, response_only=True), NOT_FOUND],
        tags=TAGS,
    )
    def get(self, request: Request, community: str, assessment_id: str) -> Response:
        refuse_unknown_params(request)
        return Response(assessment_body(assessment_get(_community(request), assessment_id)))


class AssessmentOwnerScoresView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="assessments_owner_scores",
        summary="Give or change the owner's scores (1-5) of members of an open round; audited",
        description=(
            "All or nothing: a score that is not an integer 1 to 5, or a member not in the "
            "round, is 400 naming `scores.<member>`. A closed round is 409."
        ),
        request=OwnerScoresInputSerializer,
        responses={200: AssessmentOutputSerializer, **ERRORS},
        examples=[
            OpenApiExample(
                "Scores", value={"scores": {"wxid_alice": 4, "wxid_bob": 3}}, request_only=True
            ),
            OpenApiExample("Round", value=ASSESSMENT_EXAMPLE, response_only=True),
            schema.example_problem(
                400,
                "invalid_assessment",
                "The assessment is invalid",
                [
                    {
                        "field": "scores.wxid_carol",
                        "code": "not_in_round",
                        "message": "is not a member of this round",
                    }
                ],
            ),
            NOT_FOUND,
            CLOSED,
        ],
        tags=TAGS,
    )
    def post(self, request: Request, community: str, assessment_id: str) -> Response:
        body = OwnerScoresInputSerializer(data=request.data)
        refuse_unknown_fields(body, request.data)
        body.is_valid(raise_exception=True)
        row = owner_scores_set(
            community=_community(request),
            client_id=assessment_id,
            scores=dict(body.validated_data["scores"]),
            actor=_actor(request),
        )
        return Response(assessment_body(row))


class AssessmentResultsView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="assessments_results",
        summary="Every member's parts (peer, owner, activity), weights used, total and pass",
        description=(
            "Peer: one rating per rater (the latest in the window), never the member's own; "
            f"the 20% trimmed mean from {TRIM_MIN_RATERS} raters, else the Bayesian average "
            f"(v·R + {BAYES_M}·C)/(v + {BAYES_M}) toward the round's mean C. Scores 1-5 are "
            "(s − 1)/4 × 100. A part without a value (no rater, no owner score) is listed in "
            "`missing` and the other parts' weights are normalised (`weights_used`); it is "
            "not counted as 0. An open round is computed at each read; a closed one answers "
            "the results frozen at its close."
        ),
        responses={200: ResultsSerializer, **READ_ERRORS},
        examples=[OpenApiExample("Results", value=RESULTS_EXAMPLE, response_only=True), NOT_FOUND],
        tags=TAGS,
    )
    def get(self, request: Request, community: str, assessment_id: str) -> Response:
        refuse_unknown_params(request)
        return Response(results_body(assessment_results(_community(request), assessment_id)))


class AssessmentCloseView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="assessments_close",
        summary="Close a round: its results are frozen (stored in the audit log) and returned",
        description=(
            "After the close, events backdated into the window or reversed do not change the "
            "results, and the owner's scores are refused (409). Closing twice is 409."
        ),
        request=None,
        responses={200: ResultsSerializer, **ERRORS},
        examples=[
            OpenApiExample(
                "Closed",
                value={**RESULTS_EXAMPLE, "status": "closed", "frozen": True},
                response_only=True,
            ),
            NOT_FOUND,
            CLOSED,
        ],
        tags=TAGS,
    )
    def post(self, request: Request, community: str, assessment_id: str) -> Response:
        refuse_unknown_params(request)
        _row, results = assessment_close(
            community=_community(request), client_id=assessment_id, actor=_actor(request)
        )
        return Response(results_body(results))
