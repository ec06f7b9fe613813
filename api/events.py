"""One event: what it awarded and why (``GET``), and its reversal (``POST …/reverse``)."""

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
from api.serializers import StrictCharField, timestamp
from points.corrections import event_reverse_once
from points.exceptions import EventNotFound
from points.models import Event, LedgerEntry, Scope
from points.selectors import event_answer


class EventEntrySerializer(serializers.Serializer):
    member = serializers.CharField()
    kind = serializers.CharField()
    points = serializers.IntegerField()
    rule = serializers.CharField()
    rule_version = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class EventDetailSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    member = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    local_day = serializers.DateField()
    rule_version = serializers.IntegerField(help_text="The rule set version that scored it.")
    result = serializers.DictField(help_text="The answer it got when first posted.")
    entries = EventEntrySerializer(many=True, help_text="Every ledger entry it caused.")
    reversed_at = serializers.DateTimeField(allow_null=True)
    reversal = serializers.DictField(allow_null=True)


class ReverseInputSerializer(serializers.Serializer):
    reason = StrictCharField(
        max_length=500, required=False, allow_blank=True, help_text="Why (shown in the ledger)."
    )


class ReversalSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    reversed_at = serializers.DateTimeField()
    reason = serializers.CharField()
    reversed = serializers.ListField(
        child=serializers.DictField(), help_text="{member, points, owed} taken back"
    )
    rescored = serializers.ListField(
        child=serializers.DictField(),
        help_text="Events of the same day re-scored into the room freed, and bonuses re-derived",
    )


def _event_detail(event: Event) -> dict[str, Any]:
    entries = LedgerEntry.objects.filter(event=event).select_related("member").order_by("id")
    return {
        "id": event.client_id,
        "type": event.type,
        "member": event.member.external_id,
        "occurred_at": event.occurred_at,
        "local_day": event.local_day,
        "rule_version": event.rule_version,
        "result": event_answer(event),
        "entries": [
            {
                "member": e.member.external_id,
                "kind": e.kind,
                "points": e.points,
                "rule": e.rule,
                "rule_version": e.rule_version,
                "reason": e.reason,
                "created_at": e.created_at,
            }
            for e in entries
        ],
        "reversed_at": event.reversed_at,
        "reversal": event.reversal,
    }


class EventDetailView(APIView):
    required_scope = Scope.EVENTS_WRITE

    @extend_schema(
        operation_id="events_retrieve",
        summary="An event: what it awarded, under which rule version and caps, and its entries",
        responses={
            200: EventDetailSerializer,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[schema.example_problem(404, "event_not_found", "Event not found")],
        tags=["events"],
    )
    def get(self, request: Request, community: str, event_id: str) -> Response:
        event = (
            Event.objects.select_related("member")
            .by_client_id(_community(request), event_id)
            .first()
        )
        if event is None:
            raise EventNotFound(f"No event '{event_id}' in this community.")
        return Response(EventDetailSerializer(_event_detail(event)).data)


class EventReverseView(APIView):
    required_scope = Scope.EVENTS_WRITE

    @extend_schema(
        operation_id="events_reverse",
        summary="Reverse an event (a deleted post, a fraudulent invite); idempotent",
        description=(
            "Takes back everything the event awarded (a balance goes to zero at worst; the "
            "rest is owed and settled from the member's next awards), re-scores the same day's "
            "events that a cap cut into the room freed, and re-derives streak and monthly "
            "quota bonuses. A second call answers 200 with the first result."
        ),
        request=ReverseInputSerializer,
        responses={
            201: ReversalSerializer,
            200: ReversalSerializer,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            OpenApiExample(
                "Reason", value={"reason": "post deleted by its author"}, request_only=True
            ),
            OpenApiExample(
                "Reversed",
                value={
                    "id": "wx-post-77",
                    "status": "reversed",
                    "reversed_at": "2026-11-23T09:00:00+08:00",
                    "reason": "post deleted by its author",
                    "reversed": [{"member": "wxid_alice", "points": -10, "owed": 0}],
                    "rescored": [{"event": "wx-post-80", "member": "wxid_alice", "points": 4}],
                },
                response_only=True,
                status_codes=["201", "200"],
            ),
        ],
        tags=["events"],
    )
    def post(self, request: Request, community: str, event_id: str) -> Response:
        body = ReverseInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result, created = event_reverse_once(
            community=_community(request),
            client_id=event_id,
            reason=body.validated_data.get("reason", ""),
            actor=_actor(request),
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        if isinstance(result.get("reversed_at"), str):
            result = {**result, "reversed_at": timestamp(result["reversed_at"])}
        return Response(result, status=code)
