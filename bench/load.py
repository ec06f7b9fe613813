"""Closed-loop load: N client threads, a warm-up, then a timed window; and the HTTP clients."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.cpu import Meter, Split, machine_jiffies

# One step is one request (or one raw transaction); it returns how many units (events, rows)
# it completed and raises on anything unexpected.
Step = Callable[[], int]

# Types that score, weighted like a chatty community; daily caps are per member and day, and
# with 10,000 members a run stays far below them, so nearly every event writes ledger entries.
EVENT_TYPES = (
    ("message",) * 10 + ("share",) * 3 + ("help",) * 3 + ("ugc_post",) * 2 + ("check_in",) * 2
)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


class BenchError(Exception):
    pass


@dataclass
class PhaseResult:
    name: str
    units: int
    requests: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    first_error: str | None = None
    cpu_busy: float | None = None  # share of all cores busy during the window (Linux)
    cpu: Split | None = None  # who spent the window's CPU (``bench.cpu``), if metered

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds else 0.0

    def latency_ms(self, quantile: float) -> float:
        if not self.latencies:
            return float("nan")
        if quantile == 0.5:
            return statistics.median(self.latencies) * 1000
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000


def combine(before: PhaseResult, after: PhaseResult) -> PhaseResult:
    """One result from runs before and after another phase, so that drift cancels out."""
    busy = [r.cpu_busy for r in (before, after) if r.cpu_busy is not None]
    return PhaseResult(
        name=before.name,
        units=before.units + after.units,
        requests=before.requests + after.requests,
        errors=before.errors + after.errors,
        seconds=before.seconds + after.seconds,
        latencies=before.latencies + after.latencies,
        first_error=before.first_error or after.first_error,
        cpu_busy=sum(busy) / len(busy) if busy else None,
        cpu=before.cpu + after.cpu if before.cpu and after.cpu else None,
    )


def run_phase(
    name: str, steps: list[Step], *, warmup: float, duration: float, meter: Meter | None = None
) -> PhaseResult:
    """Run every step in its own thread, back to back; count what completes in the window
    (and, with a ``meter``, who spent the window's CPU)."""
    stop = threading.Event()
    records: list[list[tuple[float, float, int]]] = [[] for _ in steps]
    errors: list[str] = []

    def loop(index: int) -> None:
        step, out, clock = steps[index], records[index], time.perf_counter
        while not stop.is_set():
            started = clock()
            try:
                units = step()
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                units = -1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}")
            out.append((clock(), started, units))

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(steps))]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    cpu_start = machine_jiffies()
    metered = meter.read() if meter else None
    window_start = time.perf_counter()
    time.sleep(duration)
    window_end = time.perf_counter()
    cpu_end = machine_jiffies()
    split = meter.read() - metered if meter and metered else None
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    done = [r for rs in records for r in rs if window_start <= r[0] <= window_end]
    ok = [r for r in done if r[2] > 0]
    result = PhaseResult(
        name=name,
        units=sum(r[2] for r in ok),
        requests=len(ok),
        errors=len(done) - len(ok),
        seconds=window_end - window_start,
        latencies=[r[0] - r[1] for r in ok],
        first_error=errors[0] if errors else None,
        cpu_busy=_busy(cpu_start, cpu_end),
        cpu=split,
    )
    if not ok:
        raise BenchError(f"{name}: nothing succeeded ({result.first_error})")
    return result


def _busy(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    if start is None or end is None or end[1] == start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1])


class EventSource:
    """Distinct event ids, members spread over ``members`` ids, types that score."""

    def __init__(self, prefix: str, seed: int, members: int) -> None:
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.members = members
        self.n = 0

    def event(self) -> dict[str, Any]:
        self.n += 1
        return {
            "id": f"{self.prefix}-{self.n}",
            "type": self.rng.choice(EVENT_TYPES),
            "member": f"m{self.rng.randrange(self.members):05d}",
            "occurred_at": dt.datetime.now(tz=SHANGHAI).isoformat(timespec="milliseconds"),
            "group": f"g{self.rng.randrange(20)}",
        }


class HttpPoster:
    """One client connection to 127.0.0.1, reused while the server keeps it open."""

    def __init__(self, port: int, path: str, api_key: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = path
        self.headers = {"Authorization": f"Api-Key {api_key}", "Content-Type": "application/json"}

    def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", self.path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                # A keep-alive connection the server closed meanwhile: reconnect once.
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


class HttpGetter:
    """GETs one path over one connection (the web stack's floor, no database)."""

    def __init__(self, port: int, path: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = path

    def step(self) -> int:
        self.conn.request("GET", self.path)
        response = self.conn.getresponse()
        response.read()
        if response.status != 200:
            raise BenchError(f"GET {self.path}: HTTP {response.status}")
        return 1


@dataclass
class Sent:
    body: bytes
    result: dict[str, Any]


class SingleClient:
    """Posts new single events; keeps what it sent (and got) for the replay phase."""

    def __init__(self, poster: HttpPoster, source: EventSource) -> None:
        self.poster = poster
        self.source = source
        self.sent: list[Sent] = []
        self.replay_at = 0

    def step_new(self) -> int:
        body = json.dumps(self.source.event()).encode()
        status, data = self.poster.post(body)
        if status != 201:
            raise BenchError(f"new event: HTTP {status} {data[:200]!r}")
        self.sent.append(Sent(body, json.loads(data)))
        return 1

    def step_replay(self) -> int:
        """Post an event this client already posted; the answer must be the first result."""
        sent = self.sent[self.replay_at % len(self.sent)]
        self.replay_at += 1
        status, data = self.poster.post(sent.body)
        if status != 200:
            raise BenchError(f"replay: HTTP {status} {data[:200]!r}")
        # the first answer again, saying it is a replay (docs/decisions.md 23)
        if json.loads(data) != {**sent.result, "status": "replayed"}:
            raise BenchError(f"replay: a different result {data[:200]!r}")
        return 1


class BatchClient:
    """Posts batches of ``size`` new events; every item must come back accepted."""

    def __init__(self, poster: HttpPoster, source: EventSource, size: int) -> None:
        self.poster = poster
        self.source = source
        self.size = size

    def step(self) -> int:
        body = json.dumps({"events": [self.source.event() for _ in range(self.size)]}).encode()
        status, data = self.poster.post(body)
        if status != 200:
            raise BenchError(f"batch: HTTP {status} {data[:200]!r}")
        results = json.loads(data)["results"]
        accepted = sum(1 for r in results if r["status"] == "accepted")
        if accepted != self.size:
            odd = next(r for r in results if r["status"] != "accepted")
            raise BenchError(f"batch: {accepted}/{self.size} accepted, e.g. {odd}")
        return accepted
