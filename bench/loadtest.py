"""A sustained mixed load test against the service run as a fleet, then every ledger invariant.

``make loadtest`` (``DB_PREFER_LOCAL=1 python -m bench.loadtest``):

1. creates its own database (``LOADTEST_DB``, default ``loadtest_main``, dropped at the end
   unless ``BENCH_KEEP_DB=1``), migrates it, and sets up ``LOADTEST_COMMUNITIES`` communities
   with ``LOADTEST_MEMBERS`` members in all (credited set-based, as ``bench.rewards``), one key
   per scope in each, and a catalog of two items (a virtual item with no stock, a merch item
   with two variants of ``LOADTEST_STOCK`` each, so that stock runs out under the load);
2. measures a raw psycopg baseline (single-row INSERT+COMMIT from as many connections as there
   are clients, ``LOADTEST_RAW_SECONDS``), then starts the fleet: two gunicorn servers (the
   service's threaded worker, ``config.gunicorn_worker``) on two ports, a Celery worker and
   Celery beat, sharing the database and a Redis broker
   (``redis://127.0.0.1:6379/<LOADTEST_BROKER_DB>``; rate limits counted in Redis db
   ``LOADTEST_REDIS_DB``, far above the load);
3. drives both servers from ``LOADTEST_DRIVERS`` separate processes (``LOADTEST_CLIENTS``
   closed-loop client threads in all, loopback only) for ``LOADTEST_SECONDS``: 85% single
   events (new ids; 3% of them replays, 2% invalid, 1% a conflicting body), 5% batches of
   ``LOADTEST_BATCH`` events (now and then an invalid or replayed item), 8% reads (a member's
   rank, a member's profile), 2% redemptions (70% of those created then approved by an admin);
4. samples the broker's backlog while the load runs; then stops the servers and beat, lets the
   worker drain the broker (up to ``LOADTEST_DRAIN_SECONDS``; what is left is reported), stops
   it, and checks the invariants with SQL.

Figures go to stdout (``loadtest …`` lines and one ``figure()``-style line beside the raw
baseline), notes to stderr as ``# …``; both are written to ``var/bench/loadtest.txt``
(``LOADTEST_OUT``). Exit status: 0; 1 when an invariant is violated; 2 when the invariants hold
but some answers were unexpected (5xx, an unexpected 4xx, a transport error, a replay that
answered differently).

Knobs: LOADTEST_SECONDS (300), LOADTEST_COMMUNITIES (4), LOADTEST_MEMBERS (4000),
LOADTEST_CLIENTS (16), LOADTEST_DRIVERS (2), LOADTEST_WORKERS (3 per server), LOADTEST_THREADS
(4), LOADTEST_BATCH (50), LOADTEST_STOCK (10), LOADTEST_CELERY_CONCURRENCY (2),
LOADTEST_RAW_SECONDS (10; 0: no baseline), LOADTEST_DRAIN_SECONDS (300), LOADTEST_DB
(loadtest_main), LOADTEST_BROKER_DB (11), LOADTEST_REDIS_DB (12), LOADTEST_OUT, LOADTEST_WORK
(logs and the drivers' files; var/bench/loadtest-<db>), BENCH_KEEP_DB.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import database
from bench.load import EVENT_TYPES, run_phase
from bench.server import BIN, ROOT, Server, gunicorn
from config.gunicorn_worker import THREADED_WORKER

OUT_DIR = ROOT / "var" / "bench"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
SHIPPING = {"name": "Load Test", "phone": "138-0000-0000", "address": "上海市徐汇区某路 1 号"}
REFUSALS = {"not_eligible", "insufficient_points", "out_of_stock"}
VIRTUAL, MERCH, VARIANTS = "vi-sticker", "mr-tee", ("s", "m")

# Endpoints, in the order they are reported.
EV, BATCH, RANK, PROFILE, REDEEM, APPROVE = (
    "POST …/events",
    "POST …/events/batch",
    "GET …/members/{m}/rank",
    "GET …/members/{m}",
    "POST …/redemptions",
    "POST …/redemptions/{id}/approve",
)
ENDPOINTS = (EV, BATCH, RANK, PROFILE, REDEEM, APPROVE)
UNEXPECTED = ("5xx", "unexpected_4xx", "other_status", "transport", "mismatch")

_lines: list[str] = []


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def note(text: str) -> None:
    """As ``bench.run.note``; also kept for the report file."""
    _lines.append(f"# {text}")
    print(f"# {text}", file=sys.stderr, flush=True)


def out(text: str) -> None:
    _lines.append(text)
    print(text, flush=True)


def figure(name: str, ours: float, raw: float, unit: str, raw_unit: str | None = None) -> None:
    """As ``bench.run.figure``; also kept for the report file."""
    ratio = ours / raw if raw else float("nan")
    digits = 0 if max(ours, raw) >= 100 else 1
    out(
        f"{name}: ours {ours:.{digits}f} {unit}, raw baseline {raw:.{digits}f} "
        f"{raw_unit or unit}, ratio {ratio:.2f}"
    )


# --- the driver (a separate process) -------------------------------------------------------------


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # ms, every answered request
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)  # ok, expected_4xx, or UNEXPECTED
    codes: Counter[str] = field(default_factory=Counter)  # the problem codes of 4xx answers
    examples: dict[str, str] = field(default_factory=dict)


class Answer(Exception):
    """A transport failure: no HTTP answer."""


class Client:
    """One closed-loop client thread: its connections to both servers, its ids, its tallies."""

    def __init__(self, config: dict[str, Any], index: int, tallies: dict[str, Tally]) -> None:
        self.config = config
        self.ports: list[int] = config["ports"]
        self.conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=60) for p in self.ports]
        self.rng = random.Random(config["seed"] * 1000 + index)
        self.prefix = f"{config['run']}-{config['driver']}-{index}"
        self.tallies = tallies
        self.n = 0
        self.turn = index
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # slug, body, result
        self.ids: list[tuple[str, str, str]] = []  # (acked | rejected | unknown, slug, id)
        self.redemptions: list[tuple[str, str, str]] = []  # (created | approved, slug, id)

    # -- plumbing --

    def request(self, method: str, path: str, key: str, body: Any = None) -> tuple[int, bytes]:
        """One request to the next server in turn; a keep-alive connection the server closed
        meanwhile is reopened once (the requests are idempotent by id)."""
        self.turn += 1
        slot = self.turn % len(self.conns)
        headers = {"Authorization": f"Api-Key {key}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self.conns[slot]
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                if attempt == 2 or not isinstance(
                    exc, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError
                ):
                    raise Answer(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def record(self, endpoint: str, started: float, status: int, outcome: str, data: bytes) -> None:
        tally = self.tallies[endpoint]
        tally.latencies.append(round((time.perf_counter() - started) * 1000, 3))
        tally.statuses[str(status)] += 1
        tally.outcomes[outcome] += 1
        if 400 <= status < 500:
            try:
                tally.codes[str(json.loads(data).get("code", "?"))] += 1
            except (ValueError, AttributeError):
                tally.codes["?"] += 1
        if outcome != "ok" and outcome not in tally.examples:
            tally.examples[outcome] = f"HTTP {status} {data[:300]!r}"

    def fail(self, endpoint: str, outcome: str, text: str) -> None:
        tally = self.tallies[endpoint]
        tally.outcomes[outcome] += 1
        tally.statuses[outcome] += 1
        tally.examples.setdefault(outcome, text)

    @staticmethod
    def classify(status: int, expected: set[int]) -> str:
        if status in expected:
            return "ok" if status < 300 else "expected_4xx"
        if status >= 500:
            return "5xx"
        return "unexpected_4xx" if 400 <= status < 500 else "other_status"

    def community(self) -> dict[str, Any]:
        return dict(self.rng.choice(self.config["communities"]))

    def member(self, *, seeded: bool = True) -> str:
        if not seeded and self.rng.random() < 0.02:  # a newcomer, created on their first event
            return f"n{self.rng.randrange(100_000):05d}"
        return f"m{self.rng.randrange(self.config['members_per_community']):05d}"

    def event(self) -> dict[str, Any]:
        self.n += 1
        return {
            "id": f"{self.prefix}-{self.n}",
            "type": self.rng.choice(EVENT_TYPES),
            "member": self.member(seeded=False),
            "occurred_at": dt.datetime.now(tz=SHANGHAI).isoformat(timespec="milliseconds"),
            "group": f"g{self.rng.randrange(20)}",
        }

    def invalid_event(self) -> dict[str, Any]:
        body = self.event()
        if self.rng.random() < 0.5:
            body["type"] = "no_such_type"
        else:
            body["member"] = "not a member id!"
        return body

    # -- operations --

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.85:
            self.single()
        elif roll < 0.90:
            self.batch()
        elif roll < 0.98:
            self.read(RANK if self.rng.random() < 0.5 else PROFILE)
        else:
            self.redeem()

    def single(self) -> None:
        c = self.community()
        path = f"/api/v1/communities/{c['slug']}/events"
        roll = self.rng.random()
        if roll < 0.03 and self.sent:
            slug, body, result = self.rng.choice(self.sent)
            c = next(x for x in self.config["communities"] if x["slug"] == slug)
            path = f"/api/v1/communities/{slug}/events"
            kind = "replay"
        elif roll < 0.04 and self.sent:
            slug, body, result = self.rng.choice(self.sent)
            c = next(x for x in self.config["communities"] if x["slug"] == slug)
            path = f"/api/v1/communities/{slug}/events"
            body = {**body, "group": "conflicting-group"}
            kind = "conflict"
        elif roll < 0.06:
            body, kind = self.invalid_event(), "invalid"
        else:
            body, kind = self.event(), "new"
        started = time.perf_counter()
        try:
            status, data = self.request("POST", path, c["events_key"], body)
        except Answer as exc:
            self.fail(EV, "transport", str(exc))
            if kind in ("new", "invalid"):
                self.ids.append(("unknown", c["slug"], body["id"]))
            return
        expected = {
            "new": {201},
            "replay": {200},
            "conflict": {409},
            "invalid": {400},
        }[kind]
        outcome = self.classify(status, expected)
        if outcome == "ok" and kind == "replay":
            if json.loads(data) != {**result, "status": "replayed"}:
                outcome = "mismatch"
        self.record(EV, started, status, outcome, data)
        if kind == "new":
            if status == 201:
                self.ids.append(("acked", c["slug"], body["id"]))
                if len(self.sent) < 2000:
                    self.sent.append((c["slug"], body, json.loads(data)))
                else:
                    self.sent[self.rng.randrange(2000)] = (c["slug"], body, json.loads(data))
            elif 400 <= status < 500:
                self.ids.append(("rejected", c["slug"], body["id"]))
            else:
                self.ids.append(("unknown", c["slug"], body["id"]))
        elif kind == "invalid":
            self.ids.append(("rejected" if status == 400 else "unknown", c["slug"], body["id"]))

    def batch(self) -> None:
        c = self.community()
        path = f"/api/v1/communities/{c['slug']}/events/batch"
        items: list[tuple[str, dict[str, Any]]] = [
            ("new", self.event()) for _ in range(self.config["batch"])
        ]
        if self.rng.random() < 0.5:
            items[self.rng.randrange(len(items))] = ("invalid", self.invalid_event())
        mine = [s for s in self.sent if s[0] == c["slug"]]
        if mine and self.rng.random() < 0.5:
            items[self.rng.randrange(len(items))] = ("replay", self.rng.choice(mine)[1])
        started = time.perf_counter()
        try:
            status, data = self.request(
                "POST", path, c["events_key"], {"events": [b for _, b in items]}
            )
        except Answer as exc:
            self.fail(BATCH, "transport", str(exc))
            self.ids += [("unknown", c["slug"], b["id"]) for k, b in items if k != "replay"]
            return
        outcome = self.classify(status, {200})
        if status == 200:
            results = json.loads(data)["results"]
            want = {"new": "accepted", "invalid": "invalid", "replay": "replayed"}
            for (kind, body), result in zip(items, results, strict=True):
                if result["status"] != want[kind] or result.get("id") != body["id"]:
                    outcome = "mismatch"
                    self.tallies[BATCH].examples.setdefault(
                        "mismatch", f"item {kind}: {json.dumps(result)[:300]}"
                    )
                if kind == "replay":
                    continue
                if result["status"] == "accepted":
                    self.ids.append(("acked", c["slug"], body["id"]))
                elif result["status"] == "invalid":
                    self.ids.append(("rejected", c["slug"], body["id"]))
                else:
                    self.ids.append(("unknown", c["slug"], body["id"]))
        else:
            self.ids += [
                ("rejected" if 400 <= status < 500 else "unknown", c["slug"], b["id"])
                for k, b in items
                if k != "replay"
            ]
        self.record(BATCH, started, status, outcome, data)

    def read(self, endpoint: str) -> None:
        c = self.community()
        path = f"/api/v1/communities/{c['slug']}/members/{self.member()}"
        if endpoint == RANK:
            path += "/rank"
        started = time.perf_counter()
        try:
            status, data = self.request("GET", path, c["read_key"])
        except Answer as exc:
            self.fail(endpoint, "transport", str(exc))
            return
        self.record(endpoint, started, status, self.classify(status, {200}), data)

    def redeem(self) -> None:
        c = self.community()
        self.n += 1
        client_id = f"{self.prefix}-r{self.n}"
        body: dict[str, Any] = {"id": client_id, "member": self.member()}
        if self.rng.random() < 0.5:
            body["reward"] = VIRTUAL
        else:
            body |= {"reward": MERCH, "variant": self.rng.choice(VARIANTS), "shipping": SHIPPING}
        started = time.perf_counter()
        try:
            status, data = self.request(
                "POST", f"/api/v1/communities/{c['slug']}/redemptions", c["rewards_key"], body
            )
        except Answer as exc:
            self.fail(REDEEM, "transport", str(exc))
            return
        outcome = self.classify(status, {201})
        if status == 409:
            try:
                code = json.loads(data).get("code", "")
            except ValueError:
                code = ""
            outcome = "expected_4xx" if code in REFUSALS else "unexpected_4xx"
        self.record(REDEEM, started, status, outcome, data)
        if status != 201:
            return
        self.redemptions.append(("created", c["slug"], client_id))
        if self.rng.random() >= 0.7:
            return  # left pending: its points stay held, its stock reserved
        path = f"/api/v1/communities/{c['slug']}/redemptions/{client_id}/approve"
        started = time.perf_counter()
        try:
            status, data = self.request("POST", path, c["admin_key"], {})
        except Answer as exc:
            self.fail(APPROVE, "transport", str(exc))
            return
        outcome = self.classify(status, {200})
        if status == 200 and json.loads(data).get("status") != "approved":
            outcome = "mismatch"
        self.record(APPROVE, started, status, outcome, data)
        if status == 200:
            self.redemptions.append(("approved", c["slug"], client_id))

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


def drive(config_path: Path) -> int:
    """The driver process: ``config['clients']`` threads until ``config['seconds']`` pass."""
    config = json.loads(config_path.read_text())
    tallies_per_client = [{e: Tally() for e in ENDPOINTS} for _ in range(config["clients"])]
    clients = [Client(config, i, tallies_per_client[i]) for i in range(config["clients"])]
    started = time.monotonic()
    deadline = started + config["seconds"]
    crashes: list[str] = []

    def loop(client: Client) -> None:
        try:
            while time.monotonic() < deadline:
                client.step()
        except Exception as exc:  # noqa: BLE001 - a bug in the driver: reported, run fails
            crashes.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    for client in clients:
        client.close()
    merged: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        parts = [t[endpoint] for t in tallies_per_client]
        examples: dict[str, str] = {}
        for part in parts:
            for k, v in part.examples.items():
                examples.setdefault(k, v)
        merged[endpoint] = {
            "latencies": [x for p in parts for x in p.latencies],
            "statuses": dict(sum((p.statuses for p in parts), Counter())),
            "outcomes": dict(sum((p.outcomes for p in parts), Counter())),
            "codes": dict(sum((p.codes for p in parts), Counter())),
            "examples": examples,
        }
    result_path = Path(config["result"])
    with open(str(result_path) + ".ids", "w") as ids:
        for client in clients:
            for kind, slug, client_id in client.ids:
                ids.write(f"{kind}\t{slug}\t{client_id}\n")
    with open(str(result_path) + ".redemptions", "w") as rows:
        for client in clients:
            for kind, slug, client_id in client.redemptions:
                rows.write(f"{kind}\t{slug}\t{client_id}\n")
    result_path.write_text(
        json.dumps({"seconds": elapsed, "endpoints": merged, "crashes": crashes})
    )
    return 1 if crashes else 0


# --- setup ---------------------------------------------------------------------------------------


def setup(
    url: str, communities: int, members: int, stock: int, broker: str
) -> list[dict[str, Any]]:
    """Migrate, then the communities, their members, keys and catalog; Django in this process,
    on the run's broker (what it queues goes where the run's worker takes it, not to a
    filesystem queue nobody reads)."""
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from bench.rewards import generate_members
    from points.models import Scope
    from points.services import api_key_create, community_create
    from rewards.catalog import RewardInput, VariantInput, reward_save

    call_command("migrate", interactive=False, verbosity=0)
    out_: list[dict[str, Any]] = []
    for i in range(communities):
        community = community_create(slug=f"load-{i}", name=f"Load test community {i}")
        generate_members(url, community.pk, members // communities)
        keys = {}
        for name, scope in (
            ("events_key", Scope.EVENTS_WRITE),
            ("read_key", Scope.MEMBERS_READ),
            ("rewards_key", Scope.REWARDS_WRITE),
            ("admin_key", Scope.ADMIN),
        ):
            _key, keys[name] = api_key_create(community=community, scopes=[scope], name=name)
        reward_save(
            community=community,
            item=RewardInput(code=VIRTUAL, kind="virtual", title="Sticker", cost_points=100),
            actor="loadtest",
            create=True,
        )
        reward_save(
            community=community,
            item=RewardInput(
                code=MERCH,
                kind="merch",
                title="T-shirt",
                cost_points=300,
                value_fen=5000,
                variants=tuple(VariantInput(v, v.upper(), stock) for v in VARIANTS),
            ),
            actor="loadtest",
            create=True,
        )
        out_.append({"slug": community.slug, "id": community.pk, **keys})
    connections.close_all()
    return out_


# --- the fleet -----------------------------------------------------------------------------------


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(  # noqa: S603 - our own celery, fixed arguments
            command,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def _servers(env: dict[str, str], workers: int, threads: int, work: Path) -> Iterator[list[Server]]:
    """The two API servers, started and stopped side by side."""
    managers = [
        gunicorn(
            env=env,
            workers=workers,
            worker_class=THREADED_WORKER,
            threads=threads,
            log_path=work / f"gunicorn-{name}.log",
        )
        for name in ("a", "b")
    ]
    entered: list[Any] = []
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
        errors = []
        for manager, future in zip(managers, futures, strict=True):
            try:
                entered.append((manager, future.result()))
            except Exception as exc:  # noqa: BLE001 - raised below, after the others stop
                errors.append(exc)
    try:
        if errors:
            raise errors[0]
        yield [server for _, server in entered]
    finally:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda pair: pair[0].__exit__(None, None, None), entered))


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """TERM (a warm shutdown), then KILL its own process group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pending(broker_url: str) -> int:
    """Tasks in the broker: queued (every list in our broker database is a queue, whatever the
    routing), or reserved by the worker (ETA tasks, prefetched: kombu's ``unacked``)."""
    import redis

    client = redis.Redis.from_url(broker_url)
    queued = sum(
        int(client.llen(key)) for key in client.scan_iter(count=1000) if client.type(key) == b"list"
    )
    return queued + int(client.hlen("unacked"))


def _drain(broker_url: str, worker: subprocess.Popen[bytes], limit: float) -> tuple[float, int]:
    """Wait until the broker holds no task; the seconds waited and the tasks left."""
    started = time.monotonic()
    quiet = pending = 0
    while time.monotonic() - started < limit and worker.poll() is None:
        pending = _pending(broker_url)
        quiet = quiet + 1 if pending == 0 else 0
        if quiet >= 3:
            break
        time.sleep(0.5)
    return time.monotonic() - started, pending


# --- invariants ----------------------------------------------------------------------------------

# (name, SQL counting the violations, SQL giving a few examples)
INVARIANTS: list[tuple[str, str]] = [
    (
        "balance = Σ ledger entries, per member",
        """SELECT m.id, m.external_id, m.balance, coalesce(e.total, 0) AS entries
           FROM points_member m
           LEFT JOIN (SELECT member_id, sum(points) AS total FROM points_ledgerentry
                      GROUP BY member_id) e ON e.member_id = m.id
           WHERE m.balance <> coalesce(e.total, 0)""",
    ),
    (
        "no duplicate event ids per community",
        """SELECT community_id, client_id, count(*) FROM points_event
           GROUP BY community_id, client_id HAVING count(*) > 1""",
    ),
    (
        "no duplicate award per (event, member, rule)",
        """SELECT event_id, member_id, rule, count(*) FROM points_ledgerentry
           WHERE kind = 'award' GROUP BY event_id, member_id, rule HAVING count(*) > 1""",
    ),
    (
        "nothing negative (balance, held, owed, lifetime)",
        """SELECT id, external_id, balance, held, owed, lifetime_points FROM points_member
           WHERE balance < 0 OR held < 0 OR owed < 0 OR lifetime_points < 0""",
    ),
    (
        "no negative balance_after in the ledger",
        "SELECT id, member_id, balance_after FROM points_ledgerentry WHERE balance_after < 0",
    ),
    (
        "held ≤ balance",
        "SELECT id, external_id, held, balance FROM points_member WHERE held > balance",
    ),
    (
        "held = Σ points of pending redemptions, per member",
        """SELECT m.id, m.external_id, m.held, coalesce(r.total, 0) AS pending
           FROM points_member m
           LEFT JOIN (SELECT member_id, sum(points) AS total FROM rewards_redemption
                      WHERE status = 'requested' GROUP BY member_id) r ON r.member_id = m.id
           WHERE m.held <> coalesce(r.total, 0)""",
    ),
    (
        "every acknowledged event stored exactly once",
        """SELECT a.slug, a.client_id, count(e.id) FROM loadtest_ids a
           JOIN points_community c ON c.slug = a.slug
           LEFT JOIN points_event e ON e.community_id = c.id AND e.client_id = a.client_id
           WHERE a.kind = 'acked' GROUP BY a.slug, a.client_id HAVING count(e.id) <> 1""",
    ),
    (
        "no rejected event stored",
        """SELECT a.slug, a.client_id FROM loadtest_ids a
           JOIN points_community c ON c.slug = a.slug
           JOIN points_event e ON e.community_id = c.id AND e.client_id = a.client_id
           WHERE a.kind = 'rejected'""",
    ),
    (
        "no stored event that was neither acknowledged nor lost in transit",
        """SELECT c.slug, e.client_id FROM points_event e
           JOIN points_community c ON c.id = e.community_id
           WHERE NOT EXISTS (SELECT 1 FROM loadtest_ids a WHERE a.slug = c.slug
                             AND a.client_id = e.client_id AND a.kind IN ('acked', 'unknown'))""",
    ),
    (
        "stock never oversold (0 ≤ reserved ≤ stock)",
        """SELECT id, code, stock, reserved FROM rewards_rewardvariant
           WHERE reserved < 0 OR stock < 0 OR reserved > stock""",
    ),
    (
        "stock taken + stock left = stock set up, per variant",
        """SELECT v.id, v.code, v.stock, coalesce(r.taken, 0) AS taken
           FROM rewards_rewardvariant v
           LEFT JOIN (SELECT variant_id, sum(quantity) AS taken FROM rewards_redemption
                      WHERE status IN ('approved', 'fulfilled') GROUP BY variant_id) r
             ON r.variant_id = v.id
           WHERE v.stock + coalesce(r.taken, 0) <> %(stock)s""",
    ),
    (
        "reserved = Σ quantity of pending redemptions, per variant",
        """SELECT v.id, v.code, v.reserved, coalesce(r.pending, 0) AS pending
           FROM rewards_rewardvariant v
           LEFT JOIN (SELECT variant_id, sum(quantity) AS pending FROM rewards_redemption
                      WHERE status = 'requested' GROUP BY variant_id) r
             ON r.variant_id = v.id
           WHERE v.reserved <> coalesce(r.pending, 0)""",
    ),
    (
        "every acknowledged redemption stored, every acknowledged approval approved",
        """SELECT a.kind, a.slug, a.client_id, r.status FROM loadtest_redemptions a
           JOIN points_community c ON c.slug = a.slug
           LEFT JOIN rewards_redemption r ON r.community_id = c.id AND r.client_id = a.client_id
           WHERE r.id IS NULL OR (a.kind = 'approved' AND r.status <> 'approved')""",
    ),
    (
        "week totals and month totals each add up to lifetime points, the all-time total, "
        "per member (decisions 42, 48)",
        """SELECT m.id, m.external_id, m.lifetime_points AS all_time, w.total AS weeks,
                  mo.total AS months
           FROM points_member m
           LEFT JOIN LATERAL (SELECT coalesce(sum(points), 0) AS total FROM points_periodtotal
                              WHERE member_id = m.id AND kind = 'week') w ON true
           LEFT JOIN LATERAL (SELECT coalesce(sum(points), 0) AS total FROM points_periodtotal
                              WHERE member_id = m.id AND kind = 'month') mo ON true
           WHERE w.total <> m.lifetime_points OR mo.total <> m.lifetime_points""",
    ),
]


def _load_ids(conn: psycopg.Connection[Any], table: str, paths: list[Path]) -> int:
    conn.execute(f"CREATE TEMP TABLE {table} (kind text, slug text, client_id text)")
    rows = 0
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN") as copy:
        for path in paths:
            with path.open() as handle:
                for line in handle:
                    kind, slug, client_id = line.rstrip("\n").split("\t")
                    copy.write_row((kind, slug, client_id))
                    rows += 1
    conn.execute(f"CREATE INDEX ON {table} (slug, client_id)")
    conn.execute(f"ANALYZE {table}")
    return rows


def check_invariants(url: str, results: list[Path], stock: int) -> int:
    """Every invariant, one line each; the number violated."""
    violated = 0
    with psycopg.connect(url, autocommit=True) as conn:
        ids = _load_ids(conn, "loadtest_ids", [Path(f"{r}.ids") for r in results])
        reds = _load_ids(conn, "loadtest_redemptions", [Path(f"{r}.redemptions") for r in results])
        kinds: dict[str, int] = dict(
            conn.execute("SELECT kind, count(*) FROM loadtest_ids GROUP BY kind")
        )
        stored = conn.execute("SELECT count(*) FROM points_event").fetchone()
        note(
            f"checking invariants: {ids} event ids sent ({kinds.get('acked', 0)} acknowledged, "
            f"{kinds.get('rejected', 0)} rejected, {kinds.get('unknown', 0)} without an answer), "
            f"{stored[0] if stored else 0} events stored, {reds} redemption acknowledgements"
        )
        for name, query in INVARIANTS:
            params = {"stock": stock} if "%(stock)s" in query else None
            rows = conn.execute(f"SELECT count(*) FROM ({query}) x", params).fetchone()
            count = int(rows[0]) if rows else 0
            if count:
                violated += 1
                sample = conn.execute(f"{query} LIMIT 3", params).fetchall()
                out(f"invariant {name}: VIOLATED by {count} rows, e.g. {sample}")
            else:
                out(f"invariant {name}: ok")
    out(f"loadtest.invariants: {len(INVARIANTS)} checks, {violated} violated")
    return violated


# --- the report ----------------------------------------------------------------------------------


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    if q == 0.5:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(results: list[dict[str, Any]], seconds: float) -> tuple[int, int, float]:
    """Per endpoint lines; returns (requests answered, unexpected answers, requests/s)."""
    total = unexpected_total = 0
    for endpoint in ENDPOINTS:
        parts = [r["endpoints"][endpoint] for r in results]
        latencies = sorted(x for p in parts for x in p["latencies"])
        statuses: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for p in parts:
            statuses.update(p["statuses"])
            outcomes.update(p["outcomes"])
            codes.update(p["codes"])
            for k, v in p["examples"].items():
                examples.setdefault(k, v)
        requests = sum(outcomes.values())
        total += requests
        unexpected = sum(outcomes.get(k, 0) for k in UNEXPECTED)
        unexpected_total += unexpected
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        expected = outcomes.get("expected_4xx", 0)
        text = (
            f"loadtest {endpoint}: {requests / seconds:.1f} req/s, p50 "
            f"{_quantile(latencies, 0.5):.1f} ms, p99 {_quantile(latencies, 0.99):.1f} ms; "
            f"{requests} requests ({by_status or 'none'}); expected 4xx {expected}, "
            f"unexpected {unexpected}"
        )
        if unexpected:
            text += " (" + ", ".join(f"{k} {outcomes[k]}" for k in UNEXPECTED if outcomes.get(k))
            text += ")"
        out(text)
        if codes:
            note(
                f"{endpoint} 4xx by code: " + ", ".join(f"{k} {v}" for k, v in codes.most_common())
            )
        for kind in UNEXPECTED:
            if kind in examples:
                note(f"first {kind} on {endpoint}: {examples[kind]}")
    return total, unexpected_total, total / seconds if seconds else 0.0


# --- orchestration -------------------------------------------------------------------------------


def _redis_answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "no"
        return False


def main() -> int:
    seconds = _env_float("LOADTEST_SECONDS", 300)
    communities = _env_int("LOADTEST_COMMUNITIES", 4)
    members = _env_int("LOADTEST_MEMBERS", 4000)
    clients = _env_int("LOADTEST_CLIENTS", 16)
    drivers = max(1, min(_env_int("LOADTEST_DRIVERS", 2), clients))
    workers = _env_int("LOADTEST_WORKERS", 3)
    threads = _env_int("LOADTEST_THREADS", 4)
    batch = _env_int("LOADTEST_BATCH", 50)
    stock = _env_int("LOADTEST_STOCK", 10)
    raw_seconds = _env_float("LOADTEST_RAW_SECONDS", 10)
    drain_limit = _env_float("LOADTEST_DRAIN_SECONDS", 300)
    dbname = os.environ.get("LOADTEST_DB", "loadtest_main")
    keep_db = os.environ.get("BENCH_KEEP_DB") == "1"
    broker = f"redis://127.0.0.1:6379/{_env_int('LOADTEST_BROKER_DB', 11)}"
    limits = f"redis://127.0.0.1:6379/{_env_int('LOADTEST_REDIS_DB', 12)}"
    report_path = Path(os.environ.get("LOADTEST_OUT", OUT_DIR / "loadtest.txt"))
    work = Path(os.environ.get("LOADTEST_WORK") or OUT_DIR / f"loadtest-{dbname}")
    work.mkdir(parents=True, exist_ok=True)
    if not _redis_answers(broker):
        print(f"loadtest: Redis does not answer at {broker}", file=sys.stderr)
        return 3
    import redis

    redis.Redis.from_url(broker).flushdb()  # tasks a previous run left for its dropped database

    started = time.monotonic()
    url = database.recreate(database.server_url(), dbname)
    status = 0
    try:
        catalog = setup(url, communities, members, stock, broker)
        pg = database.server_settings(url)
        note(
            f"database {dbname} (PostgreSQL {pg['server_version']}, synchronous_commit="
            f"{pg['synchronous_commit']}, fsync={pg['fsync']}); {communities} communities, "
            f"{members} members, stock {stock} per variant; set up in "
            f"{time.monotonic() - started:.0f} s"
        )
        note(f"load average (1, 5, 15 min): {os.getloadavg()}, {os.cpu_count()} CPUs")
        raw_rate = 0.0
        if raw_seconds > 0:
            database.create_raw_table(url)
            inserters = [
                database.RawSingleInserter(url, database.RawRows(f"raw-{i}", i, members))
                for i in range(clients)
            ]
            try:
                raw = run_phase("raw", [w.step for w in inserters], warmup=1, duration=raw_seconds)
            finally:
                for w in inserters:
                    w.close()
            raw_rate = raw.rate
            note(
                f"raw single-row INSERT+COMMIT from {clients} connections: {raw.rate:.0f} "
                f"rows/s, p50 {raw.latency_ms(0.5):.2f} ms, p99 {raw.latency_ms(0.99):.2f} ms"
            )
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP TABLE {database.RAW_TABLE}")

        env = dict(os.environ)
        env.update(
            DATABASE_URL=url,
            DJANGO_SETTINGS_MODULE="config.settings.local",
            DB_CONN_MAX_AGE="600",
            CELERY_BROKER_URL=broker,
            REDIS_URL=limits,
            API_RATE_LIMIT_KEY="100000000/min",
            API_RATE_LIMIT_MEMBER="100000000/min",
            LOG_LEVEL="WARNING",
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        status = _run_fleet(
            env=env,
            url=url,
            work=work,
            catalog=catalog,
            seconds=seconds,
            clients=clients,
            drivers=drivers,
            workers=workers,
            threads=threads,
            batch=batch,
            stock=stock,
            members=members,
            communities=communities,
            raw_rate=raw_rate,
            drain_limit=drain_limit,
        )
    finally:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()
        if keep_db:
            note(f"kept database {dbname} (BENCH_KEEP_DB=1)")
        else:
            database.drop(database.server_url(), dbname)
        note(f"total {time.monotonic() - started:.0f} s; exit status {status}")
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text("\n".join(_lines) + "\n")
    return status


def _run_fleet(
    *,
    env: dict[str, str],
    url: str,
    work: Path,
    catalog: list[dict[str, Any]],
    seconds: float,
    clients: int,
    drivers: int,
    workers: int,
    threads: int,
    batch: int,
    stock: int,
    members: int,
    communities: int,
    raw_rate: float,
    drain_limit: float,
) -> int:
    from config.settings.tasks import TASK_QUEUE_NAMES

    with ExitStack() as stack:
        celery = str(BIN / "celery")
        worker = _start(
            [
                celery,
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                os.environ.get("LOADTEST_CELERY_CONCURRENCY", "2"),
                # as make run starts it: one worker for every queue (config/serve.py)
                "--queues",
                ",".join(TASK_QUEUE_NAMES),
            ],
            env,
            work / "celery-worker.log",
        )
        stack.callback(_stop, worker)
        beat = _start(
            [
                celery,
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(work / "celerybeat-schedule"),
            ],
            env,
            work / "celery-beat.log",
        )
        stack.callback(_stop, beat)
        web = stack.enter_context(ExitStack())  # closed first, before the worker drains
        servers = web.enter_context(_servers(env, workers, threads, work))
        fleet = (
            f"2 servers x gunicorn {THREADED_WORKER} {workers} workers x {threads} threads (ports "
            f"{', '.join(str(s.port) for s in servers)}), Celery worker (concurrency "
            f"{os.environ.get('LOADTEST_CELERY_CONCURRENCY', '2')}, queues "
            f"{','.join(TASK_QUEUE_NAMES)}) and beat on "
            f"{env['CELERY_BROKER_URL']}"
        )
        note(f"fleet: {fleet}; logs in {work}/")
        note(
            f"driving for {seconds:g} s from {drivers} processes, {clients} clients in all; "
            f"mix 85% single events, 5% batches of {batch}, 8% reads, 2% redemptions"
        )
        run = time.strftime("%H%M%S")
        procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        for d in range(drivers):
            share = clients // drivers + (1 if d < clients % drivers else 0)
            result = work / f"driver-{d}.json"
            for suffix in ("", ".ids", ".redemptions"):
                Path(f"{result}{suffix}").unlink(missing_ok=True)
            config = {
                "ports": [s.port for s in servers],
                "communities": catalog,
                "members_per_community": members // communities,
                "clients": share,
                "seconds": seconds,
                "batch": batch,
                "seed": d + 1,
                "driver": d,
                "run": run,
                "result": str(result),
            }
            config_path = work / f"driver-{d}.config.json"
            config_path.write_text(json.dumps(config))
            procs.append(
                (
                    subprocess.Popen(  # noqa: S603 - this module, fixed arguments
                        [sys.executable, "-m", "bench.loadtest", "drive", str(config_path)],
                        cwd=ROOT,
                    ),
                    result,
                )
            )
        # The broker's backlog while the load runs: does the worker keep up?
        backlog: list[tuple[float, int]] = []
        deadline = time.monotonic() + seconds + 300
        began = time.monotonic()
        while any(p.poll() is None for p, _ in procs) and time.monotonic() < deadline:
            backlog.append((time.monotonic() - began, _pending(env["CELERY_BROKER_URL"])))
            time.sleep(min(5.0, max(seconds / 20, 0.5)))
        failed = 0
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            failed += proc.wait() != 0
        if backlog:
            peak = max(backlog, key=lambda b: b[1])
            samples = ", ".join(f"{n}" for _, n in backlog[:: max(1, len(backlog) // 10)])
            note(
                f"broker backlog (tasks queued or reserved) during the load: peak {peak[1]} at "
                f"{peak[0]:.0f} s, {backlog[-1][1]} at the end; samples {samples}"
            )
        for name, proc in (("worker", worker), ("beat", beat)):
            if proc.poll() is not None:
                note(f"celery {name} exited early with {proc.returncode}")
                failed += 1
        results = [json.loads(r.read_text()) for _, r in procs if r.exists()]
        if len(results) != drivers:
            note("a driver left no result")
            return 1
        for r in results:
            for crash in r["crashes"]:
                note(f"driver crashed: {crash}")
        elapsed = max(r["seconds"] for r in results)
        stopping = time.monotonic()
        web.close()  # no request is running: the servers enqueue nothing more
        _stop(beat)
        waited, left = _drain(env["CELERY_BROKER_URL"], worker, drain_limit)
        _stop(worker, timeout=60)
        if left:
            note(
                f"servers and beat stopped; the worker did NOT drain the broker in {waited:.0f} "
                f"s ({left} tasks left, LOADTEST_DRAIN_SECONDS={drain_limit:g}); stopped"
            )
        else:
            note(
                f"servers and beat stopped, the worker drained the broker ({waited:.0f} s) and "
                f"stopped, in {time.monotonic() - stopping:.0f} s"
            )
    # The fleet is stopped: nothing writes any more.
    total, unexpected, rate = report(results, elapsed)
    figure(
        f"loadtest.mixed ({fleet.split(' (')[0]}, {clients} clients, {elapsed:.0f} s)",
        rate,
        raw_rate,
        "req/s",
        "rows/s",
    )
    violated = check_invariants(url, [r for _, r in procs], stock)
    note(f"{total} requests answered or failed, {unexpected} unexpected")
    if violated or failed:
        return 1
    return 2 if unexpected else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "drive":
        raise SystemExit(drive(Path(sys.argv[2])))
    raise SystemExit(main())
