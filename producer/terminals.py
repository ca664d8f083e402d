"""A fleet of payment terminals: which one sent each simulated transaction.

Why. A rise in failures is often a few terminals (one merchant's devices, one firmware,
one acquirer link), and a group of terminals can fail or fall silent while the totals
look normal. To simulate that, every event needs a terminal, drawn with the skew of a
real fleet: a few terminals carry much of the volume, most send little.

The law. Terminal rank i (0 = the busiest) has weight ∝ 1/(i+1)^s, a Zipf law. The
default s = DEFAULT_SKEW = 0.89 is chosen so that, among 1,000,000 terminals, the top
1 % carry half of the volume: measured 50.0 % (tests/unit/test_producer_terminals.py;
the busiest terminal alone carries 3.0 %, the top 10 % 72 %; among 10,000,000 terminals
the top 1 % carry 52.7 %). The id is the rank spelt `T-%07d`, so `T-0000000` is the
busiest terminal and `top:N` means ranks 0..N-1.

The draw (inverse CDF). A uniform u in [0, 1) falls in one terminal's stretch of the
cumulative weight table. A binary search of a million entries misses the CPU caches at
every level (measured about 5 M draws/s), so a guide table (Chen and Asau, 1974) keeps,
for each of `size` buckets of equal weight, the terminal the bucket starts in: the draw
starts there and steps forward (measured 18 to 28 M draws/s). In the busy head, where
most draws land, a bucket holds at most one terminal boundary; in the quiet tail a few.
Draws that have not arrived after GUIDE_STEPS steps finish with a binary search, so
every draw is exactly the binary search's answer (tested). Memory: 12 bytes a terminal.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

from producer.encode import digits

#: Zipf exponent: the top 1 % of 1,000,000 terminals carry 50.0 % of the volume.
DEFAULT_SKEW = 0.89
ID_PREFIX = "T-"
ID_DIGITS = 7
MAX_TERMINALS = 10**ID_DIGITS
#: Forward steps from the guide before a draw falls back to a binary search.
GUIDE_STEPS = 4

#: Bucket edges are lowered by this relative amount, far more than any rounding of
#: u × size, so a draw's bucket never starts after the draw.
_EDGE_SLACK = 1e-9

_ID = re.compile(rf"^{ID_PREFIX}(\d{{{ID_DIGITS}}})$")


def terminal_id(rank: int) -> str:
    return f"{ID_PREFIX}{rank:0{ID_DIGITS}d}"


def rank_of(text: str) -> int | None:
    """The rank a `T-0000412` id stands for; None if it is not spelt so."""
    match = _ID.match(text.strip())
    return int(match[1]) if match else None


def id_grid(ranks: np.ndarray) -> np.ndarray:
    """Ids of these ranks as an (n, 9) uint8 grid, `T-0000412` a row (for encode_batch)."""
    out = np.empty((len(ranks), len(ID_PREFIX) + ID_DIGITS), dtype=np.uint8)
    out[:, : len(ID_PREFIX)] = np.frombuffer(ID_PREFIX.encode(), dtype=np.uint8)
    out[:, len(ID_PREFIX) :] = digits(ranks, ID_DIGITS + 1)[:, 1:]
    return out


class TerminalPopulation:
    """`size` terminals, ranked by volume, with Zipf weights of exponent `skew`.

    Equal populations compare and hash equal; the tables are built on first use.
    """

    def __init__(self, size: int, skew: float = DEFAULT_SKEW):
        if not 1 <= size <= MAX_TERMINALS:
            raise ValueError(f"a population has 1 to {MAX_TERMINALS:,} terminals, not {size}")
        if skew < 0:
            raise ValueError("skew must be >= 0")
        self.size = int(size)
        self.skew = float(skew)

    def __repr__(self) -> str:
        return f"TerminalPopulation(size={self.size}, skew={self.skew})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TerminalPopulation):
            return NotImplemented
        return (self.size, self.skew) == (other.size, other.skew)

    def __hash__(self) -> int:
        return hash((self.size, self.skew))

    def weights(self) -> np.ndarray:
        """Each rank's share of the volume (float64, sums to 1)."""
        w = np.arange(1, self.size + 1, dtype=np.float64) ** -self.skew
        return w / w.sum()

    def top_share(self, fraction: float) -> float:
        """Share of the volume carried by the busiest `fraction` of the terminals."""
        return float(self._cumulative[max(1, round(self.size * fraction)) - 1])

    @cached_property
    def _cumulative(self) -> np.ndarray:
        cum = np.cumsum(self.weights())
        return cum / cum[-1]

    @cached_property
    def _guide(self) -> np.ndarray:
        edges = np.arange(self.size, dtype=np.float64) / self.size * (1 - _EDGE_SLACK)
        return np.searchsorted(self._cumulative, edges, side="right").astype(np.int32)

    def search(self, u: np.ndarray) -> np.ndarray:
        """The rank each uniform u in [0, 1) falls on, by binary search (the reference)."""
        return np.searchsorted(self._cumulative, u, side="right").astype(np.int32)

    def assign(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` ranks drawn by weight (int32), the same for the same generator state."""
        return self.locate(rng.random(n))

    def locate(self, u: np.ndarray) -> np.ndarray:
        """`search(u)`, by the guide table: several times faster on large populations."""
        cum, size = self._cumulative, self.size
        bucket = np.minimum((u * size).astype(np.int64), size - 1)
        rank = self._guide[bucket]
        todo = np.flatnonzero(cum[rank] <= u)
        for _ in range(GUIDE_STEPS):
            if not todo.size:
                return rank
            rank[todo] += 1
            todo = todo[cum[rank[todo]] <= u[todo]]
        if todo.size:
            rank[todo] = self.search(u[todo])
        return rank

    def ids(self, ranks) -> list[str]:
        return [terminal_id(int(r)) for r in np.asarray(ranks).reshape(-1)]
