"""Heavy hitters per window: which terminals carry a window's counts, in bounded memory.

An exact count per terminal grows with the fleet (1,000,000 terminals) and a count-min
sketch cannot list its keys, so a window keeps a Misra-Gries summary of capacity k: at
most k keys, each with a vector of counts (one slot per status, STATUSES order, unless
the caller chooses other slots). Summaries merge by the rule of Agarwal et al. (2012,
"Mergeable summaries"): add the counters, subtract the (k+1)-th largest, keep what stays
positive. Over a merged weight N, whatever the order batches and partitions are merged
in, no key is over-counted and at most N/(k+1) of any key's weight is missing, so a key
heavier than that is always tracked. Stage 1 counts each batch exactly in C (a dict,
then numpy) and merges it into its partition's summary; stage 2 merges the partitions'.
docs/decisions/0006-heavy-hitters-per-window.md has the choice and its measurements.

Each key also keeps how much of its weight may be missing (0 for a key tracked since the
summary's first batch), so a reader can tell a sure heavy hitter from a maybe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import compress, repeat
from typing import NamedTuple

import numpy as np

from txmon.contracts.statuses import STATUSES

__all__ = ["DEFAULT_CAPACITY", "HeavyHitters", "Hitter"]

#: Keys tracked at most: at 50,000 events a partition-minute, a terminal with more than
#: 194 of them is always tracked; docs/decisions/0006-heavy-hitters-per-window.md.
DEFAULT_CAPACITY = 256
#: A table row is [counter, missing, *counts]: the Misra-Gries counter that decides who
#: stays, the weight that may be missing from the counts, then the counts.
_COUNTER, _MISSING, _COUNTS = 0, 1, 2
#: The wire's first row: capacity, total, bound, then the slot weights.
_HEADER = 3

Rank = int | Callable[[tuple[int, ...]], float] | None


class Hitter(NamedTuple):
    """A tracked key, read back. Its true weight lies in [weight, weight + missing] and
    its true count in slot s in [counts[s], counts[s] + missing // weights[s]]; missing
    0 means counted exactly. An untracked key weighs at most the summary's `bound`,
    which is how a heavy terminal gone silent shows."""

    key: str
    counts: tuple[int, ...]
    weight: int
    missing: int


class HeavyHitters:
    """A mergeable heavy-hitters summary with a count vector per key.

    `weights` (positive integers, one per slot) make the weight that decides who is
    tracked: all ones (the default) ranks terminals by their events; weighting failures
    and denials ranks them by trouble while every slot keeps a bound. `total` is the
    weight merged in, `bound` the weight any key may be missing (<= total / (k + 1))."""

    __slots__ = ("capacity", "weights", "total", "bound", "_keys", "_table", "_rows")

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 weights: Sequence[int] | None = None):
        weights = tuple(weights) if weights is not None else (1,) * len(STATUSES)
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, not {capacity!r}")
        if not weights or not all(isinstance(w, int) and w >= 1 for w in weights):
            raise ValueError(f"weights must be positive integers, not {weights!r}")
        self.capacity = capacity
        self.weights = weights
        self.total = 0
        self.bound = 0
        self._keys: list[str] = []
        self._table = np.zeros((0, _COUNTS + len(weights)), np.int64)
        self._rows: dict[str, int] | None = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._lookup()

    def update(self, ids: Sequence[str | None], statuses: Sequence[int]) -> None:
        """Merge a batch given as parallel lists (a None id is skipped; a status is a
        slot index). The batch is counted exactly first, in a few C passes, so Python
        never loops over its events."""
        n = len(ids)
        if n != len(statuses):
            raise ValueError(f"{n} ids but {len(statuses)} statuses")
        if not n:
            return
        width = len(self.weights)
        slots = np.fromiter(statuses, np.intp, n)
        if slots.min() < 0 or slots.max() >= width:
            raise ValueError(f"a status index outside 0..{width - 1}")
        # A key's row is the position of its last event: one C pass, no renumbering.
        last = dict(zip(ids, range(n), strict=True))
        rows = np.fromiter(map(last.__getitem__, ids), np.intp, n)
        batch = np.zeros((n, _COUNTS + width), np.int64)
        batch[:, _COUNTS:] = np.bincount(rows * width + slots,
                                         minlength=n * width).reshape(n, width)
        if None in last:
            batch[last[None]] = 0
        batch[:, _COUNTER] = batch[:, _COUNTS:] @ np.array(self.weights, np.int64)
        weight = int(batch[:, _COUNTER].sum())
        if weight:
            self.total += weight
            self._combine(ids, last, batch, 0)

    def merge(self, other: HeavyHitters) -> None:
        """Merge another summary of the same capacity and weights into this one; the
        result holds the same keys and counts whichever side merges."""
        if (other.capacity, other.weights) != (self.capacity, self.weights):
            raise ValueError("summaries of different capacity or weights do not merge")
        self.total += other.total
        self._combine(other._keys, other._lookup(), other._table.copy(), other.bound)

    def shrunk(self, capacity: int) -> HeavyHitters:
        """The same summary cut to a smaller capacity (as a merge into an empty one
        would cut it): fewer keys to send and store, the bound grown by what was cut."""
        out = HeavyHitters(capacity, self.weights)
        out.total = self.total
        out._combine(self._keys, self._lookup(), self._table.copy(), self.bound)
        return out

    def get(self, key: str) -> Hitter | None:
        row = self._lookup().get(key)
        return None if row is None else self._hitter(key, self._table[row].tolist())

    def top(self, n: int, by: Rank = None) -> list[Hitter]:
        """The n heaviest tracked keys by their sure counts: by weight (None), by one
        slot (an index) or by a function of the counts; ties in key order."""
        hitters = list(map(self._hitter, self._keys, self._table.tolist()))
        if by is None:
            def rank(h: Hitter) -> float:
                return h.weight
        elif isinstance(by, int):
            def rank(h: Hitter) -> float:
                return h.counts[by]
        else:
            def rank(h: Hitter) -> float:
                return by(h.counts)
        return sorted(hitters, key=lambda h: (-rank(h), h.key))[:max(n, 0)]

    def to_wire(self) -> list[list[int | str]]:
        """[[capacity, total, bound, *weights], [key, counter, missing, *counts], ...]:
        plain JSON-able lists, for a msgspec field typed `list[list[int | str]]`."""
        return [[self.capacity, self.total, self.bound, *self.weights],
                *([key, *row] for key, row in zip(self._keys, self._table.tolist(),
                                                  strict=True))]

    @classmethod
    def from_wire(cls, rows: Sequence[Sequence[int | str]]) -> HeavyHitters:
        if not rows or len(rows[0]) <= _HEADER:
            raise ValueError("a heavy-hitters record starts with its header row")
        capacity, total, bound, *weights = rows[0]
        summary = cls(capacity, weights)
        if not all(isinstance(x, int) and x >= 0 for x in (total, bound)):
            raise ValueError(f"a total and a bound, not {total!r} and {bound!r}")
        width, entries = 1 + _COUNTS + len(weights), rows[1:]
        if len(entries) > capacity or \
                any(len(row) != width or not isinstance(row[0], str) for row in entries):
            raise ValueError(f"a heavy-hitters record holds at most {capacity} rows of "
                             f"{width} values, each starting with its key")
        summary.total, summary.bound = total, bound
        summary._keys = [row[0] for row in entries]
        summary._table = np.array([row[1:] for row in entries], np.int64).reshape(
            len(entries), width - 1)
        summary._rows = None
        return summary

    def _lookup(self) -> dict[str, int]:
        if self._rows is None:
            self._rows = dict(zip(self._keys, range(len(self._keys)), strict=True))
        return self._rows

    def _hitter(self, key: str, row: list[int]) -> Hitter:
        counts = tuple(row[_COUNTS:])
        weight = sum(w * c for w, c in zip(self.weights, counts, strict=True))
        return Hitter(key, counts, weight, row[_MISSING])

    def _combine(self, keys: Sequence, rows: dict, table: np.ndarray, bound: int) -> None:
        """Merge in a summary given by its keys, their rows in `table` (which this
        overwrites; rows with counter 0 are ignored) and its bound. A key absent from
        one side may have had up to that side's bound there: its missing grows by it."""
        mine = np.fromiter(map(rows.get, self._keys, repeat(-1)), np.intp, len(self._keys))
        shared = mine >= 0
        table[mine[shared]] += self._table[shared]
        table[mine[shared], _MISSING] -= self.bound  # added back to every row kept below
        alone = self._table[~shared]
        counters = np.concatenate((table[:, _COUNTER], alone[:, _COUNTER]))
        delta = self._cut(counters)
        kept = np.flatnonzero(counters > delta)
        theirs = int(np.searchsorted(kept, len(table)))
        alone_rows = kept[theirs:] - len(table)
        merged = np.concatenate((table[kept[:theirs]], alone[alone_rows]))
        merged[:theirs, _MISSING] += self.bound
        merged[theirs:, _MISSING] += bound
        merged[:, _COUNTER] -= delta
        alone_keys = list(compress(self._keys, (~shared).tolist()))
        self._keys = [*map(keys.__getitem__, kept[:theirs].tolist()),
                      *map(alone_keys.__getitem__, alone_rows.tolist())]
        self._table = merged
        self._rows = None
        self.bound += bound + delta

    def _cut(self, counters: np.ndarray) -> int:
        """The (k+1)-th largest counter (0 when there are at most k): each of the k + 1
        loses it, which bounds the error by N/(k+1). Most of a batch's keys are seen
        once, so only the counters above 1 are sorted (and np.partition's introselect
        degrades on that many equal values)."""
        k = self.capacity
        if len(counters) <= k:
            return 0
        above = counters[counters > 1]
        if len(above) > k:
            return int(np.sort(above)[-k - 1])
        return 1 if np.count_nonzero(counters) > k else 0
