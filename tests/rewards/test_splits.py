"""Red packet splits (rewards/splits.py): exact sums, bounds, feasibility, determinism of the
HMAC-SHA256 stream (pinned so that a change to it is caught), and the distributions the
docstrings promise. Pure functions: no database."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import re
import statistics
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import splits
from rewards.splits import (
    ALGORITHM_VERSION,
    WECOM_MAX_FEN,
    WECOM_MIN_FEN,
    HmacStream,
    LuckyMethod,
    SplitInfeasible,
    allocation_digest,
    split_equal,
    split_lucky,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
METHODS: list[LuckyMethod] = ["double_mean", "line_cut"]
SEED = bytes(range(32))
seeds = st.binary(min_size=16, max_size=32)


def numbered_seed(i: int) -> bytes:
    return hashlib.sha256(b"test-seed-%d" % i).digest()


@st.composite
def feasible(draw: st.DrawFn, *, min_fen: int | None = None, max_fen: int | None = None) -> tuple:
    packets = draw(st.integers(1, 60))
    low = min_fen if min_fen is not None else draw(st.integers(1, 500))
    high = max_fen if max_fen is not None else draw(st.integers(low, low + 3_000))
    total = draw(st.integers(packets * low, packets * high))
    return total, packets, low, high


@st.composite
def infeasible(draw: st.DrawFn) -> tuple:
    packets = draw(st.integers(-3, 60))
    low = draw(st.integers(-5, 500))
    high = draw(st.integers(-5, 3_500))
    total = draw(st.integers(-10, 200_000))
    ok = packets >= 1 and 1 <= low <= high and packets * low <= total <= packets * high
    return draw(st.nothing()) if ok else (total, packets, low, high)


# --- equal splits -------------------------------------------------------------------------


@PROPERTY
@given(feasible())
def test_equal_split_sums_exactly_within_bounds_and_differs_by_at_most_one_fen(args) -> None:
    total, packets, low, high = args
    shares = split_equal(total, packets, min_fen=low, max_fen=high)
    assert len(shares) == packets
    assert sum(shares) == total
    assert low <= min(shares)
    assert max(shares) <= high
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_equal_split_gives_the_leftover_fen_to_the_first_packets() -> None:
    assert split_equal(1000, 3) == [334, 333, 333]
    assert split_equal(1001, 3) == [334, 334, 333]
    assert split_equal(999, 3) == [333, 333, 333]
    assert split_equal(7, 7) == [1] * 7


# --- feasibility --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "packets", "low", "high", "bound", "words"),
    [
        (1000, 0, 1, 20_000, "packets", "packets must be at least 1"),
        (1000, -2, 1, 20_000, "packets", "packets must be at least 1"),
        (1000, 10, 0, 20_000, "min_fen", "min_fen must be at least 1"),
        (1000, 10, 50, 49, "max_fen", "max_fen (49 fen) must not be below min_fen (50 fen)"),
        (999, 10, 100, 20_000, "total_below_min", "below packets × min_fen = 10 × 100 = 1000"),
        (
            200_001,
            10,
            1,
            20_000,
            "total_above_max",
            "above packets × max_fen = 10 × 20000 = 200000",
        ),
    ],
)
def test_each_infeasible_bound_is_refused_by_name(
    total: int, packets: int, low: int, high: int, bound: str, words: str
) -> None:
    calls = [
        lambda: split_equal(total, packets, min_fen=low, max_fen=high),
        *(
            lambda method=method: split_lucky(
                total, packets, seed=SEED, method=method, min_fen=low, max_fen=high
            )
            for method in METHODS
        ),
    ]
    for call in calls:
        with pytest.raises(SplitInfeasible, match=re.escape(words)) as caught:
            call()
        assert caught.value.bound == bound
        assert isinstance(caught.value, ValueError)


def test_bounds_are_inclusive_at_both_ends() -> None:
    assert split_equal(10 * 100, 10, min_fen=100) == [100] * 10
    assert split_equal(10 * 20_000, 10, min_fen=100) == [20_000] * 10
    for method in METHODS:
        assert split_lucky(1000, 10, seed=SEED, method=method, min_fen=100) == [100] * 10
        assert split_lucky(200_000, 10, seed=SEED, method=method) == [20_000] * 10
        assert split_lucky(1234, 1, seed=SEED, method=method) == [1234]


@PROPERTY
@given(infeasible(), seeds, st.sampled_from(METHODS))
def test_every_infeasible_campaign_is_refused(args, seed: bytes, method: LuckyMethod) -> None:
    total, packets, low, high = args
    with pytest.raises(SplitInfeasible):
        split_equal(total, packets, min_fen=low, max_fen=high)
    with pytest.raises(SplitInfeasible):
        split_lucky(total, packets, seed=seed, method=method, min_fen=low, max_fen=high)


def test_bad_types_methods_and_seeds_are_refused() -> None:
    with pytest.raises(TypeError, match="total_fen must be an int"):
        split_equal(10.5, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="packets must be an int"):
        split_equal(10, True)
    with pytest.raises(ValueError, match="method must be one of double_mean, line_cut"):
        split_lucky(1000, 3, seed=SEED, method="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16 bytes"):
        split_lucky(1000, 3, seed=b"short")
    with pytest.raises(TypeError, match="seed must be bytes"):
        split_lucky(1000, 3, seed=SEED.hex())  # type: ignore[arg-type]


# --- lucky splits: properties -------------------------------------------------------------


@PROPERTY
@given(feasible(), seeds, st.sampled_from(METHODS))
def test_lucky_split_sums_exactly_and_holds_every_bound(
    args, seed: bytes, method: LuckyMethod
) -> None:
    total, packets, low, high = args
    shares = split_lucky(total, packets, seed=seed, method=method, min_fen=low, max_fen=high)
    assert len(shares) == packets
    assert sum(shares) == total
    assert all(low <= share <= high for share in shares)


@PROPERTY
@given(feasible(min_fen=WECOM_MIN_FEN, max_fen=WECOM_MAX_FEN), seeds, st.sampled_from(METHODS))
def test_wecom_bounds_100_to_20000_fen_hold(args, seed: bytes, method: LuckyMethod) -> None:
    total, packets, low, high = args
    shares = split_lucky(total, packets, seed=seed, method=method, min_fen=low, max_fen=high)
    assert sum(shares) == total
    assert all(100 <= share <= 20_000 for share in shares)


@PROPERTY
@given(feasible(), seeds, st.sampled_from(METHODS))
def test_same_seed_gives_the_same_split(args, seed: bytes, method: LuckyMethod) -> None:
    total, packets, low, high = args
    first = split_lucky(total, packets, seed=seed, method=method, min_fen=low, max_fen=high)
    again = split_lucky(total, packets, seed=bytes(seed), method=method, min_fen=low, max_fen=high)
    assert first == again


@PROPERTY
@given(feasible(), seeds)
def test_double_mean_draws_are_centred_on_the_mean_and_clamped(args, seed: bytes) -> None:
    total, packets, low, high = args
    shares = split_lucky(total, packets, seed=seed, min_fen=low, max_fen=high)
    remaining = total
    for left, share in zip(range(packets, 1, -1), shares, strict=False):
        assert share <= 2 * remaining // left - low  # the double-mean range
        assert share >= remaining - (left - 1) * high  # the rest can still fit under the cap
        remaining -= share
    assert shares[-1] == remaining


@pytest.mark.parametrize("method", METHODS)
def test_different_seeds_give_different_splits(method: LuckyMethod) -> None:
    results = {
        tuple(split_lucky(10_000, 10, seed=numbered_seed(i), method=method)) for i in range(200)
    }
    assert len(results) == 200


# --- pinned examples: a change to the stream or an algorithm must bump ALGORITHM_VERSION ---


def test_stream_is_hmac_sha256_of_the_big_endian_counter() -> None:
    stream = HmacStream(SEED)
    expected = b"".join(
        hmac.new(SEED, counter.to_bytes(8, "big"), hashlib.sha256).digest() for counter in range(3)
    )
    assert stream.read(40) + stream.read(56) == expected
    assert stream.blocks_used == 3
    bytes_stream = HmacStream(SEED)
    assert [bytes_stream.randbelow(256) for _ in range(32)] == list(expected[:32])


def test_randbelow_rejects_instead_of_folding() -> None:
    # randbelow(200) reads one byte and rejects values >= 200 rather than taking them mod 200.
    raw = HmacStream(SEED).read(4096)
    expected = [byte for byte in raw if byte < 200][:1000]
    stream = HmacStream(SEED)
    assert [stream.randbelow(200) for _ in range(1000)] == expected
    assert HmacStream(SEED).randbelow(1) == 0
    with pytest.raises(ValueError, match="n >= 1"):
        HmacStream(SEED).randbelow(0)
    with pytest.raises(ValueError, match="a <= b"):
        HmacStream(SEED).randint(5, 4)


def test_randint_is_uniform_over_a_range_that_is_not_a_power_of_two() -> None:
    stream = HmacStream(SEED)
    counts = Counter(stream.randint(-1, 1) for _ in range(30_000))
    assert set(counts) == {-1, 0, 1}
    assert all(abs(count - 10_000) < 400 for count in counts.values())  # about 4.6 sigma


PINNED_DOUBLE_MEAN = [1805, 442, 152, 837, 610, 862, 1282, 1009, 1253, 1748]
PINNED_DIGEST = "c08adf4e7aaa38aae8e84c9f8c2573bd6c768ac7ddfbfec6b24ab67f50f455dc"


def test_pinned_splits_for_a_fixed_seed() -> None:
    assert ALGORITHM_VERSION == 1
    assert split_lucky(10_000, 10, seed=SEED) == PINNED_DOUBLE_MEAN
    assert split_lucky(10_000, 10, seed=SEED, method="line_cut") == [
        152, 458, 672, 1089, 1001, 3214, 1363, 1105, 147, 799
    ]  # fmt: skip
    # Binding but not tight: this seed's first two draws, [436, 2691, 278, 182, 1413] and
    # [390, 347, 701, 3220, 342], exceed the cap; the third, from the same stream, is kept.
    assert not splits._cap_is_tight(5_000, 5, 100, 2_500)
    capped = split_lucky(
        5_000, 5, seed=numbered_seed(17), method="line_cut", min_fen=100, max_fen=2_500
    )
    assert capped == [473, 1156, 705, 1835, 831]


def test_allocation_digest_is_sha256_of_canonical_json() -> None:
    shares = [334, 333, 333]
    canonical = '{"method":"equal","seed":"","shares":[334,333,333],"version":1}'
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert allocation_digest(shares, method="equal", seed_hex="", version=1) == expected
    lucky = allocation_digest(
        PINNED_DOUBLE_MEAN, method="double_mean", seed_hex=SEED.hex(), version=1
    )
    document = {
        "version": 1,
        "method": "double_mean",
        "seed": SEED.hex(),
        "shares": PINNED_DOUBLE_MEAN,
    }
    assert (
        lucky
        == hashlib.sha256(
            json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    )
    assert lucky == PINNED_DIGEST
    assert (
        allocation_digest(
            PINNED_DOUBLE_MEAN, method="double_mean", seed_hex=SEED.hex().upper(), version=1
        )
        == lucky
    )


def test_allocation_digest_changes_with_every_field() -> None:
    seed_hex = SEED.hex()
    digests = {
        allocation_digest([5, 3, 2], method="line_cut", seed_hex=seed_hex, version=1),
        allocation_digest([3, 5, 2], method="line_cut", seed_hex=seed_hex, version=1),
        allocation_digest([5, 3, 2], method="double_mean", seed_hex=seed_hex, version=1),
        allocation_digest([5, 3, 2], method="line_cut", seed_hex="00" * 32, version=1),
        allocation_digest([5, 3, 2], method="line_cut", seed_hex=seed_hex, version=2),
    }
    assert len(digests) == 5
    with pytest.raises(ValueError, match="seed_hex must be a hex string"):
        allocation_digest([1], method="equal", seed_hex="xyz", version=1)
    with pytest.raises(TypeError, match="share must be an int"):
        allocation_digest([1.5], method="equal", seed_hex="", version=1)  # type: ignore[list-item]


# --- line-cut under a cap -----------------------------------------------------------------


def test_line_cut_ignores_a_cap_that_cannot_bind() -> None:
    # 10,000 fen in 10 packets of at least 1: no share can exceed 9,991, so a cap of 9,991 is
    # the same draw as no cap at all; a cap of 9,990 may bind.
    uncapped = split_lucky(10_000, 10, seed=SEED, method="line_cut", max_fen=20_000)
    assert split_lucky(10_000, 10, seed=SEED, method="line_cut", max_fen=9_991) == uncapped


@pytest.mark.parametrize(
    ("total", "packets", "high"),
    [(199_999, 10, 20_000), (150_000, 10, 20_000), (1_000, 10, 101), (95, 10, 10)],
)
def test_line_cut_under_a_tight_cap_is_double_mean(total: int, packets: int, high: int) -> None:
    for i in range(20):
        seed = numbered_seed(i)
        line_cut = split_lucky(total, packets, seed=seed, method="line_cut", max_fen=high)
        assert line_cut == split_lucky(total, packets, seed=seed, max_fen=high)


def test_line_cut_falls_back_to_double_mean_when_every_redraw_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 8 fen in 3 packets capped at 5: not tight (a try fails with probability 3/21), so the
    # fallback after the tries only shows with no tries at all.
    assert not splits._cap_is_tight(8, 3, 1, 5)
    monkeypatch.setattr(splits, "LINE_CUT_MAX_TRIES", 0)
    for i in range(20):
        seed = numbered_seed(i)
        assert split_lucky(8, 3, seed=seed, method="line_cut", max_fen=5) == split_lucky(
            8, 3, seed=seed, max_fen=5
        )


def compositions(total: int, packets: int, low: int, high: int) -> list[tuple[int, ...]]:
    return [
        parts
        for parts in itertools.product(range(low, min(high, total) + 1), repeat=packets)
        if sum(parts) == total
    ]


@pytest.mark.parametrize(
    ("total", "packets", "low", "high"),
    [(6, 3, 1, 20_000), (12, 3, 3, 20_000), (8, 3, 1, 5), (10, 4, 1, 20_000)],
    ids=["cut-points", "pre-assigned-minimum", "redrawn-under-a-cap", "four-packets"],
)
def test_line_cut_makes_every_composition_equally_likely(
    total: int, packets: int, low: int, high: int
) -> None:
    expected_support = compositions(total, packets, low, high)
    draws = 100 * len(expected_support)
    counts = Counter(
        tuple(
            split_lucky(
                total,
                packets,
                seed=numbered_seed(i),
                method="line_cut",
                min_fen=low,
                max_fen=high,
            )
        )
        for i in range(draws)
    )
    assert set(counts) == set(expected_support)
    chi_square = sum((counts[c] - 100) ** 2 / 100 for c in expected_support)
    degrees = len(expected_support) - 1
    # Far beyond the 0.1% critical value (about degrees + 3.1·sqrt(2·degrees) for these sizes).
    assert chi_square < degrees + 4 * math.sqrt(2 * degrees)


# --- fairness of 100 yuan in 10 packets (docs: notes/algorithms.md §4) ---------------------


def position_samples(method: LuckyMethod, runs: int = 2_000) -> list[list[int]]:
    splits_by_run = [
        split_lucky(10_000, 10, seed=numbered_seed(i), method=method) for i in range(runs)
    ]
    return [list(column) for column in zip(*splits_by_run, strict=True)]


def test_double_mean_gives_each_position_the_same_mean_and_later_ones_more_variance() -> None:
    positions = position_samples("double_mean")
    for index in (0, 4, 9):
        assert abs(statistics.fmean(positions[index]) - 1_000) < 50  # within 5%
    # The first draw is uniform on [1, 1999]: standard deviation sqrt((1999² − 1) / 12) ≈ 577.
    assert statistics.pstdev(positions[0]) == pytest.approx(577, rel=0.08)
    assert statistics.pstdev(positions[9]) > 1.15 * statistics.pstdev(positions[0])


def test_line_cut_positions_are_alike_and_more_spread_than_double_mean() -> None:
    positions = position_samples("line_cut")
    # Uniform compositions of 10,000 into 10 parts: standard deviation ≈ 10,000·sqrt(9 / 1100).
    expected_deviation = 10_000 * math.sqrt(9 / 1_100)
    for index in (0, 9):
        assert abs(statistics.fmean(positions[index]) - 1_000) < 50
        assert statistics.pstdev(positions[index]) == pytest.approx(expected_deviation, rel=0.08)
