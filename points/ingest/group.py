"""Group commit: concurrent single events of one process share one ingestion transaction.

Leader and followers, no background thread. The first request to arrive opens a group and
leads it; requests for the same community that arrive while it gathers join as followers and
wait. The leader waits at most ``window`` (2 ms by default), and only while another group of
this process is being written (alone, it goes at once: no added latency on a quiet server);
then it closes the group and ingests every event of it with one ``events_ingest`` call, on its
own database connection: one transaction, one sequence of round trips, one commit.

Guarantees, each tested in ``tests/points/test_group_commit.py``:

* nobody is answered before the commit that stored their event (followers wake after the
  leader's ``events_ingest`` returned, which is after its transaction committed);
* exactly-once is the batch path's: the same id twice in a group answers the first result,
  saying ``replayed``, or a conflict;
* an invalid event fails alone (the batch path answers each item on its own); if the whole
  group's transaction fails (an error no item check foresaw), each event is retried alone, so
  only the event that breaks fails;
* bounded: at most ``max_size`` events per group; memory is the group's events.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from points.ingest.pipeline import events_ingest
from points.ingest.records import EventInput, IngestOutcome
from points.models import Community

WINDOW_SECONDS = 0.002
MAX_SIZE = 64


@dataclass
class _Group:
    community: Community
    events: list[EventInput] = field(default_factory=list)
    outcomes: list[IngestOutcome | BaseException] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class GroupCommit:
    def __init__(self, *, window: float = WINDOW_SECONDS, max_size: int = MAX_SIZE) -> None:
        self.window = window
        self.max_size = max_size
        self._lock = threading.Lock()
        self._open: dict[int, _Group] = {}  # per community, the group still gathering
        self._writing = 0  # groups of this process being written now
        self._idle = threading.Condition(self._lock)
        self.sizes: list[int] = []  # sizes of recent groups (for the bench and the tests)

    def ingest(self, community: Community, event: EventInput) -> IngestOutcome:
        """Ingest one event, possibly in a group with concurrent ones; its outcome."""
        if not getattr(settings, "EVENTS_GROUP_COMMIT", True):
            return events_ingest(community=community, events=[event])[0]
        with self._lock:
            group = self._open.get(community.pk)
            if group is not None and len(group.events) < self.max_size:
                slot = len(group.events)
                group.events.append(event)
                leader = False
            else:
                group = _Group(community, [event])
                self._open[community.pk] = group
                slot, leader = 0, True
        if not leader:
            group.done.wait()
            return _unwrap(group.outcomes[slot])
        self._gather(group)
        try:
            self._write(group)
        finally:
            group.done.set()
        return _unwrap(group.outcomes[0])

    def _gather(self, group: _Group) -> None:
        """Wait for followers while another group is being written (at most ``window``),
        then close the group to newcomers."""
        deadline = time.monotonic() + self.window
        with self._lock:
            while self._writing and len(group.events) < self.max_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            if self._open.get(group.community.pk) is group:
                del self._open[group.community.pk]
            self._writing += 1
            self.sizes = [*self.sizes[-999:], len(group.events)]

    def _write(self, group: _Group) -> None:
        try:
            group.outcomes = list(events_ingest(community=group.community, events=group.events))
        except Exception:  # noqa: BLE001 - the group failed as a whole: each event alone
            group.outcomes = [self._alone(group.community, e) for e in group.events]
        finally:
            with self._lock:
                self._writing -= 1
                self._idle.notify_all()

    @staticmethod
    def _alone(community: Community, event: EventInput) -> IngestOutcome | BaseException:
        try:
            return events_ingest(community=community, events=[event])[0]
        except Exception as exc:  # noqa: BLE001 - handed to the request that sent the event
            return exc


def _unwrap(outcome: IngestOutcome | BaseException) -> IngestOutcome:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


group_commit = GroupCommit()
