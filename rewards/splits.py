"""Splitting a red packet campaign's total into packets, in integer fen.

Pure and dependency-free (standard library only: no Django, no database, no floats in any
amount), so that an allocation can be re-derived and audited anywhere.

Guarantees of every split returned by :func:`split_equal` and :func:`split_lucky`:

- **Feasibility first.** ``packets >= 1``, ``1 <= min_fen <= max_fen`` and
  ``packets * min_fen <= total_fen <= packets * max_fen`` are checked before anything else;
  otherwise :class:`SplitInfeasible` (a ``ValueError``) names the bound that fails.
- **Exact sum.** ``sum(shares) == total_fen`` and ``len(shares) == packets``.
- **Bounds.** ``min_fen <= share <= max_fen`` for every share.
- **Determinism.** The same arguments (and, for lucky splits, the same seed) give the same list
  on every machine and Python version: randomness comes only from :class:`HmacStream`, whose
  byte stream is HMAC-SHA256 defined below, never from ``random`` or numpy, whose streams may
  change between versions and builds. A change to any of this must bump
  :data:`ALGORITHM_VERSION`; the pinned examples in ``tests/rewards/test_splits.py`` catch it.

The stored allocation is the source of truth; :func:`allocation_digest` is its audit record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Final, Literal

__all__ = [
    "ALGORITHM_VERSION",
    "DEFAULT_MAX_FEN",
    "DEFAULT_MIN_FEN",
    "LINE_CUT_MAX_TRIES",
    "SEED_MIN_BYTES",
    "WECOM_MAX_FEN",
    "WECOM_MIN_FEN",
    "HmacStream",
    "LuckyMethod",
    "SplitInfeasible",
    "allocation_digest",
    "check_feasible",
    "new_seed",
    "split_equal",
    "split_lucky",
]

ALGORITHM_VERSION: Final = 1
"""Version of the stream and of both algorithms; stored with every allocation."""

DEFAULT_MIN_FEN: Final = 1
DEFAULT_MAX_FEN: Final = 20_000
WECOM_MIN_FEN: Final = 100
"""WeCom enterprise red packets must be 1.00 to 200.00 yuan each."""
WECOM_MAX_FEN: Final = 20_000

SEED_MIN_BYTES: Final = 16
LINE_CUT_MAX_TRIES: Final = 32
"""Whole-split redraws line-cutting makes under a cap that is not tight (see split_lucky)."""

LuckyMethod = Literal["double_mean", "line_cut"]
_LUCKY_METHODS: Final = ("double_mean", "line_cut")


class SplitInfeasible(ValueError):
    """The total cannot be split within the bounds; ``bound`` says which check failed.

    ``bound`` is one of ``"packets"``, ``"min_fen"``, ``"max_fen"``, ``"total_below_min"``
    (total < packets × min_fen) or ``"total_above_max"`` (total > packets × max_fen); the
    message is meant to be shown to the operator as is.
    """

    def __init__(self, bound: str, message: str) -> None:
        super().__init__(message)
        self.bound = bound


def _require_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int (fen or a count), got {type(value).__name__}")
    return value


def check_feasible(total_fen: int, packets: int, *, min_fen: int, max_fen: int) -> None:
    """Raise :class:`SplitInfeasible` naming the first bound that fails; return if all hold."""
    for name, value in (
        ("total_fen", total_fen),
        ("packets", packets),
        ("min_fen", min_fen),
        ("max_fen", max_fen),
    ):
        _require_int(name, value)
    if packets < 1:
        raise SplitInfeasible("packets", f"packets must be at least 1, got {packets}")
    if min_fen < 1:
        raise SplitInfeasible("min_fen", f"min_fen must be at least 1 fen, got {min_fen}")
    if max_fen < min_fen:
        raise SplitInfeasible(
            "max_fen", f"max_fen ({max_fen} fen) must not be below min_fen ({min_fen} fen)"
        )
    if total_fen < packets * min_fen:
        raise SplitInfeasible(
            "total_below_min",
            f"total_fen {total_fen} is below packets × min_fen = {packets} × {min_fen} = "
            f"{packets * min_fen} fen: fewer packets or a lower minimum are needed",
        )
    if total_fen > packets * max_fen:
        raise SplitInfeasible(
            "total_above_max",
            f"total_fen {total_fen} is above packets × max_fen = {packets} × {max_fen} = "
            f"{packets * max_fen} fen: more packets or a higher maximum are needed",
        )


def new_seed() -> bytes:
    """A fresh 32-byte seed from the OS CSPRNG (store it as hex: 64 characters)."""
    return secrets.token_bytes(32)


class HmacStream:
    """A deterministic stream of unbiased integers derived from a seed.

    The byte stream is ``HMAC-SHA256(seed, c.to_bytes(8, "big"))`` for ``c = 0, 1, 2, …``,
    concatenated; bytes are consumed in order, never reused. ``randbelow(n)`` sets
    ``k = (n - 1).bit_length()``, reads the next ``ceil(k / 8)`` bytes as a big-endian integer,
    keeps its low ``k`` bits and returns it if it is below ``n``, otherwise reads again
    (rejection sampling: exactly uniform, each attempt accepted with probability > 1/2).
    ``randbelow(1)`` returns 0 and reads nothing. This definition is part of
    :data:`ALGORITHM_VERSION`.
    """

    __slots__ = ("_block", "_counter", "_pos", "_seed")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes):
            raise TypeError(f"seed must be bytes, got {type(seed).__name__}")
        if len(seed) < SEED_MIN_BYTES:
            raise ValueError(f"seed must be at least {SEED_MIN_BYTES} bytes, got {len(seed)}")
        self._seed = seed
        self._counter = 0
        self._block = b""
        self._pos = 0

    @property
    def blocks_used(self) -> int:
        """How many HMAC blocks have been computed so far."""
        return self._counter

    def read(self, nbytes: int) -> bytes:
        """The next ``nbytes`` bytes of the stream."""
        out = b""
        while len(out) < nbytes:
            if self._pos == len(self._block):
                self._block = hmac.digest(self._seed, self._counter.to_bytes(8, "big"), "sha256")
                self._counter += 1
                self._pos = 0
            take = min(nbytes - len(out), len(self._block) - self._pos)
            out += self._block[self._pos : self._pos + take]
            self._pos += take
        return out

    def randbelow(self, n: int) -> int:
        """A uniform integer in ``[0, n)``."""
        _require_int("n", n)
        if n < 1:
            raise ValueError(f"randbelow needs n >= 1, got {n}")
        if n == 1:
            return 0
        bits = (n - 1).bit_length()
        nbytes = (bits + 7) // 8
        mask = (1 << bits) - 1
        while True:
            value = int.from_bytes(self.read(nbytes), "big") & mask
            if value < n:
                return value

    def randint(self, a: int, b: int) -> int:
        """A uniform integer in ``[a, b]``, both ends included."""
        _require_int("a", a)
        _require_int("b", b)
        if a > b:
            raise ValueError(f"randint needs a <= b, got [{a}, {b}]")
        return a + self.randbelow(b - a + 1)


def split_equal(
    total_fen: int,
    packets: int,
    *,
    min_fen: int = DEFAULT_MIN_FEN,
    max_fen: int = DEFAULT_MAX_FEN,
) -> list[int]:
    """Equal shares: ``total // packets`` each, the first ``total % packets`` get one fen more.

    Shares differ by at most 1 fen, are non-increasing, and stay within the bounds whenever the
    split is feasible (checked first). No randomness: the leftover fen go to the lowest indexes.
    """
    check_feasible(total_fen, packets, min_fen=min_fen, max_fen=max_fen)
    base, remainder = divmod(total_fen, packets)
    return [base + 1] * remainder + [base] * (packets - remainder)


def split_lucky(
    total_fen: int,
    packets: int,
    *,
    seed: bytes,
    method: LuckyMethod = "double_mean",
    min_fen: int = DEFAULT_MIN_FEN,
    max_fen: int = DEFAULT_MAX_FEN,
) -> list[int]:
    """Random shares (拼手气), fully determined by the arguments and the seed.

    ``double_mean`` (二倍均值法, WeChat style): packets are drawn in index order. With ``R``
    fen and ``L`` packets left, the draw is uniform on ``[lo, hi]`` where
    ``hi = min(max_fen, ⌊2R/L⌋ − min_fen, R − (L−1)·min_fen)`` and
    ``lo = max(min_fen, R − (L−1)·max_fen)``: a range centred on the mean ``R/L``, clamped so
    that every packet left can still get ``min_fen`` and none needs more than ``max_fen``
    (``lo <= hi`` always holds for a feasible split). The last packet takes the remainder.
    Unclamped, every position has the same expected value ``total/packets`` (less than half a
    fen of rounding, which ends up in the last packet), but the variance grows with the
    position: for 100 yuan in 10 packets the standard deviation is about 5.8 yuan for the
    first and 7.7 yuan for the last two, which are the most often the luckiest.

    ``line_cut`` (线段切割法): exchangeable, every position has the same distribution. Each
    packet is pre-assigned ``min_fen``; the rest ``R = total − packets·min_fen`` is cut by
    choosing ``packets − 1`` distinct bar positions among ``R + packets − 1`` slots (stars and
    bars, Floyd's sampling, then sorted): every composition with all shares ``>= min_fen`` is
    equally likely (for ``min_fen = 1`` this is the classic ``n − 1`` distinct cut points on
    ``1 … total − 1``). More extreme than double-mean. Under a cap that can bind, the whole
    split is redrawn, continuing the same stream, until no share exceeds ``max_fen`` (which
    keeps it uniform over the compositions within the bounds), at most
    :data:`LINE_CUT_MAX_TRIES` times. Before any draw the cap is judged *tight* when the
    expected number of shares above ``max_fen`` in an uncapped draw exceeds 1/2 (computed
    exactly in IEEE arithmetic, only ``*`` and ``/``, so the same on every machine); a tight
    cap skips line-cutting and the result is exactly ``double_mean``'s for the same seed.
    When the cap is not tight each try succeeds with probability >= 1/2; if all tries fail
    anyway (probability <= 2**-32), double-mean finishes the job from where the stream is.
    The method recorded with the allocation stays ``line_cut``: re-deriving with the same
    arguments takes the same path.

    Cost: O(packets) draws and O(packets log packets) for line-cut's sort.
    """
    check_feasible(total_fen, packets, min_fen=min_fen, max_fen=max_fen)
    if method not in _LUCKY_METHODS:
        raise ValueError(f"method must be one of {', '.join(_LUCKY_METHODS)}; got {method!r}")
    stream = HmacStream(seed)
    if method == "double_mean":
        shares = _double_mean(stream, total_fen, packets, min_fen, max_fen)
    else:
        shares = _line_cut_capped(stream, total_fen, packets, min_fen, max_fen)
    _verify(shares, total_fen, packets, min_fen, max_fen)
    return shares


def _double_mean(
    stream: HmacStream, total_fen: int, packets: int, min_fen: int, max_fen: int
) -> list[int]:
    shares: list[int] = []
    remaining = total_fen
    for left in range(packets, 1, -1):
        lo = max(min_fen, remaining - (left - 1) * max_fen)
        hi = min(max_fen, 2 * remaining // left - min_fen, remaining - (left - 1) * min_fen)
        share = stream.randint(lo, hi)
        shares.append(share)
        remaining -= share
    shares.append(remaining)
    return shares


def _line_cut(stream: HmacStream, total_fen: int, packets: int, min_fen: int) -> list[int]:
    rest = total_fen - packets * min_fen
    slots = rest + packets - 1
    bars_needed = packets - 1
    bars: set[int] = set()
    for j in range(slots - bars_needed, slots):  # Floyd: a uniform subset, one draw per bar
        pick = stream.randbelow(j + 1)
        bars.add(j if pick in bars else pick)
    shares: list[int] = []
    previous = -1
    for bar in sorted(bars):
        shares.append(min_fen + bar - previous - 1)
        previous = bar
    shares.append(min_fen + slots - previous - 1)
    return shares


def _cap_is_tight(total_fen: int, packets: int, min_fen: int, max_fen: int) -> bool:
    """Whether an uncapped line-cut has more than 1/2 shares above max_fen, in expectation.

    One share exceeds the cap with probability C(N − m, k) / C(N, k), where N = R + n − 1
    slots, k = n − 1 bars and m = max − min + 1: the product of min(k, m) factors below 1.
    """
    rest = total_fen - packets * min_fen
    over = max_fen - min_fen + 1
    if over > rest:
        return False
    slots = rest + packets - 1
    bars = packets - 1
    probability = 1.0
    if bars <= over:
        factors = ((slots - over - i, slots - i) for i in range(bars))
    else:
        factors = ((rest - i, slots - i) for i in range(over))
    for numerator, denominator in factors:
        probability *= numerator / denominator
        if packets * probability <= 0.5:
            return False
    return True


def _line_cut_capped(
    stream: HmacStream, total_fen: int, packets: int, min_fen: int, max_fen: int
) -> list[int]:
    if _cap_is_tight(total_fen, packets, min_fen, max_fen):
        return _double_mean(stream, total_fen, packets, min_fen, max_fen)
    for _ in range(LINE_CUT_MAX_TRIES):
        shares = _line_cut(stream, total_fen, packets, min_fen)
        if max(shares) <= max_fen:
            return shares
    return _double_mean(stream, total_fen, packets, min_fen, max_fen)


def _verify(shares: list[int], total_fen: int, packets: int, min_fen: int, max_fen: int) -> None:
    """The invariants, checked on every split (never skipped, unlike assert under -O)."""
    if (
        len(shares) != packets
        or sum(shares) != total_fen
        or min(shares) < min_fen
        or max(shares) > max_fen
    ):
        raise RuntimeError(
            f"split invariant broken: {packets} packets of {total_fen} fen within "
            f"[{min_fen}, {max_fen}]"
        )


def allocation_digest(shares: list[int], *, method: str, seed_hex: str, version: int) -> str:
    """The audit record of an allocation: sha256 hex of its canonical JSON.

    The JSON is ``{"method": …, "seed": …, "shares": […], "version": …}`` with sorted keys, no
    whitespace and ASCII only; the seed is the lowercase hex of its bytes (``""`` for an equal
    split). Anyone can recompute it from the stored allocation; any change to a share, the
    order, the method, the seed or the version changes the digest.
    """
    _require_int("version", version)
    if not isinstance(method, str) or not method:
        raise ValueError("method must be a non-empty string")
    try:
        seed_canonical = bytes.fromhex(seed_hex).hex()
    except (TypeError, ValueError) as error:
        raise ValueError(f"seed_hex must be a hex string, got {seed_hex!r}") from error
    for share in shares:
        _require_int("share", share)
    document = {
        "method": method,
        "seed": seed_canonical,
        "shares": list(shares),
        "version": version,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
