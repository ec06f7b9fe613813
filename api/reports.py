"""The operator's reports: ``GET …/reports/{name}`` (scope admin), a thin view over
``incentives.reports``. One operation whose path parameter names the report; each report takes
at most one bounded integer parameter (``weeks``, ``months`` or ``days``)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import schema
from api.auth import request_community as _community
from config.db_router import reads_from_replica
from incentives.reports import ALIASES, REPORTS, StageRule, report_run
from points.exceptions import FieldError, ValidationFailed
from points.models import Scope

_DATETIME = serializers.DateTimeField()
_INTEGER = re.compile(r"[0-9]{1,6}")
PARAMETERS = ("weeks", "months", "days")


def report_parameters(name: str, query: Any) -> dict[str, int]:
    """The report's parameters from the query string, each checked against its bounds; a
    parameter the report does not take, or an unknown one, is refused by name."""
    report = REPORTS[ALIASES.get(name, name)]
    errors: list[FieldError] = []
    params: dict[str, int] = {}
    for key in sorted(query):
        if key not in PARAMETERS:
            errors.append(FieldError(key, "unknown_parameter", "is not a parameter"))
            continue
        if key not in report.parameters:
            taken = ", ".join(report.parameters) or "none"
            errors.append(
                FieldError(
                    key,
                    "unknown_parameter",
                    f"is not a parameter of report {report.name} (it takes: {taken})",
                )
            )
            continue
        _default, low, high = report.parameters[key]
        raw = query.get(key, "")
        if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
            errors.append(FieldError(key, "invalid", f"must be an integer from {low} to {high}"))
            continue
        params[key] = int(raw)
    if errors:
        raise ValidationFailed("Invalid report parameters.", errors)
    return params


def _plain(value: Any) -> Any:
    """Instants as the API gives every time (UTC, Z); dates as ISO dates."""
    if isinstance(value, dt.datetime):
        return _DATETIME.to_representation(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


_HEAT = [[0] * 24 for _ in range(7)]
_HEAT[1][9], _HEAT[6][23], _HEAT[0][0] = 2, 1, 1
EXAMPLES = {
    "activity": {
        "report": "activity",
        "timezone": "Asia/Shanghai",
        "from": "2026-11-09",
        "to": "2026-11-18",
        "weeks": 2,
        "total": 4,
        "cells": _HEAT,
        "by_hour": [1, 0, 0, 0, 0, 0, 0, 0, 0, 2, *[0] * 13, 1],
        "by_day": [1, 2, 0, 0, 0, 0, 1],
        "peak_hour": 9,
        "peak_cell": {"day": 2, "hour": 9},
        "slots": {"night": 1, "morning": 2, "noon": 0, "afternoon": 0, "evening": 1},
    },
    "active_users": {
        "report": "active_users",
        "timezone": "Asia/Shanghai",
        "from": "2026-11-01",
        "to": "2026-11-03",
        "active_means": "at least one check_in or message event that day, week or month",
        "daily": [
            {"day": "2026-11-01", "dau": 1},
            {"day": "2026-11-02", "dau": 0},
            {"day": "2026-11-03", "dau": 2},
        ],
        "weekly": [{"week": "2026-11-02", "wau": 2}],
        "monthly": [
            {"month": "2026-11-01", "mau": 2, "average_dau": 1.0, "dau_mau": 0.5, "days": 3}
        ],
    },
    "retention": {
        "report": "retention",
        "timezone": "Asia/Shanghai",
        "from": "2026-09-01",
        "to": "2026-11-18",
        "active_means": "at least one check_in or message event in the month",
        "cohorts": [
            {
                "cohort": "2026-09-01",
                "joined": 3,
                "active": [2, 2, 1],
                "retention": [0.6667, 0.6667, 0.3333],
            },
            {"cohort": "2026-10-01", "joined": 1, "active": [1, 1], "retention": [1.0, 1.0]},
        ],
    },
    "content_mix": {
        "report": "content_mix",
        "timezone": "Asia/Shanghai",
        "from": "2026-11-09",
        "to": "2026-11-18",
        "content_types": ["ugc_post", "share", "content_featured"],
        "rule": StageRule().describe(),
        "weeks_to_change": 4,
        "stage": "kol_driven",
        "weeks": [
            {
                "week": "2026-11-09",
                "kol": 3,
                "official": 0,
                "ugc": 1,
                "total": 4,
                "kol_share": 0.75,
                "official_share": 0.0,
                "ugc_share": 0.25,
                "ugc_authors": 1,
                "wau": 12,
                "suggested": "kol_driven",
                "stage": "kol_driven",
            }
        ],
    },
    "usual_hours": {
        "report": "usual_hours",
        "timezone": "Asia/Shanghai",
        "from": "2026-10-20",
        "to": "2026-11-18",
        "days": 30,
        "members": 3,
        "distribution": [1, *[0] * 8, 1, *[0] * 11, 1, 0, 0],
        "circular_mean_hour": 22.7813,
        "resultant_length": 0.4637,
        "peak_usual_hour": 0,
    },
    "liability": {
        "report": "liability",
        "at": "2026-11-18T04:00:00Z",
        "members": 2,
        "members_with_points": 2,
        "outstanding": 140,
        "held": 40,
        "spendable": 100,
        "owed": 7,
        "expiry_days": 30,
        "expiring_within_days": 30,
        "expiring": 140,
        "expiring_members": 2,
    },
    "reward_spend": {
        "report": "reward_spend",
        "timezone": "Asia/Shanghai",
        "from": "2026-11-01",
        "to": "2026-11-18",
        "months": [
            {
                "month": "2026-11-01",
                "points_spent": 50,
                "spends": 2,
                "cash_paid_fen": 888,
                "cash_committed_fen": 500,
                "paid_by_source": {"holiday": 888},
                "committed_by_source": {"redemption": 500},
                "redemptions": {"red_packet": {"requested": {"count": 1, "points": 50}}},
            }
        ],
    },
}
NAMES = [*REPORTS, *ALIASES]


class ReportView(APIView):
    required_scope = Scope.ADMIN

    @extend_schema(
        operation_id="reports_retrieve",
        summary="An operator's report (activity, DAU/WAU/MAU, retention, content mix and stage, "
        "usual hours, points liability, reward spend)",
        description=(
            "All days, weeks (ISO, Monday first), months and hours are the community's local "
            "ones. *Active* means at least one `check_in` or `message` event. Reversed events "
            "count nowhere. `stage` is another name for `content_mix`. Parameters: `weeks` "
            "(1-104, default 12) for activity, active_users and content_mix; `months` (1-36, "
            "default 12) for retention and reward_spend; `days` (1-90, default 30) for "
            "usual_hours; liability takes none. A parameter the report does not take is a 400 "
            "naming it. Definitions: docs/incentives.md, *Reports and the dashboard*."
        ),
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, enum=NAMES),
            OpenApiParameter("weeks", int, required=False, description="1 to 104; 12 by default."),
            OpenApiParameter("months", int, required=False, description="1 to 36; 12 by default."),
            OpenApiParameter("days", int, required=False, description="1 to 90; 30 by default."),
        ],
        responses={
            200: OpenApiTypes.OBJECT,
            400: schema.PROBLEM,
            401: schema.PROBLEM,
            403: schema.PROBLEM,
            404: schema.PROBLEM,
        },
        examples=[
            *(
                OpenApiExample(name, value=value, response_only=True, status_codes=["200"])
                for name, value in EXAMPLES.items()
            ),
            schema.example_problem(
                400,
                "validation_error",
                "Invalid request",
                [
                    {
                        "field": "weeks",
                        "code": "invalid",
                        "message": "must be an integer from 1 to 104",
                    }
                ],
            ),
            schema.example_problem(
                404,
                "report_not_found",
                "Report not found",
                [{"field": "name", "code": "unknown_report", "message": "must be one of […]"}],
            ),
        ],
        tags=["reports"],
    )
    @reads_from_replica()  # docs/scaling.md: reports tolerate replica lag
    def get(self, request: Request, community: str, name: str) -> Response:
        found = _community(request)
        params = report_parameters(name, request.query_params) if name in NAMES else {}
        body = report_run(found, name, params)  # an unknown name: 404 naming it
        return Response(_plain({"report": ALIASES.get(name, name), **body}))
