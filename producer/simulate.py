"""The simulated stream: Poisson arrivals shaped like a real day, incidents injected.

Model. Time is cut into whole seconds from the (second-aligned) start. In second k,
status s arrives as a Poisson process of rate

    λ_s(k) = rate × shape(time of day) × mix_s × incidents_s(k)

(shape and mix in `shape.py`, incidents in `incidents.py`, evaluated at the second's
middle), so the count of second k is Poisson(λ_s(k)) and, given the count, arrival times
are uniform in the second (milliseconds). That is a non-homogeneous Poisson process at
one-second resolution.

Determinism. Counts are drawn one hour-block at a time from a generator seeded with
(seed, block); arrival times from another seeded with (seed, block, 1). So the same
scenario gives byte-identical events, ids included (`s<seed>-<epoch second hex>-<n>`,
n = rank within its second), and a shorter run is a prefix of a longer one.

Terminals. With a population (`terminals.py`), every event also gets a terminal, drawn
from a third generator, (seed, block, 2), in count order (by second, then status) before
the arrival times are drawn; slices (`incidents.py`) then act on each event by its
terminal and second: the status replaced, or the event dropped. The other generators draw
as before, so without slices a population only adds the terminal ids, and a silent slice
only takes events away (the others keep their times and ids).

Two views of one distribution. `generate` yields the events; `minute_counts` sums the
very same per-second counts per minute without materialising events, for long
scenarios (days, 10× volume): for one scenario its table equals the per-minute counts
of `generate`'s events exactly, not just in distribution (tested). Each minute's count
is therefore Poisson with mean the sum of that minute's λ. With slices, the counts need
each event's terminal: both views share the count-order events (`_counted`), only
`generate` goes on to draw times and sort. `minute_terminal_counts` is the same per
terminal, for scoring "which terminals" in-process over whole days.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from producer.encode import IdFormat, encode_batch
from producer.incidents import SILENT, Incident, Slice, rate_multipliers
from producer.shape import STATUS_MIX, shape_at
from producer.terminals import TerminalPopulation, id_grid, terminal_id
from txmon.contracts import STATUSES, IncidentLabel, Transaction

BLOCK_SECONDS = 3600
#: Events per batch aimed at; a batch is a whole number of seconds dividing a minute.
BATCH_EVENTS = 50_000
#: Rank of an event within its second, in the id: enough for 100 M events a second.
RANK_DIGITS = 8
_STEPS = (60, 30, 20, 15, 12, 10, 6, 5, 4, 3, 2, 1)
#: Third seed word of each block's generators (the counts' have none).
PLACE_STREAM = 1
TERMINAL_STREAM = 2


@dataclass(frozen=True)
class Scenario:
    """What to simulate. `duration` None means without end. `start` is floored to the second.

    `terminals` None: no terminal ids, as before populations existed (the same bytes).
    `slices` need a population that holds every terminal they name.
    """

    start: datetime
    rate: float
    seed: int = 0
    duration: float | None = None
    incidents: tuple[Incident, ...] = field(default_factory=tuple)
    terminals: TerminalPopulation | None = None
    slices: tuple[Slice, ...] = field(default_factory=tuple)

    def __post_init__(self):
        start = self.start
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        object.__setattr__(self, "start", start.replace(microsecond=0))
        object.__setattr__(self, "incidents", tuple(self.incidents))
        object.__setattr__(self, "slices", tuple(self.slices))
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if self.slices and self.terminals is None:
            raise ValueError("slices need a terminal population")
        for s in self.slices:
            if s.last >= self.terminals.size:
                raise ValueError(f"slice {s.spec or s.ranks}: {terminal_id(s.last)} is not "
                                 f"among {self.terminals.size} terminals")

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    @property
    def seconds(self) -> int | None:
        return None if self.duration is None else int(round(self.duration))

    def labels(self) -> list[IncidentLabel]:
        return [i.label(self.start) for i in (*self.incidents, *self.slices)]

    def rates(self, first: int, n: int) -> np.ndarray:
        """Expected count per second and status for seconds [first, first + n) of the run."""
        rel = np.arange(first, first + n, dtype=np.float64) + 0.5
        base = self.rate * shape_at(self.start_epoch + rel)
        return base[:, None] * STATUS_MIX[None, :] * rate_multipliers(self.incidents, rel)


def _block_len(scenario: Scenario, block: int) -> int:
    total = scenario.seconds
    if total is None:
        return BLOCK_SECONDS
    return max(0, min(BLOCK_SECONDS, total - block * BLOCK_SECONDS))


def _generator(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def block_counts(scenario: Scenario, block: int) -> np.ndarray:
    """Counts per second and status (int64, shape (seconds, 7)) of one hour-block.

    Before slices: `sent_counts` is what is sent.
    """
    n = _block_len(scenario, block)
    rng = _generator(scenario.seed, block)
    return rng.poisson(scenario.rates(block * BLOCK_SECONDS, n)).astype(np.int64)


def _blocks(scenario: Scenario) -> Iterator[int]:
    block = 0
    while _block_len(scenario, block) > 0:
        yield block
        block += 1


@dataclass
class _Counted:
    """A batch's events in count order (by second, then status), before their times
    within the second are drawn, from second `first` of the block. `per_second` counts
    them before a silent slice drops any: `keep` (None: all kept)."""

    first: int
    per_second: np.ndarray
    seconds: np.ndarray
    status: np.ndarray
    terminal: np.ndarray | None
    keep: np.ndarray | None


def _counted(scenario: Scenario, block: int, counts: np.ndarray) -> Iterator[_Counted]:
    """The block's non-empty batches, `counts` its block_counts."""
    step = batch_seconds(scenario.rate)
    statuses = np.arange(len(STATUSES), dtype=np.uint8)
    population = scenario.terminals
    who = None if population is None else _generator(scenario.seed, block, TERMINAL_STREAM)
    first_epoch = scenario.start_epoch + block * BLOCK_SECONDS
    for i in range(0, len(counts), step):
        part = counts[i : i + step]
        per_second = part.sum(axis=1)
        total = int(per_second.sum())
        if total == 0:
            continue
        seconds = np.repeat(np.arange(first_epoch + i, first_epoch + i + len(part)), per_second)
        status = np.repeat(np.tile(statuses, len(part)), part.ravel())
        if who is None:
            yield _Counted(i, per_second, seconds, status, None, None)
            continue
        terminal = population.assign(who, total)
        keep = _apply_slices(scenario, seconds, status, terminal)
        yield _Counted(i, per_second, seconds, status, terminal, keep)


def _apply_slices(scenario: Scenario, seconds: np.ndarray, status: np.ndarray,
                  terminal: np.ndarray) -> np.ndarray | None:
    """Rewrite `status` in place where a slice sets it; the events a silent one drops are
    False in the mask returned (None if none)."""
    keep = None
    rel = seconds - scenario.start_epoch + 0.5
    for s in scenario.slices:
        hit = s.active(rel)
        if not hit.any():
            continue
        hit &= s.members(terminal)
        if s.effect == SILENT:
            keep = ~hit if keep is None else keep & ~hit
        else:
            status[hit] = STATUSES.index(s.effect)
    return keep


def sent_counts(scenario: Scenario, block: int) -> np.ndarray:
    """block_counts after the slices: what `generate` sends, per second and status."""
    counts = block_counts(scenario, block)
    if not scenario.slices:
        return counts
    out = np.zeros_like(counts)
    first_epoch = scenario.start_epoch + block * BLOCK_SECONDS
    for part in _counted(scenario, block, counts):
        cell = (part.seconds - first_epoch - part.first) * len(STATUSES) + part.status
        cell = cell if part.keep is None else cell[part.keep]
        rows = out[part.first : part.first + len(part.per_second)]
        rows += np.bincount(cell, minlength=rows.size).reshape(rows.shape)
    return out


def minute_counts(scenario: Scenario):
    """Per-minute, per-status counts of the scenario, without generating events.

    A DataFrame indexed by UTC minute start, one int64 column per status (STATUSES
    order), every minute of the run present (zeros included). Needs a finite duration.
    """
    import pandas as pd

    if scenario.seconds is None:
        raise ValueError("minute_counts needs a finite duration")
    counts = [sent_counts(scenario, b) for b in _blocks(scenario)]
    per_second = np.concatenate(counts) if counts else np.zeros((0, len(STATUSES)), np.int64)
    epochs = scenario.start_epoch + np.arange(len(per_second))
    minutes = epochs // 60
    frame = pd.DataFrame(per_second, columns=list(STATUSES))
    frame = frame.groupby(minutes).sum()
    frame.index = pd.to_datetime(frame.index * 60, unit="s", utc=True)
    frame.index.name = "minute"
    return frame


@dataclass(frozen=True)
class TerminalCounts:
    """How many events each terminal sent per minute and status, in long form: one row
    per (minute, terminal, status) that occurs, sorted so. `minute` is the epoch second
    the minute starts at, `terminal` the rank, `status` the index in STATUSES."""

    minute: np.ndarray
    terminal: np.ndarray
    status: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.count)


def minute_terminal_counts(scenario: Scenario) -> TerminalCounts:
    """The scenario's events counted per minute, terminal and status, without
    generating them: the same events as `generate`'s (tested). Needs a finite duration
    and a population."""
    if scenario.seconds is None or scenario.terminals is None:
        raise ValueError("minute_terminal_counts needs a finite duration and terminals")
    size, width = scenario.terminals.size, len(STATUSES)
    first_minute = scenario.start_epoch // 60
    keys, counts = [], []
    for block in _blocks(scenario):
        cells = []
        for part in _counted(scenario, block, block_counts(scenario, block)):
            cell = ((part.seconds // 60 - first_minute) * size + part.terminal) * width
            cell += part.status
            cells.append(cell if part.keep is None else cell[part.keep])
        if cells:
            key, count = np.unique(np.concatenate(cells), return_counts=True)
            keys.append(key)
            counts.append(count)
    key, where = np.unique(np.concatenate(keys or [np.zeros(0, np.int64)]), return_inverse=True)
    count = np.bincount(where, weights=np.concatenate(counts or [np.zeros(0, np.int64)]),
                        minlength=len(key)).astype(np.int64)
    cell, status = np.divmod(key, width)
    minute, terminal = np.divmod(cell, size)
    return TerminalCounts((minute + first_minute) * 60, terminal.astype(np.int32),
                          status.astype(np.uint8), count)


@dataclass
class Batch:
    """Consecutive events in time order: epoch milliseconds, status index, id, and the
    terminal rank if the scenario has a population."""

    ts_ms: np.ndarray
    status: np.ndarray
    rank: np.ndarray
    seed: int
    terminal: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts_ms)

    def _id_format(self) -> IdFormat:
        return IdFormat(prefix=b"s%d-" % self.seed, per_second="hex", width=RANK_DIGITS)

    def encode(self) -> tuple[list[bytes], list[bytes]]:
        """(keys, values) ready for the producer; keys are the terminal ids, or the ids."""
        who = None if self.terminal is None else id_grid(self.terminal)
        return encode_batch(self.ts_ms, self.status, self.rank, self._id_format(), who)

    def ids(self) -> list[bytes]:
        return encode_batch(self.ts_ms, self.status, self.rank, self._id_format())[0]

    def transactions(self) -> list[Transaction]:
        """The events as contract objects (slow; for tests and small scenarios)."""
        who = [None] * len(self) if self.terminal is None else self.terminal.tolist()
        return [
            Transaction(
                id=i.decode(),
                status=STATUSES[s],
                timestamp=datetime.fromtimestamp(t / 1000, UTC),
                terminal_id=None if w is None else terminal_id(w),
            )
            for i, s, t, w in zip(self.ids(), self.status.tolist(), self.ts_ms.tolist(), who,
                                  strict=True)
        ]

    def take(self, index) -> Batch:
        """The events at `index` (a slice, a mask or positions), in that order."""
        who = None if self.terminal is None else self.terminal[index]
        return Batch(self.ts_ms[index], self.status[index], self.rank[index], self.seed, who)

    def head(self, n: int) -> Batch:
        return self.take(slice(None, n))


def batch_seconds(rate: float) -> int:
    for step in _STEPS:
        if step * rate <= BATCH_EVENTS:
            return step
    return 1


def _place(part: _Counted, place: np.random.Generator, seed: int) -> Batch:
    """The batch's events in time order: a time within its second for each, then ids."""
    total = len(part.seconds)
    ms = place.integers(0, 1000, size=total, dtype=np.int64)
    ts = part.seconds * 1000 + ms
    order = np.argsort(ts, kind="stable")
    starts = np.repeat(np.cumsum(part.per_second) - part.per_second, part.per_second)
    rank = np.arange(total, dtype=np.int64) - starts
    who = None if part.terminal is None else part.terminal[order]
    batch = Batch(ts[order], part.status[order], rank, seed, who)
    return batch if part.keep is None else batch.take(part.keep[order])


def generate(scenario: Scenario, count: int | None = None) -> Iterator[Batch]:
    """Yield the scenario's events in time order, in batches of whole seconds.

    Stops at the end of the duration or after `count` events, whichever comes first.
    """
    sent = 0
    for block in _blocks(scenario):
        place = _generator(scenario.seed, block, PLACE_STREAM)
        for part in _counted(scenario, block, block_counts(scenario, block)):
            batch = _place(part, place, scenario.seed)
            if not len(batch):
                continue
            if count is not None and sent + len(batch) >= count:
                yield batch.head(count - sent)
                return
            sent += len(batch)
            yield batch
