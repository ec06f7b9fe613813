"""Thin views: validate with an input serializer, call one service or selector, render."""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.fields import empty
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_community as _community
from api.errors import field_errors, flatten_errors, problem, problem_response, say
from api.pagination import LedgerCursorPagination
from api.parsers import RefusedItem
from api.serializers import (
    BatchResultSerializer,
    EventBatchInputSerializer,
    EventInputSerializer,
    EventResultSerializer,
    LedgerEntryOutputSerializer,
    MemberOutputSerializer,
)
from config.db_router import member_wrote
from config.observability import record_ingest
from incentives.standing import member_standing, rank_snapshots_queue
from points.ingest.group import group_commit
from points.models import Community, LedgerEntry, Scope
from points.selectors import member_by_external_id, member_ledger
from points.services import (
    EventInput,
    IngestOutcome,
    IngestStatus,
    events_ingest,
)


def event_result(outcome: IngestOutcome) -> dict[str, Any]:
    """An accepted or replayed event's answer, single and batch alike: the answer rendered
    from the event's scoring record (``ScoringRecord.render``, which fixes the key order, so
    a replay is byte-identical to the first answer) with ``status`` saying which
    (``accepted`` the first time, ``replayed`` after; docs/decisions.md 23 and 41)."""
    return {**(outcome.result or {}), "status": outcome.status}


CHECK_IN_RESULT = {
    "id": "wx-msg-20261123-0001",
    "status": "accepted",
    "points": 5,
    "balance": 125,
    "rule_version": 1,
    "awards": [
        {
            "rule": "points.check_in",
            "points": 5,
            "base": 5,
            "gross": 5,
            "capped": False,
            "cap": None,
            "member": "wxid_alice",
        }
    ],
}


_validators = threading.local()


def event_validator() -> EventInputSerializer:
    """This thread's ``EventInputSerializer``, built once and used for validation only
    (``validated``, which keeps no state on the serializer): DRF deep-copies a
    serializer's declared fields into every new instance, which was a tenth of a single
    event's CPU. One per thread: a bound field is not meant to be shared across threads."""
    validator: EventInputSerializer | None = getattr(_validators, "event", None)
    if validator is None:
        validator = _validators.event = EventInputSerializer()
    return validator


def outcome_response(outcome: IngestOutcome) -> Response:
    if outcome.status == IngestStatus.ACCEPTED:
        return Response(event_result(outcome), status=status.HTTP_201_CREATED)
    if outcome.status == IngestStatus.REPLAYED:
        return Response(event_result(outcome), status=status.HTTP_200_OK)
    if outcome.status == IngestStatus.CONFLICT:
        return problem_response(
            problem(
                409,
                "event_conflict",
                "Event id already used",
                f"Event '{outcome.client_id}' was already posted with a different body.",
                field_errors(outcome.errors),
            )
        )
    return problem_response(
        problem(
            400,
            "validation_error",
            "Invalid request",
            "The event is invalid.",
            field_errors(outcome.errors),
        )
    )


class EventCreateView(APIView):
    required_scope = Scope.EVENTS_WRITE

    @extend_schema(
        operation_id="events_create",
        summary="Post one contribution event",
        description=(
            "Stores, scores and posts the event to the ledger in one transaction. Posting the "
            "same `id` and body again answers 200 with the first result, `status` "
            "`replayed` (as in a batch); the same `id` with a different body is a 409 "
            "conflict. Unknown members are created on their first event."
        ),
        request=EventInputSerializer,
        responses={
            201: EventResultSerializer,
            200: OpenApiResponse(
                EventResultSerializer, description="Replay: the first result, `replayed`."
            ),
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            409: schema.PROBLEM,
            413: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Check-in",
                value={
                    "id": "wx-msg-20261123-0001",
                    "type": "check_in",
                    "member": "wxid_alice",
                    "occurred_at": "2026-11-23T08:01:00+08:00",
                    "group": "group-42",
                    "meta": {"display_name": "Alice"},
                },
                request_only=True,
            ),
            OpenApiExample(
                "Scored",
                value=CHECK_IN_RESULT,
                response_only=True,
                status_codes=["201"],
            ),
            OpenApiExample(
                "Replayed",
                value={**CHECK_IN_RESULT, "status": "replayed"},
                response_only=True,
                status_codes=["200"],
            ),
            schema.example_problem(
                409,
                "event_conflict",
                "Event id already used",
                [
                    {
                        "field": "id",
                        "code": "conflict",
                        "message": "this id was already used with a different body",
                    }
                ],
            ),
            schema.example_problem(
                400,
                "validation_error",
                "Invalid request",
                [{"field": "score", "code": "required", "message": "is required for peer_score"}],
            ),
        ],
        tags=["events"],
    )
    def post(self, request: Request, community: str) -> Response:
        return outcome_response(event_post(_community(request), request.data))


def event_post(community: Community, data: Any) -> IngestOutcome:
    """One posted event's body validated (``ValidationError`` before anything is written),
    ingested and recorded: ``EventCreateView`` and the lean path (``api.fastpath``)."""
    event = EventInputSerializer.event_from(event_validator().validated(data))
    outcome = group_commit.ingest(community, event)  # concurrent single events share a commit
    member_wrote(community.pk, [event], [outcome])  # their reads: the primary (docs/scaling.md)
    record_ingest([outcome], {event.client_id: event.type})
    return outcome


class EventBatchView(APIView):
    required_scope = Scope.EVENTS_WRITE
    json_item_list = "events"  # api.parsers judges each item on its own

    @extend_schema(
        operation_id="events_batch",
        summary="Post up to 1,000 events",
        description=(
            "Each item is validated, de-duplicated and scored on its own: an invalid item, a "
            "replay or a conflict does not affect the others. Items are scored in the order "
            "given. Per item `status` is `accepted`, `replayed`, `conflict` or `invalid`; an "
            "accepted or replayed item is the body the single endpoint answers. Only a body "
            "that is not a batch (not JSON, not an object with `events`, over the size, "
            "count or nesting limits) fails as a whole."
        ),
        request=EventBatchInputSerializer,
        responses={
            200: BatchResultSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
            413: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Two events",
                value={
                    "events": [
                        {"id": "e-1", "type": "message", "member": "wxid_bob"},
                        {
                            "id": "e-2",
                            "type": "share",
                            "member": "wxid_bob",
                            "content": {"id": "post-9", "url": "https://example.com/a"},
                        },
                    ]
                },
                request_only=True,
            ),
            OpenApiExample(
                "Per-item results",
                value={
                    "results": [
                        {
                            "id": "e-1",
                            "status": "accepted",
                            "points": 1,
                            "balance": 1,
                            "rule_version": 1,
                            "awards": [
                                {
                                    "rule": "points.message",
                                    "points": 1,
                                    "base": 1,
                                    "gross": 1,
                                    "capped": False,
                                    "cap": None,
                                    "member": "wxid_bob",
                                }
                            ],
                        },
                        {
                            "id": "e-2",
                            "status": "invalid",
                            "error": {
                                "code": "validation_error",
                                "message": "The event is invalid.",
                                "errors": [
                                    {
                                        "field": "type",
                                        "code": "unknown_event_type",
                                        "message": "unknown event type 'shar'",
                                    }
                                ],
                            },
                        },
                    ]
                },
                response_only=True,
            ),
        ],
        tags=["events"],
    )
    def post(self, request: Request, community: str) -> Response:
        found = _community(request)
        envelope = EventBatchInputSerializer(data=request.data)
        envelope.is_valid(raise_exception=True)
        items: list[Any] = envelope.validated_data["events"]
        results: list[dict[str, Any] | None] = [None] * len(items)
        valid_positions: list[int] = []
        valid_events: list[EventInput] = []
        # One validator for every item: a serializer's fields are built (deep-copied) once,
        # not once per item, which was half the cost of a batch.
        validator = event_validator()
        for position, item in enumerate(items):
            if isinstance(item, RefusedItem):  # a value no item may hold (api.parsers)
                results[position] = _batch_error(
                    item.client_id,
                    "validation_error",
                    "The event is invalid.",
                    flatten_errors(item.detail()),
                )
                continue
            try:
                data = validator.validated(item if item is not None else empty)
            except ValidationError as exc:
                results[position] = _batch_error(
                    item.get("id") if isinstance(item, dict) else None,
                    "validation_error",
                    "The event is invalid.",
                    flatten_errors(exc.detail),
                )
                continue
            valid_positions.append(position)
            valid_events.append(EventInputSerializer.event_from(data))
        outcomes = events_ingest(community=found, events=valid_events)
        member_wrote(found.pk, valid_events, outcomes)  # docs/scaling.md
        record_ingest(outcomes, {e.client_id: e.type for e in valid_events})
        for position, outcome in zip(valid_positions, outcomes, strict=True):
            results[position] = _batch_item(outcome)
        return Response({"results": results})


def _batch_error(
    client_id: Any,
    code: str,
    message: str,
    errors: list[dict[str, str]],
    item_status: str = IngestStatus.INVALID,
) -> dict[str, Any]:
    return {
        "id": client_id if isinstance(client_id, str) else None,
        "status": item_status,
        "error": {"code": code, "message": say(message), "errors": errors},
    }


def _batch_item(outcome: IngestOutcome) -> dict[str, Any]:
    if outcome.status in (IngestStatus.ACCEPTED, IngestStatus.REPLAYED):
        return event_result(outcome)
    if outcome.status == IngestStatus.CONFLICT:
        return _batch_error(
            outcome.client_id,
            "event_conflict",
            "This id was already used with a different body.",
            field_errors(outcome.errors),
            IngestStatus.CONFLICT,
        )
    return _batch_error(
        outcome.client_id, "validation_error", "The event is invalid.", field_errors(outcome.errors)
    )


class MemberDetailView(APIView):
    required_scope = Scope.MEMBERS_READ
    member_access = "self"

    @extend_schema(
        operation_id="members_retrieve",
        summary="A member's balance and standing",
        responses={
            200: MemberOutputSerializer,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Member",
                value={
                    "member": "wxid_alice",
                    "display_name": "Alice",
                    "status": "active",
                    "role": "member",
                    "balance": 125,
                    "held": 0,
                    "spendable": 125,
                    "owed": 0,
                    "lifetime_points": 140,
                    "joined_at": "2026-09-01T10:00:00+08:00",
                    "left_at": None,
                    "tier": {
                        "code": "active",
                        "name": {"zh": "活跃成员", "en": "Active"},
                        "since": "2026-11-02T17:07:00Z",
                        "locked": False,
                        "next_tier": "core",
                        "progress": 28.0,
                        "criteria": [
                            {"figure": "points", "value": 140, "minimum": 500},
                            {"figure": "check_in_days", "value": 12, "minimum": 15},
                            {"figure": "featured", "value": 1, "minimum": 1},
                        ],
                    },
                    "ranks": {
                        "all_time": {
                            "period": "all_time",
                            "start": "2000-01-01",
                            "rank": 12,
                            "points": 140,
                            "ranked_points": 135,
                            "total": 310,
                            "percentile": 96.5,
                            "above": [],
                            "below": [],
                            "as_of": "2026-11-23T10:00:00+08:00",
                            "age_seconds": 12,
                        },
                        "month": {
                            "period": "2026-11",
                            "start": "2026-11-01",
                            "rank": 3,
                            "points": 60,
                            "ranked_points": 60,
                            "total": 180,
                            "percentile": 98.9,
                            "above": [],
                            "below": [],
                            "as_of": "2026-11-23T10:00:00+08:00",
                            "age_seconds": 12,
                        },
                    },
                    "streak": 6,
                    "koc": False,
                    "honors": [
                        {"month": "2026-10", "category": "full_attendance", "rank": 1, "value": 31}
                    ],
                    "achievements": [
                        {
                            "code": "monthly_check_in",
                            "period": "2026-10",
                            "awarded_at": "2026-10-24T08:01:00+08:00",
                        }
                    ],
                    "expiring": [{"on": "2027-01-01", "points": 40}],
                },
                response_only=True,
            ),
            schema.example_problem(404, "member_not_found", "Member not found"),
        ],
        tags=["members"],
    )
    def get(self, request: Request, community: str, member: str) -> Response:
        from api.leaderboards import rank_body

        found = member_by_external_id(_community(request), member)
        standing = member_standing(found)
        rank_snapshots_queue(standing)
        ranks = {kind: rank_body(rank) for kind, rank in standing.ranks.items()}
        context = {"standing": standing, "ranks": ranks}
        return Response(MemberOutputSerializer(found, context=context).data)


class MemberLedgerView(ListAPIView[LedgerEntry]):
    required_scope = Scope.MEMBERS_READ
    member_access = "self"
    serializer_class = LedgerEntryOutputSerializer
    pagination_class = LedgerCursorPagination

    def get_queryset(self) -> Any:
        found = member_by_external_id(_community(self.request), self.kwargs["member"])
        return member_ledger(found)

    @extend_schema(
        operation_id="members_ledger",
        summary="A member's ledger entries, newest first",
        description="Pass on `next` or `previous` as given: any other `cursor` is a 400 naming "
        "`cursor`.",
        responses={
            200: LedgerEntryOutputSerializer(many=True),
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Page",
                value={
                    "next": "https://svc/api/v1/communities/demo/members/wxid_alice/ledger"
                    "?cursor=cD0xMjM%3D",
                    "previous": None,
                    "results": [
                        {
                            "id": 123,
                            "kind": "award",
                            "points": 5,
                            "balance_after": 125,
                            "rule": "points.check_in",
                            "rule_version": 1,
                            "reason": "",
                            "event": "wx-msg-20261123-0001",
                            "event_type": "check_in",
                            "created_at": "2026-11-23T08:01:00.120000+08:00",
                        },
                    ],
                },
                response_only=True,
            ),
        ],
        tags=["members"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
