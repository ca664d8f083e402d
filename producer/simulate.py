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

Two views of one distribution. `generate` yields the events; `minute_counts` sums the
very same per-second counts per minute without materialising events, for long
scenarios (days, 10× volume): for one scenario its table equals the per-minute counts
of `generate`'s events exactly, not just in distribution (tested). Each minute's count
is therefore Poisson with mean the sum of that minute's λ.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from producer.encode import IdFormat, encode_batch
from producer.incidents import Incident, rate_multipliers
from producer.shape import STATUS_MIX, shape_at
from txmon.contracts import STATUSES, IncidentLabel, Transaction

BLOCK_SECONDS = 3600
#: Events per batch aimed at; a batch is a whole number of seconds dividing a minute.
BATCH_EVENTS = 50_000
#: Rank of an event within its second, in the id: enough for 100 M events a second.
RANK_DIGITS = 8
_STEPS = (60, 30, 20, 15, 12, 10, 6, 5, 4, 3, 2, 1)


@dataclass(frozen=True)
class Scenario:
    """What to simulate. `duration` None means without end. `start` is floored to the second."""

    start: datetime
    rate: float
    seed: int = 0
    duration: float | None = None
    incidents: tuple[Incident, ...] = field(default_factory=tuple)

    def __post_init__(self):
        start = self.start
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        object.__setattr__(self, "start", start.replace(microsecond=0))
        object.__setattr__(self, "incidents", tuple(self.incidents))
        if self.rate < 0:
            raise ValueError("rate must be >= 0")

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    @property
    def seconds(self) -> int | None:
        return None if self.duration is None else int(round(self.duration))

    def labels(self) -> list[IncidentLabel]:
        return [i.label(self.start) for i in self.incidents]

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


def block_counts(scenario: Scenario, block: int) -> np.ndarray:
    """Counts per second and status (int64, shape (seconds, 7)) of one hour-block."""
    n = _block_len(scenario, block)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([scenario.seed, block])))
    return rng.poisson(scenario.rates(block * BLOCK_SECONDS, n)).astype(np.int64)


def _blocks(scenario: Scenario) -> Iterator[int]:
    block = 0
    while _block_len(scenario, block) > 0:
        yield block
        block += 1


def minute_counts(scenario: Scenario):
    """Per-minute, per-status counts of the scenario, without generating events.

    A DataFrame indexed by UTC minute start, one int64 column per status (STATUSES
    order), every minute of the run present (zeros included). Needs a finite duration.
    """
    import pandas as pd

    if scenario.seconds is None:
        raise ValueError("minute_counts needs a finite duration")
    counts = [block_counts(scenario, b) for b in _blocks(scenario)]
    per_second = np.concatenate(counts) if counts else np.zeros((0, len(STATUSES)), np.int64)
    epochs = scenario.start_epoch + np.arange(len(per_second))
    minutes = epochs // 60
    frame = pd.DataFrame(per_second, columns=list(STATUSES))
    frame = frame.groupby(minutes).sum()
    frame.index = pd.to_datetime(frame.index * 60, unit="s", utc=True)
    frame.index.name = "minute"
    return frame


@dataclass
class Batch:
    """Consecutive events in time order: epoch milliseconds, status index, id."""

    ts_ms: np.ndarray
    status: np.ndarray
    rank: np.ndarray
    seed: int

    def __len__(self) -> int:
        return len(self.ts_ms)

    def encode(self) -> tuple[list[bytes], list[bytes]]:
        """(keys, values) ready for the producer; keys are the ids."""
        ids = IdFormat(prefix=b"s%d-" % self.seed, per_second="hex", width=RANK_DIGITS)
        return encode_batch(self.ts_ms, self.status, self.rank, ids)

    def ids(self) -> list[bytes]:
        return self.encode()[0]

    def transactions(self) -> list[Transaction]:
        """The events as contract objects (slow; for tests and small scenarios)."""
        return [
            Transaction(
                id=i.decode(),
                status=STATUSES[s],
                timestamp=datetime.fromtimestamp(t / 1000, UTC),
            )
            for i, s, t in zip(self.ids(), self.status.tolist(), self.ts_ms.tolist(), strict=True)
        ]

    def head(self, n: int) -> Batch:
        return Batch(self.ts_ms[:n], self.status[:n], self.rank[:n], self.seed)


def batch_seconds(rate: float) -> int:
    for step in _STEPS:
        if step * rate <= BATCH_EVENTS:
            return step
    return 1


def generate(scenario: Scenario, count: int | None = None) -> Iterator[Batch]:
    """Yield the scenario's events in time order, in batches of whole seconds.

    Stops at the end of the duration or after `count` events, whichever comes first.
    """
    step = batch_seconds(scenario.rate)
    statuses = np.arange(len(STATUSES), dtype=np.uint8)
    sent = 0
    for block in _blocks(scenario):
        counts = block_counts(scenario, block)
        place = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([scenario.seed, block, 1]))
        )
        first_epoch = scenario.start_epoch + block * BLOCK_SECONDS
        for i in range(0, len(counts), step):
            part = counts[i : i + step]
            per_second = part.sum(axis=1)
            total = int(per_second.sum())
            if total == 0:
                continue
            seconds = np.repeat(np.arange(first_epoch + i, first_epoch + i + len(part)), per_second)
            status = np.repeat(np.tile(statuses, len(part)), part.ravel())
            ms = place.integers(0, 1000, size=total, dtype=np.int64)
            ts = seconds * 1000 + ms
            order = np.argsort(ts, kind="stable")
            ts = ts[order]
            status = status[order]
            starts = np.repeat(np.cumsum(per_second) - per_second, per_second)
            rank = np.arange(total, dtype=np.int64) - starts
            batch = Batch(ts, status, rank, scenario.seed)
            if count is not None and sent + total >= count:
                yield batch.head(count - sent)
                return
            sent += total
            yield batch
