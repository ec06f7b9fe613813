"""The re-run fence shared by every incentive job.

A job's run for one community and period is a ``points_jobrun`` row written in the same
transaction as the job's results: ``INSERT … ON CONFLICT DO NOTHING`` on ``UNIQUE (community,
job, period)`` decides who runs. A second run, even one started at the same moment from another
worker, waits for the first to commit, finds the row and returns the recorded result; a run
that fails rolls back with its row, so a retry starts clean.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from points.models import Community


def run_once(
    *, community: Community, job: str, period: str, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``compute`` once per (community, job, period); return its result, or the recorded
    result (with ``"already_ran": True``) when the period was already done."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO points_jobrun (community_id, job, period, started_at, result)
            VALUES (%s, %s, %s, %s, '{}'::jsonb)
            ON CONFLICT (community_id, job, period) DO NOTHING
            RETURNING id
            """,
            [community.pk, job, period, now],
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                "SELECT result FROM points_jobrun"
                " WHERE community_id = %s AND job = %s AND period = %s",
                [community.pk, job, period],
            )
            stored = cursor.fetchone()[0]
            result = json.loads(stored) if isinstance(stored, str) else dict(stored)
            return {**result, "already_ran": True}
        result = compute()
        cursor.execute(
            "UPDATE points_jobrun SET result = %s::jsonb, finished_at = %s WHERE id = %s",
            [json.dumps(result, default=str), timezone.now(), row[0]],
        )
    return result
