"""Leaderboards, member ranks and member tokens (thin views over ``points.selectors``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_community as _community
from api.pagination import cursor_decode, cursor_encode
from api.serializers import (
    LeaderboardQuerySerializer,
    LeaderboardSerializer,
    MemberRankSerializer,
    MemberTokenInputSerializer,
    MemberTokenSerializer,
    PeriodQuerySerializer,
)
from config.db_router import reads_from_replica
from points.exceptions import MemberNotFound
from points.models import Community, Scope
from points.selectors import (
    BoardRow,
    MemberRank,
    Period,
    leaderboard_page,
    member_by_external_id,
    member_rank_lookup,
    period_resolve,
    snapshot_info,
)
from points.services import member_token_issue, rank_snapshot_ensure

PERIOD_PARAMS: list[Any] = [PeriodQuerySerializer]

# The rank path is read on every bot command and every page view. Its serializers document the
# schema; the answers are built directly with the same field renderings, and the query
# validators are built once (a DRF serializer deep-copies its declared fields per instance,
# which cost more than the rank query itself; see docs/performance.md, "Rank lookups").
_PERIOD_QUERY = PeriodQuerySerializer()
_BOARD_QUERY = LeaderboardQuerySerializer()
_DATETIME = serializers.DateTimeField()
_DATE = serializers.DateField()


def _query(validator: serializers.Serializer, request: Request) -> dict[str, Any]:
    """Validated query parameters (400 problem+json naming the field, as ``is_valid``)."""
    return dict(validator.run_validation(request.query_params))


_PERIOD_KINDS = frozenset(_PERIOD_QUERY.fields["period"].choices)  # type: ignore[attr-defined]


def _rank_query(request: Request) -> dict[str, Any]:
    """``_query(_PERIOD_QUERY, …)`` for the rank path: the common queries (none, or one valid
    ``period``) read directly, anything else through the serializer (its defaults and errors)."""
    if not request.META.get("QUERY_STRING"):
        return {"period": "all_time"}
    params = request.query_params
    if len(params) == 1:
        values = params.getlist("period")
        if len(values) == 1 and values[0] in _PERIOD_KINDS:
            return {"period": values[0]}
    return _query(_PERIOD_QUERY, request)


def _period(request: Request, query: dict[str, Any]) -> Period:
    period = period_resolve(_community(request), query["period"], query.get("month"))
    rank_snapshot_ensure(community=_community(request), kind=period.kind, start=period.start)
    return period


def _row(row: BoardRow) -> dict[str, Any]:
    """As ``BoardRowSerializer`` renders it."""
    return {
        "rank": row.rank,
        "member": row.member,
        "display_name": row.display_name,
        "points": row.points,
    }


def _datetime(value: dt.datetime | None) -> str | None:
    return None if value is None else _DATETIME.to_representation(value)


POSITION_MAX = 2**31 - 1


def _decode_cursor(cursor: str | None) -> int:
    """A board cursor, through the one codec (``api.pagination``): 400 naming ``cursor``."""
    if not cursor:
        return 0
    return cursor_decode(cursor, {"p": POSITION_MAX})["p"]


def _encode_cursor(position: int) -> str:
    return cursor_encode({"p": position})


def rank_body(result: MemberRank) -> dict[str, Any]:
    """As ``MemberRankSerializer`` renders it."""
    age = None
    if result.built_at is not None:
        age = int((timezone.now() - result.built_at).total_seconds())
    return {
        "period": result.period.label,
        "start": _DATE.to_representation(result.period.start),
        "rank": result.rank,
        "points": result.points,
        "ranked_points": result.ranked_points,
        "total": result.total,
        "percentile": result.percentile,
        "above": [_row(r) for r in result.above],
        "below": [_row(r) for r in result.below],
        "as_of": _datetime(result.built_at),
        "age_seconds": age,
    }


def member_rank_fresh(
    community: Community, external_id: str, period: Period, neighbours: int = 3
) -> MemberRank | None:
    """``member_rank_lookup``; a missing or stale snapshot queues a rebuild (the read serves
    what is there: reads never write, see ``rank_snapshot_ensure``)."""
    result = member_rank_lookup(community, external_id, period, neighbours)
    if result is None:
        return None
    rank_snapshot_ensure(
        community=community, kind=period.kind, start=period.start, built_at=result.built_at
    )
    return result


class LeaderboardView(APIView):
    required_scope = Scope.MEMBERS_READ
    member_access = "public"

    @extend_schema(
        operation_id="leaderboard",
        summary="Ranked members of a period",
        description=(
            "Competition ranking (ties share a rank; display order breaks ties by member). "
            "Periods are in the community's time zone; `month=YYYY-MM` reads a past month. "
            "Ranks come from a snapshot that a job rebuilds every 30 s when the period changed "
            "(a read of one older than a minute queues a rebuild); `as_of` says when it was "
            "built. Members who left are not ranked."
        ),
        parameters=[LeaderboardQuerySerializer],
        responses={
            200: LeaderboardSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "This month",
                value={
                    "period": "2026-11",
                    "start": "2026-11-01",
                    "total": 3,
                    "as_of": "2026-11-23T10:00:00+08:00",
                    "next": None,
                    "results": [
                        {"rank": 1, "member": "wxid_alice", "display_name": "Alice", "points": 120},
                        {"rank": 2, "member": "wxid_bob", "display_name": "Bob", "points": 90},
                        {"rank": 2, "member": "wxid_carol", "display_name": "Carol", "points": 90},
                    ],
                },
                response_only=True,
            ),
            schema.example_problem(
                400,
                "invalid_period",
                "Invalid period",
                [{"field": "month", "code": "invalid", "message": "must be YYYY-MM"}],
            ),
        ],
        tags=["ranks"],
    )
    @reads_from_replica()  # docs/scaling.md: a board tolerates replica lag
    def get(self, request: Request, community: str) -> Response:
        query = _query(_BOARD_QUERY, request)
        period = _period(request, query)
        size = query["size"]
        rows = leaderboard_page(
            _community(request), period, _decode_cursor(query.get("cursor")), size
        )
        info = snapshot_info(_community(request), period)
        next_url = None
        if len(rows) == size:
            params = request.query_params.copy()
            params["cursor"] = _encode_cursor(rows[-1].position)
            next_url = request.build_absolute_uri(request.path) + "?" + params.urlencode()
        return Response(
            {
                "period": period.label,
                "start": _DATE.to_representation(period.start),
                "total": info.total,
                "as_of": _datetime(info.built_at),
                "next": next_url,
                "results": [_row(r) for r in rows],
            }
        )


class MemberRankView(APIView):
    required_scope = Scope.MEMBERS_READ
    member_access = "self"

    @extend_schema(
        operation_id="members_rank",
        summary="A member's rank, points, percentile and neighbours",
        description=(
            "`rank`, `total`, `percentile` and the neighbours (`above`, `below`: up to 3 "
            "members each side in display order) come from the period's rank snapshot, "
            "`as_of` / `age_seconds` say how old it is; `points` are the member's live points "
            "in the period, `ranked_points` those the snapshot ranked. `rank` is null for a "
            "member with no points in the period or who left."
        ),
        parameters=PERIOD_PARAMS,
        responses={
            200: MemberRankSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Rank",
                value={
                    "period": "all_time",
                    "start": "2000-01-01",
                    "rank": 2,
                    "points": 95,
                    "ranked_points": 90,
                    "total": 3,
                    "percentile": 66.7,
                    "above": [
                        {"rank": 1, "member": "wxid_alice", "display_name": "Alice", "points": 120}
                    ],
                    "below": [
                        {"rank": 2, "member": "wxid_carol", "display_name": "Carol", "points": 90}
                    ],
                    "as_of": "2026-11-23T10:00:00+08:00",
                    "age_seconds": 12,
                },
                response_only=True,
            ),
        ],
        tags=["ranks"],
    )
    def get(self, request: Request, community: str, member: str) -> Response:
        query = _rank_query(request)
        body = member_rank_answer(_community(request), member, query["period"], query.get("month"))
        if body is None:
            raise MemberNotFound(f"No member '{member}' in this community.")
        return Response(body)


def member_rank_answer(
    community: Community, member: str, kind: str, month: str | None = None
) -> dict[str, Any] | None:
    """The rank answer's body for ``member`` (``None``: no such member), as ``MemberRankView``
    and the lean path (``api.fastpath``) serve it."""
    period = period_resolve(community, kind, month)
    with reads_from_replica(member=(community.pk, member)):  # the member lag rule
        result = member_rank_fresh(community, member, period)
    return None if result is None else rank_body(result)


class MemberTokenView(APIView):
    required_scope = Scope.MEMBERS_READ

    @extend_schema(
        operation_id="members_token",
        summary="A signed, expiring link to the member page",
        description=(
            "The link opens the member's own page; the token also authenticates read-only API "
            "calls as `Authorization: Member <token>` for that member and the public boards."
        ),
        request=MemberTokenInputSerializer,
        responses={
            201: MemberTokenSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Token",
                value={
                    "token": "eyJjIjoxLCJtIjo0MiwiZXhwIjoxNzk0MDAwMDAwfQ:1vN...:abc",
                    "url": "https://svc.example/m/eyJjIjoxLCJtIjo0MiwiZXhwIjoxNzk0MDAwMDAwfQ:1vN...:abc/",
                    "expires_at": "2026-11-24T10:00:00+08:00",
                },
                response_only=True,
            ),
        ],
        tags=["members"],
    )
    def post(self, request: Request, community: str, member: str) -> Response:
        body = MemberTokenInputSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        found = member_by_external_id(_community(request), member)
        token, expires_at = member_token_issue(
            member=found, ttl=dt.timedelta(seconds=body.validated_data["ttl_seconds"])
        )
        url = request.build_absolute_uri(reverse("member-page", args=[token]))
        return Response(
            {"token": token, "url": url, "expires_at": expires_at},
            status=status.HTTP_201_CREATED,
        )
