"""The incentive jobs read day tallies of a few types by community and day, through the partial
index ``tally_jobs_community_day`` (points 0017) whose condition is ``JOB_TALLY_TYPES``. The
types are written twice, in that tuple and in the jobs' SQL: this ties them together. A job
that starts reading another type must add it to the tuple (and the index), or its read falls
back to the community's whole tally history."""

from __future__ import annotations

import datetime as dt
import re

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from incentives.honors import honor_roll_publish
from incentives.refresh import refresh_run
from incentives.tiers import tiers_evaluate
from points.models import JOB_TALLY_TYPES, Community
from points.services import EventInput, events_ingest
from points.timeutils import month_start, today

_NAMED = re.compile(r"event_type\s*(?:=\s*'([^']*)'|IN\s*\(([^)]*)\))", re.IGNORECASE)


def _types_named(sql: str) -> set[str]:
    named: set[str] = set()
    for one, many in _NAMED.findall(sql):
        if one:
            named.add(one)
        named.update(t.strip().strip("'") for t in many.split(",") if t.strip())
    return named


def test_every_tally_type_the_jobs_read_is_in_the_partial_index(community: Community) -> None:
    now = timezone.now()
    last_month = month_start(today(community.timezone, now), -1)
    events_ingest(
        community=community,
        events=[
            EventInput(client_id="c-1", type="check_in", member="ann"),
            EventInput(client_id="h-1", type="help", member="ann", target="bob"),
            EventInput(
                client_id="c-0",
                type="check_in",
                member="bob",
                occurred_at=dt.datetime.combine(last_month, dt.time(12), tzinfo=dt.UTC),
            ),
        ],
    )
    with CaptureQueriesContext(connection) as captured:
        tiers_evaluate(community=community, now=now)
        honor_roll_publish(community=community, month=f"{last_month:%Y-%m}", now=now)
        refresh_run(community=community, now=now)
    reads = [q["sql"] for q in captured.captured_queries if "points_dailytally" in q["sql"]]
    assert len(reads) >= 3, "each job reads the tallies"
    named = set().union(*(_types_named(sql) for sql in reads))
    assert {"*", "check_in", "content_featured", "help"} <= named  # the pattern finds them
    assert named <= set(JOB_TALLY_TYPES), sorted(named - set(JOB_TALLY_TYPES))

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'tally_jobs_community_day'"
        )
        [(definition,)] = cursor.fetchall()
    assert "(community_id, day)" in definition
    assert set(re.findall(r"'([^']*)'", definition)) == set(JOB_TALLY_TYPES)
