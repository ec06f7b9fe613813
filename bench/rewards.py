"""Rewards: redemptions over HTTP and lucky campaign allocation, beside raw psycopg baselines.

``python -m bench.rewards`` (with ``DB_PREFER_LOCAL=1``, as ``make bench``) prints three
figures, as ``name: ours X unit, raw baseline Y unit, ratio Z``, measured in one run against
one dedicated database (``BENCH_REWARDS_DB``, default ``bench_rewards``, recreated):

1. ``rewards.redeem``: POST …/redemptions per second from ``BENCH_REWARD_CLIENTS`` (16)
   client threads with keep-alive connections against the real gunicorn server, each request
   a new id for a random member and catalog item, beside single-row INSERT+COMMIT per second
   from as many raw psycopg connections (``bench.database.RawSingleInserter``), run before
   and after ours so that drift cancels out (with the p50/p99 latencies, the outcomes, and
   GET /healthz from as many clients as the web stack's floor, as notes). The catalog has
   100 items (red packets, virtual items, merch with variants and ample stock; a few for a
   minimum tier, a few once a month);
   the 10,000 members are credited set-based (one ``adjustment`` ledger entry, the balance
   and period totals that ``adjustment_create`` would have written), a few with too few
   points. Refusals (409: not eligible, not enough points, …) are a normal answer and are
   counted; any 5xx or other answer fails the run (exit status 1), after the figures.
   At the end a sample of the pending redemptions is approved in-process (points spent
   through the ledger) and one query checks that every member's balance is the sum of their
   ledger entries, their ``held`` the sum of their pending redemptions, and every variant's
   ``reserved`` the quantity of its pending redemptions.
2. ``rewards.campaign_allocate``: ``campaign_create`` of a lucky (double-mean) campaign for an
   audience of all 10,000 members (the audience query, the split, 10,000 ``Allocation`` rows
   stored, the audit row, the commit), and ``split_lucky`` alone, beside one COPY of 10,000
   rows into a table like ``rewards_allocation`` (its indexes and checks, no foreign keys)
   and its commit; each the median of ``BENCH_CAMPAIGN_RUNS`` (5) runs, interleaved
   (``rewards.campaign_split`` is the split alone beside the same COPY).

Knobs: BENCH_SECONDS (8), BENCH_WARMUP (2), BENCH_REWARD_CLIENTS (16), BENCH_MEMBERS (10000),
BENCH_REWARD_ITEMS (100), BENCH_WORKERS (3), BENCH_WORKER_CLASS (sync), BENCH_THREADS (4),
BENCH_REWARDS_DB (bench_rewards; not BENCH_DB, which names the main run's database),
BENCH_KEEP_DB (0), BENCH_PYSPY (1: sample the workers under the
redemption load afterwards, not part of the figures), BENCH_CAMPAIGN_RUNS (5),
BENCH_APPROVE (300).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import database, profiling
from bench.cpu import machine_jiffies
from bench.load import (
    BenchError,
    HttpGetter,
    HttpPoster,
    PhaseResult,
    _busy,
    combine,
    run_phase,
)
from bench.run import close_django, describe, figure, note, setup_django
from bench.server import ROOT, gunicorn

OUT_DIR = ROOT / "var" / "bench"
RAW_ALLOCATION = "bench_raw_allocation"
# What a refusal may say (409): anything else from the service is a failure of the run.
REFUSALS = {
    "not_eligible",
    "insufficient_points",
    "out_of_stock",
}
SHIPPING = {"name": "Bench Member", "phone": "138-0000-0000", "address": "上海市徐汇区某路 1 号"}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    code: str
    kind: str
    variants: tuple[str, ...]


def generate_members(bench_url: str, community_id: int, members: int) -> dict[str, Any]:
    """``members`` active members ``m00000`` … credited set-based, as ``adjustment_create``
    would: one ``adjustment`` entry each whose ``balance_after`` is the balance, lifetime
    points, and this week's, month's and all-time totals. One in 20 has fewer than 100 points
    (refused for most items); one in five is at the ladder's second tier."""
    from points.timeutils import month_start, today, week_start

    day = today("Asia/Shanghai")
    started = time.monotonic()
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(
            """
            INSERT INTO points_member (community_id, external_id, display_name, status, balance,
                                       held, lifetime_points, owed, streak_days, joined_at,
                                       created_at)
            SELECT %(c)s, 'm' || lpad((g - 1)::text, 5, '0'), 'Member ' || g, 'active', p, 0,
                   p, 0, 0, now() - (1 + g %% 365) * interval '1 day', now()
            FROM (SELECT g, CASE WHEN g %% 20 = 0 THEN 20 + floor(random() * 80)::int
                                 ELSE 5000 + floor(random() * 45000)::int END AS p
                  FROM generate_series(1, %(n)s) g) x
            """,
            {"c": community_id, "n": members},
        )
        conn.execute(
            """
            INSERT INTO points_ledgerentry (community_id, member_id, event_id, kind, points,
                                            balance_after, rule, rule_version, reason, actor,
                                            created_at)
            SELECT community_id, id, NULL, 'adjustment', balance, balance, '', NULL,
                   'bench: opening credit', 'bench', now()
            FROM points_member WHERE community_id = %(c)s ORDER BY id
            """,
            {"c": community_id},
        )
        conn.execute(
            """
            INSERT INTO points_periodtotal (community_id, member_id, kind, start, points, active)
            SELECT m.community_id, m.id, x.kind, x.start, m.balance, true
            FROM points_member m
            CROSS JOIN (VALUES ('month', %(month)s::date), ('week', %(week)s::date))
                       AS x(kind, start)
            WHERE m.community_id = %(c)s
            """,
            {
                "c": community_id,
                "month": month_start(day),
                "week": week_start(day),
            },
        )
        conn.execute(
            """
            INSERT INTO incentives_membertier (community_id, member_id, level, code, since,
                                               locked, locked_by, updated_at)
            SELECT community_id, id, 1, 'active', now() - interval '10 days', false, '', now()
            FROM points_member WHERE community_id = %(c)s AND id %% 5 = 0
            """,
            {"c": community_id},
        )
        for table in (
            "points_member",
            "points_ledgerentry",
            "points_periodtotal",
            "incentives_membertier",
        ):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return {"seconds": time.monotonic() - started}


def create_catalog(community: Any, items: int) -> list[Item]:
    """``items`` rewards through ``reward_save``: 30% red packets, 40% virtual items, 30% merch
    with four variants of ample stock; every 10th virtual item needs the ladder's second tier,
    every 10th merch item is once a month per member."""
    from incentives.config import community_ladder
    from rewards.catalog import RewardInput, VariantInput, reward_save

    second_tier = community_ladder(community.pk).tiers[1].code
    rng = random.Random(7)
    out: list[Item] = []
    red, virtual = int(items * 0.3), int(items * 0.4)
    for i in range(items):
        if i < red:
            value = rng.choice((88, 188, 500, 666, 888, 1000, 1888, 5000))
            item = RewardInput(
                code=f"rp-{i:03d}",
                kind="red_packet",
                title=f"Red packet {value / 100:.2f} yuan",
                cost_points=max(50, value),
                value_fen=value,
            )
        elif i < red + virtual:
            item = RewardInput(
                code=f"vi-{i:03d}",
                kind="virtual",
                title=f"Virtual item {i}",
                cost_points=rng.randrange(50, 2000),
                min_tier=second_tier if i % 10 == 0 else "",
            )
        else:
            item = RewardInput(
                code=f"mr-{i:03d}",
                kind="merch",
                title=f"Merch {i}",
                cost_points=rng.randrange(500, 5000),
                value_fen=rng.randrange(2000, 20000),
                limit_per_month=1 if i % 10 == 0 else None,
                variants=tuple(
                    VariantInput(code=size, label=size.upper(), stock=1_000_000)
                    for size in ("s", "m", "l", "xl")
                ),
            )
        reward_save(community=community, item=item, actor="bench", create=True)
        out.append(Item(item.code, item.kind, tuple(v.code for v in item.variants)))
    return out


# --- the redemption load -------------------------------------------------------------------------


class RedeemClient:
    """Posts new redemptions (a new id, a random member and item) over one connection; each
    answer is classified: ``created``, ``refused:<code>``, ``5xx``, or ``unexpected``."""

    def __init__(
        self, poster: HttpPoster, catalog: list[Item], members: int, prefix: str, seed: int
    ) -> None:
        self.poster = poster
        self.catalog = catalog
        self.members = members
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.n = 0
        self.first: dict[str, str] = {}

    def step(self) -> str:
        self.n += 1
        item = self.rng.choice(self.catalog)
        body: dict[str, Any] = {
            "id": f"{self.prefix}-{self.n}",
            "member": f"m{self.rng.randrange(self.members):05d}",
            "reward": item.code,
        }
        if item.kind == "merch":
            body["variant"] = self.rng.choice(item.variants)
            body["shipping"] = SHIPPING
        status, data = self.poster.post(json.dumps(body).encode())
        if status == 201:
            return "created"
        outcome = "unexpected"
        if status >= 500:
            outcome = "5xx"
        elif status == 409:
            try:
                code = json.loads(data).get("code", "")
            except ValueError:
                code = ""
            if code in REFUSALS:
                outcome = f"refused:{code}"
        if outcome not in self.first:
            self.first[outcome] = f"HTTP {status} {data[:300]!r}"
        return outcome


@dataclass
class Outcomes:
    result: PhaseResult
    counts: Counter[str]
    examples: dict[str, str]


def run_redemptions(
    name: str, clients: list[RedeemClient], *, warmup: float, duration: float
) -> Outcomes:
    """``bench.load.run_phase`` for answers that are not all successes: every answer counts
    (its latency too); what it was is counted per outcome, within the timed window."""
    stop = threading.Event()
    records: list[list[tuple[float, float, str]]] = [[] for _ in clients]
    failures: list[str] = []

    def loop(index: int) -> None:
        client, out, clock = clients[index], records[index], time.perf_counter
        while not stop.is_set():
            started = clock()
            try:
                outcome = client.step()
            except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                outcome = "transport"
                if len(failures) < 5:
                    failures.append(f"{type(exc).__name__}: {exc}")
            out.append((clock(), started, outcome))

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    cpu_start = machine_jiffies()
    window_start = time.perf_counter()
    time.sleep(duration)
    window_end = time.perf_counter()
    cpu_end = machine_jiffies()
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    done = [r for rs in records for r in rs if window_start <= r[0] <= window_end]
    answered = [r for r in done if r[2] == "created" or r[2].startswith("refused:")]
    counts = Counter(r[2] for r in done)
    examples: dict[str, str] = {}
    for client in clients:
        for outcome, text in client.first.items():
            examples.setdefault(outcome, text)
    if failures:
        examples.setdefault("transport", failures[0])
    result = PhaseResult(
        name=name,
        units=len(answered),
        requests=len(answered),
        errors=len(done) - len(answered),
        seconds=window_end - window_start,
        latencies=[r[0] - r[1] for r in answered],
        first_error=examples.get("5xx") or examples.get("unexpected") or examples.get("transport"),
        cpu_busy=_busy(cpu_start, cpu_end),
    )
    if not answered:
        raise BenchError(f"{name}: nothing answered ({result.first_error})")
    return Outcomes(result, counts, examples)


def _raw_single(
    bench_url: str, tag: str, clients: int, members: int, *, warmup: float, duration: float
) -> PhaseResult:
    inserters = [
        database.RawSingleInserter(bench_url, database.RawRows(f"{tag}-{i}", i, members))
        for i in range(clients)
    ]
    try:
        result = run_phase(
            "raw single-row INSERT+COMMIT",
            [w.step for w in inserters],
            warmup=warmup,
            duration=duration,
        )
    finally:
        for w in inserters:
            w.close()
    describe(result, "rows")
    return result


def measure_redemptions(
    *,
    port: int,
    pid: int,
    server: str,
    slug: str,
    api_key: str,
    bench_url: str,
    catalog: list[Item],
    clients: int,
    members: int,
    seconds: float,
    warmup: float,
    run_id: str,
) -> list[str]:
    """The redemption figure; returns the failures (5xx, unexpected answers) to report."""
    path = f"/api/v1/communities/{slug}/redemptions"
    timing = {"warmup": warmup, "duration": seconds}
    raw_before = _raw_single(bench_url, f"ra{run_id}", clients, members, **timing)
    load = [
        RedeemClient(HttpPoster(port, path, api_key), catalog, members, f"rd{run_id}-{i}", 300 + i)
        for i in range(clients)
    ]
    load_before = _loadavg()
    ours = run_redemptions("ours redemptions", load, **timing)
    note(f"load average (1, 5, 15 min) before ours: {load_before}, after: {_loadavg()}")
    raw_after = _raw_single(bench_url, f"rb{run_id}", clients, members, **timing)
    raw = combine(raw_before, raw_after)
    note(
        f"raw single-row INSERT+COMMIT baseline: {raw_before.rate:.0f} before and "
        f"{raw_after.rate:.0f} after ours, {raw.rate:.0f} rows/s together"
    )
    describe(ours.result, "answers")
    created = ours.counts.get("created", 0)
    refused = sum(v for k, v in ours.counts.items() if k.startswith("refused:"))
    why = ", ".join(
        f"{k.split(':', 1)[1]} {v}"
        for k, v in sorted(ours.counts.items())
        if k.startswith("refused:")
    )
    note(
        f"redemptions in the window: {created} created ({created / ours.result.seconds:.0f}/s), "
        f"{refused} refused with 409 ({why or 'none'}; "
        f"{100 * refused / max(1, created + refused):.1f}%), "
        f"{ours.counts.get('5xx', 0)} 5xx, {ours.counts.get('unexpected', 0)} other answers, "
        f"{ours.counts.get('transport', 0)} transport errors"
    )
    note(
        f"redemption latency over HTTP ({clients} clients, {server}): p50 "
        f"{ours.result.latency_ms(0.5):.1f} ms, p90 {ours.result.latency_ms(0.9):.1f} ms, p99 "
        f"{ours.result.latency_ms(0.99):.1f} ms; raw INSERT+COMMIT p50 {raw.latency_ms(0.5):.2f} "
        f"ms, p99 {raw.latency_ms(0.99):.2f} ms"
    )
    for outcome, text in sorted(ours.examples.items()):
        if outcome in ("5xx", "unexpected", "transport"):
            note(f"first {outcome}: {text}")
    # Context: what the web stack alone does here (no database, no auth, no DRF).
    probes = [HttpGetter(port, "/healthz") for _ in range(clients)]
    floor = run_phase(
        "context: plain Django view GET /healthz", [p.step for p in probes], warmup=1, duration=4
    )
    describe(floor, "requests")
    items = len(catalog)
    figure(
        f"rewards.redeem ({clients} clients, {items} items, {members // 1000}k members)",
        ours.result.rate,
        raw.rate,
        "req/s",
    )
    failures = [
        f"{ours.counts[k]} {k} answers (first: {ours.examples.get(k, '?')})"
        for k in ("5xx", "unexpected", "transport")
        if ours.counts.get(k)
    ]
    if os.environ.get("BENCH_PYSPY", "1") == "1":
        _spy(pid, load)
    for client in load:
        client.poster.close()
    return failures


def _spy(pid: int, load: list[RedeemClient]) -> None:
    """py-spy on the real workers under the same load (not part of the figures)."""
    if profiling.py_spy_path() is None:
        note("py-spy not installed: skipped the sampling profile of the workers")
        return
    raw_path = OUT_DIR / "py-spy-redeem.txt"
    spy = profiling.py_spy_start(pid, 6, raw_path)
    if spy is None:
        return
    spied = run_redemptions("ours redemptions under py-spy", load, warmup=0.5, duration=6.0)
    describe(spied.result, "answers")
    if profiling.py_spy_wait(spy, 30) and raw_path.exists():
        summary_path = OUT_DIR / "py-spy-redeem-top.txt"
        text = profiling.py_spy_summary(raw_path, summary_path, "redemption load")
        note(f"py-spy (workers under redemption load): {summary_path.relative_to(ROOT)}")
        for row in profiling.top_lines(text, "by layer", 7):
            note(f"    {row}")
        for row in profiling.top_lines(text, "top 25 by self time", 5):
            note(f"    {row}")
        note("    our code, inclusive:")
        for row in _inclusive(raw_path, ("rewards/", "points/", "api/", "incentives/"), 12):
            note(f"    {row}")
    else:
        note(f"py-spy failed; see {raw_path.with_suffix('.log').relative_to(ROOT)}")


def _inclusive(raw_path: Path, prefixes: tuple[str, ...], top: int) -> list[str]:
    """Inclusive sample shares of the functions in ``prefixes`` (py-spy's collapsed stacks)."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in set(stack.split(";")):
            if any(p in frame for p in prefixes):
                counts[frame] += int(count)
    return [f"{100 * c / max(total, 1):6.1f}%  {f}" for f, c in counts.most_common(top)]


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def approve_some(community: Any, count: int) -> dict[str, Any]:
    """Approve ``count`` pending redemptions in-process (points spent through the ledger, a red
    packet's payout requested), so that the invariant check below sees spends too."""
    from rewards.models import Redemption, RedemptionStatus
    from rewards.redemptions import redemption_approve

    ids = list(
        Redemption.objects.filter(community=community, status=RedemptionStatus.REQUESTED)
        .order_by("id")
        .values_list("client_id", flat=True)[:count]
    )
    started = time.monotonic()
    for client_id in ids:
        redemption_approve(community=community, client_id=client_id, actor="key:bench")
    return {"approved": len(ids), "seconds": time.monotonic() - started}


INVARIANTS = """
SELECT
  (SELECT count(*) FROM points_member WHERE community_id = %(c)s),
  (SELECT count(*) FROM points_member m
     LEFT JOIN (SELECT member_id, sum(points) AS s FROM points_ledgerentry
                WHERE community_id = %(c)s GROUP BY member_id) e ON e.member_id = m.id
     WHERE m.community_id = %(c)s AND m.balance <> COALESCE(e.s, 0)),
  (SELECT count(*) FROM points_member m
     LEFT JOIN (SELECT member_id, sum(points) AS s FROM rewards_redemption
                WHERE community_id = %(c)s AND status = 'requested' GROUP BY member_id) r
            ON r.member_id = m.id
     WHERE m.community_id = %(c)s AND m.held <> COALESCE(r.s, 0)),
  (SELECT count(*) FROM rewards_rewardvariant v
     LEFT JOIN (SELECT variant_id, sum(quantity) AS q FROM rewards_redemption
                WHERE community_id = %(c)s AND status = 'requested' GROUP BY variant_id) r
            ON r.variant_id = v.id
     WHERE v.community_id = %(c)s AND v.reserved <> COALESCE(r.q, 0)),
  (SELECT count(*) FROM rewards_redemption WHERE community_id = %(c)s),
  (SELECT count(*) FROM points_ledgerentry WHERE community_id = %(c)s AND kind = 'spend')
"""


def check_invariants(bench_url: str, community_id: int) -> list[str]:
    with psycopg.connect(bench_url, autocommit=True) as conn:
        row = conn.execute(INVARIANTS, {"c": community_id}).fetchone()
    assert row is not None
    members, ledger_bad, held_bad, reserved_bad, redemptions, spends = row
    note(
        f"ledger invariant (one query over {members} members, {redemptions} redemptions, "
        f"{spends} spend entries): balance = Σ entries fails for {ledger_bad}; held = Σ pending "
        f"redemptions fails for {held_bad}; variants whose reserved ≠ Σ pending quantities: "
        f"{reserved_bad}"
    )
    if ledger_bad or held_bad or reserved_bad:
        return [
            f"invariants broken: {ledger_bad} balances, {held_bad} held, {reserved_bad} reserved"
        ]
    return []


# --- the campaign allocation ---------------------------------------------------------------------


def measure_campaign(bench_url: str, community: Any, members: int) -> None:
    """``campaign_create`` for all ``members`` (double-mean), ``split_lucky`` alone, and one
    COPY of as many rows into a table like ``rewards_allocation``; medians, interleaved."""
    from points.models import Member
    from rewards.campaigns import campaign_create
    from rewards.models import Allocation
    from rewards.splits import new_seed, split_lucky

    runs = max(1, _env_int("BENCH_CAMPAIGN_RUNS", 5))
    packets = members
    total_fen = packets * 500  # 5 yuan a packet on average, within 1 .. 20,000 fen
    audience = {"newcomers_since": "2000-01-01"}  # every active member (joined since then)
    member_ids = list(
        Member.objects.filter(community=community).order_by("pk").values_list("pk", flat=True)
    )
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {RAW_ALLOCATION}")
        conn.execute(f"CREATE TABLE {RAW_ALLOCATION} (LIKE rewards_allocation INCLUDING ALL)")
    raw_conn = psycopg.connect(bench_url)
    ours_ms: list[float] = []
    split_ms: list[float] = []
    line_cut_ms: list[float] = []
    copy_ms: list[float] = []
    insert_ms: list[float] = []
    columns = "community_id, campaign_id, index, member_id, amount_fen"
    try:
        for run in range(runs):
            seed = new_seed()
            started = time.perf_counter()
            shares = split_lucky(total_fen, packets, seed=seed, method="double_mean")
            split_ms.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            split_lucky(total_fen, packets, seed=seed, method="line_cut")
            line_cut_ms.append(1000 * (time.perf_counter() - started))

            rows = [
                (community.pk, 2 * run + 1, i, m, a)
                for i, (m, a) in enumerate(zip(member_ids, shares, strict=True), 1)
            ]
            started = time.perf_counter()
            with raw_conn.cursor() as cursor:
                with cursor.copy(f"COPY {RAW_ALLOCATION} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            raw_conn.commit()
            copy_ms.append(1000 * (time.perf_counter() - started))

            cols = [list(c) for c in zip(*rows, strict=True)]
            started = time.perf_counter()
            with raw_conn.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {RAW_ALLOCATION} ({columns}) SELECT %s, %s, x.i, x.m, x.a "
                    "FROM unnest(%s::int[], %s::bigint[], %s::int[]) AS x(i, m, a)",
                    [community.pk, 2 * run + 2, cols[2], cols[3], cols[4]],
                )
            raw_conn.commit()
            insert_ms.append(1000 * (time.perf_counter() - started))

            started = time.perf_counter()
            campaign, created = campaign_create(
                community=community,
                client_id=f"bench-lucky-{run}",
                kind="holiday",
                title=f"Bench lucky campaign {run}",
                total_fen=total_fen,
                split="lucky",
                actor="key:bench",
                audience=audience,
            )
            ours_ms.append(1000 * (time.perf_counter() - started))
            stored = Allocation.objects.filter(campaign=campaign).count()
            if not created or stored != packets:
                raise BenchError(f"campaign {run}: created={created}, {stored} allocations")
    finally:
        raw_conn.close()

    def spread(values: list[float]) -> str:
        return " ".join(f"{v:.0f}" for v in values)

    note(
        f"campaign_create (lucky, {packets} members via audience {audience}, {runs} runs): "
        f"median {statistics.median(ours_ms):.0f} ms ({spread(ours_ms)}); split_lucky alone: "
        f"double-mean median {statistics.median(split_ms):.0f} ms ({spread(split_ms)}), "
        f"line-cut median {statistics.median(line_cut_ms):.0f} ms"
    )
    note(
        f"raw: one COPY of {packets} rows + COMMIT median {statistics.median(copy_ms):.1f} ms "
        f"({spread(copy_ms)}); one multi-row INSERT (unnest) + COMMIT median "
        f"{statistics.median(insert_ms):.1f} ms"
    )
    figure(
        f"rewards.campaign_allocate ({packets // 1000}k packets)",
        statistics.median(ours_ms),
        statistics.median(copy_ms),
        "ms",
    )
    figure(
        f"rewards.campaign_split (split_lucky double-mean alone, {packets // 1000}k packets; "
        "vs the same COPY)",
        statistics.median(split_ms),
        statistics.median(copy_ms),
        "ms",
    )


# --- orchestration -------------------------------------------------------------------------------


def main() -> int:
    seconds = _env_float("BENCH_SECONDS", 8)
    warmup = _env_float("BENCH_WARMUP", 2)
    clients = _env_int("BENCH_REWARD_CLIENTS", 16)
    members = _env_int("BENCH_MEMBERS", 10_000)
    items = _env_int("BENCH_REWARD_ITEMS", 100)
    workers = _env_int("BENCH_WORKERS", 3)
    worker_class = os.environ.get("BENCH_WORKER_CLASS", "sync")
    threads = _env_int("BENCH_THREADS", 4)
    # Not BENCH_DB: under `make bench` this runs after the main run, whose database
    # BENCH_KEEP_DB=1 keeps.
    dbname = os.environ.get("BENCH_REWARDS_DB", "bench_rewards")
    keep_db = os.environ.get("BENCH_KEEP_DB") == "1"
    started = time.monotonic()
    run_id = time.strftime("%H%M%S")
    failures: list[str] = []

    server_url = database.server_url()
    bench_url = database.recreate(server_url, dbname)
    try:
        slug, _events_key = setup_django(bench_url)
        from django.db import connections

        from points.models import Community, Scope
        from points.services import api_key_create

        community = Community.objects.get(slug=slug)
        _key, api_key = api_key_create(
            community=community, scopes=[Scope.REWARDS_WRITE], name="bench rewards"
        )
        database.create_raw_table(bench_url)
        data = generate_members(bench_url, community.pk, members)
        t0 = time.monotonic()
        catalog = create_catalog(community, items)
        kinds = Counter(i.kind for i in catalog)
        note(
            f"{members} members credited set-based in {data['seconds']:.1f} s; catalog of "
            f"{len(catalog)} items via reward_save in {time.monotonic() - t0:.1f} s "
            f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))})"
        )
        connections.close_all()
        pg = database.server_settings(bench_url)
        note(
            f"database {dbname} (PostgreSQL {pg['server_version']}, synchronous_commit="
            f"{pg['synchronous_commit']}, fsync={pg['fsync']}); {clients} clients, {seconds:g} "
            f"s per phase after {warmup:g} s warm-up"
        )
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        with gunicorn(
            env=dict(os.environ),
            workers=workers,
            worker_class=worker_class,
            threads=threads,
            log_path=OUT_DIR / "gunicorn-rewards.log",
        ) as server:
            note(f"server: {server.description} on 127.0.0.1:{server.port}, CONN_MAX_AGE=600")
            failures += measure_redemptions(
                port=server.port,
                pid=server.pid,
                server=server.description,
                slug=slug,
                api_key=api_key,
                bench_url=bench_url,
                catalog=catalog,
                clients=clients,
                members=members,
                seconds=seconds,
                warmup=warmup,
                run_id=run_id,
            )
        approved = approve_some(community, _env_int("BENCH_APPROVE", 300))
        note(
            f"approved {approved['approved']} pending redemptions in-process in "
            f"{approved['seconds']:.1f} s (points spent through the ledger)"
        )
        failures += check_invariants(bench_url, community.pk)
        measure_campaign(bench_url, community, members)
    finally:
        close_django()
        if not keep_db:
            database.drop(server_url, dbname)
    note(f"bench finished in {time.monotonic() - started:.0f} s")
    if failures:
        for failure in failures:
            print(f"FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
