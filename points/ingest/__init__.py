"""Event ingestion: store, score and post events, each exactly once (``pipeline`` is the
orchestrator and its docstring the map; ``points.scoring`` decides what each event earns).

| module | what it holds |
| --- | --- |
| ``records`` | the typed records: input, outcome, plan, member state, rows to write |
| ``validate`` | event-shape rules, member ids, display names, the ``occurred_at`` window |
| ``plan`` | step 1: shape checks and plans (who is paid, which day, which rules) |
| ``parts`` | step 1b: a large batch in parts that share no member, a transaction each |
| ``state`` | step 2: lock the members, read tallies, keys, hashes, cooldowns |
| ``scorer`` | step 3: score in memory with ``points.scoring`` |
| ``statements`` | the SQL: one named builder per statement, run in one pipeline |
| ``pipeline`` | the orchestrator: replays, the transaction, retries, copies of an id |
"""

from points.ingest.pipeline import event_ingest, events_ingest
from points.ingest.records import EventInput, IngestOutcome, IngestStatus
from points.ingest.scorer import periods_of
from points.ingest.validate import (
    DEFAULT_BACKFILL_DAYS,
    DISPLAY_NAME_MAX_LENGTH,
    MAX_CLOCK_SKEW,
    MEMBER_ID_MAX_LENGTH,
    display_name_clean,
    event_shape_errors,
    member_id_problem,
    occurred_at_window,
)

__all__ = [
    "DEFAULT_BACKFILL_DAYS",
    "DISPLAY_NAME_MAX_LENGTH",
    "MAX_CLOCK_SKEW",
    "MEMBER_ID_MAX_LENGTH",
    "EventInput",
    "IngestOutcome",
    "IngestStatus",
    "display_name_clean",
    "event_ingest",
    "event_shape_errors",
    "events_ingest",
    "member_id_problem",
    "occurred_at_window",
    "periods_of",
]
