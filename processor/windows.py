"""Event-time tumbling one-minute windows: assignment, watermark, closing, merging.

Plain Python on purpose: this is where "counted once, reported once" is decided, so it
must be testable without a broker, and deterministic. Every decision for a partition
depends only on the order of its events, never on how they were batched, so a worker
that restarts and re-reads a partition makes exactly the same decisions again. Only the
idle rule (wall-clock advancing a silent partition) depends on time, by design.

Times are integer milliseconds since the epoch (UTC). Counts are the wire's lists
(`txmon.contracts.WindowPartial`): the statuses, then the late events in slot LATE;
`MinuteCounts.of` names them where a closed minute leaves this module's callers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from processor import state_schema
from processor.sketch import HeavyHitters
from txmon.contracts.minutes import LATE_SLOT, MINUTE_MS, minute_id
from txmon.contracts.statuses import STATUS_INDEX

log = logging.getLogger(__name__)
WINDOW_MS = MINUTE_MS
LATE = LATE_SLOT
#: Terminals a window's summary keeps while counting (processor/sketch.py; decision
#: 0006), and once closed: what a partial carries and the merge state holds (about
#: 6 KB a window), the heaviest by SLICE_WEIGHTS. 64 delayed a crowd of twenty small
#: terminals, all denied, from 3 to 14 minutes (txmon evaluate, slices-crowd).
SLICE_CAPACITY = 256
SLICE_SENT = 128
#: What decides which terminals a summary keeps: events, with a failure, denial or
#: reversal worth several, so a small terminal in trouble stays beside the busy ones.
SLICE_WEIGHTS: tuple[int, ...] = tuple(
    {"failed": 16, "denied": 4, "reversed": 8, "backend_reversed": 8}.get(s, 1)
    for s in STATUS_INDEX)
Wire = list[list[int | str]]
#: Pending minutes whose terminals' summary the merge stage holds in memory (about
#: 25 KB each, live).
MAX_PENDING_SLICES = 240


def new_slices() -> HeavyHitters:
    return HeavyHitters(SLICE_CAPACITY, SLICE_WEIGHTS)


def window_start(ts_ms: int) -> int:
    return ts_ms - ts_ms % WINDOW_MS


def empty_counts() -> list[int]:
    return [0] * (LATE_SLOT + 1)


@dataclass
class PartitionWindows:
    """Open windows of one source partition and how far it has closed.

    `closed_until`: every window starting before it is closed; an event for such a
    window is late. `last_offset` is stored with the counts so that a record re-read
    after a crash (offset already applied) is recognised and skipped.
    """

    lateness_ms: int
    last_offset: int = -1
    max_event_ms: int | None = None
    closed_until: int | None = None
    open: dict[int, list[int]] = field(default_factory=dict)
    closed: dict[int, list[int]] = field(default_factory=dict)
    #: Per window start, open or closed, its terminals' summary (`slice_batch`), as
    #: wire rows at rest (`pack`); live summaries are kept beside, in `_live`.
    slices: dict[int, Wire] = field(default_factory=dict)
    #: Which shape of this record a reader expects (processor/state_schema.py).
    schema: int = state_schema.CURRENT

    def seen(self, offset: int) -> bool:
        return offset <= self.last_offset

    def add(self, offset: int, ts_ms: int, status: int) -> bool:
        """Count one event; False when it is late (its window already closed)."""
        self.last_offset = offset
        start = ts_ms - ts_ms % WINDOW_MS
        if self.closed_until is not None and start < self.closed_until:
            self._late()
            return False
        counts = self.open.get(start)
        if counts is None:
            counts = self.open[start] = empty_counts()
        counts[status] += 1
        if self.max_event_ms is None or ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms
            # close_until's own early return, checked here: most events advance the
            # watermark but only one a minute moves the bound (hot path).
            watermark = ts_ms - self.lateness_ms
            if self.closed_until is None or \
                    watermark - watermark % WINDOW_MS > self.closed_until:
                self.close_until(watermark)
        return True

    def add_many(self, times: list[int], statuses: list[int]) -> list[tuple[int, int]]:
        """Count events in order, deciding exactly as `add` one at a time would; returns
        (position, closed_until then) of each late one. The caller sets `last_offset`.

        `add` per event is a method call and half a dozen attribute reads; here the
        state lives in locals and is written back only when a window closes or an event
        is late (both about once a minute), which is what makes the hot path cheap."""
        late: list[tuple[int, int]] = []
        W, lateness, open_ = WINDOW_MS, self.lateness_ms, self.open
        closed = self.closed_until
        # The least event time that moves the closing bound (close_until's own check).
        moves_at = -1 if closed is None else closed + W + lateness
        top = -1 if self.max_event_ms is None else self.max_event_ms
        current, counts = None, None
        for i, ts in enumerate(times):
            start = ts - ts % W
            if start != current:
                if closed is not None and start < closed:
                    self.max_event_ms = top
                    self._late()
                    late.append((i, closed))
                    continue
                counts = open_.get(start)
                if counts is None:
                    counts = open_[start] = empty_counts()
                current = start
            counts[statuses[i]] += 1
            if ts > top:
                top = ts
                if ts >= moves_at:
                    self.close_until(ts - lateness)
                    closed = self.closed_until
                    moves_at = closed + W + lateness
                    current = None  # its window may have just closed
        if top >= 0:
            self.max_event_ms = top
        return late

    def slice_batch(self, times: list[int], statuses: list[int],
                    terminals: list[str | None], late: list[tuple[int, int]]) -> None:
        """The batch's terminals into the summaries of the windows `add_many` counted
        them in (late events left out). A batch without terminals costs one pass."""
        if terminals.count(None) == len(terminals):
            return
        if late:
            terminals = list(terminals)
            for i, _ in late:
                terminals[i] = None
        t = np.fromiter(times, np.int64, len(times))
        starts = t - t % WINDOW_MS
        cuts = [0, *(np.flatnonzero(np.diff(starts)) + 1).tolist(), len(times)]
        live = self._sketches()
        for a, b in zip(cuts, cuts[1:], strict=False):
            start = int(starts[a])
            if start in self.open or start in self.closed:
                live.setdefault(start, new_slices()).update(terminals[a:b], statuses[a:b])

    def drain_slices(self, starts) -> dict[int, Wire]:
        """The summaries of these (closed, drained) windows, as wire rows."""
        live = self._sketches()
        out = {}
        for start in starts:
            self.slices.pop(start, None)
            hh = live.pop(start, None)
            if hh is not None:
                out[start] = hh.shrunk(SLICE_SENT).to_wire()
        return out

    def pack(self) -> None:
        """Write the live summaries into `slices`, to be stored with the counts."""
        self.slices = {s: hh.to_wire() for s, hh in self._sketches().items()}

    def _sketches(self) -> dict[int, HeavyHitters]:
        live = self.__dict__.get("_live")
        if live is None:
            live = self.__dict__["_live"] = {
                s: HeavyHitters.from_wire(w) for s, w in self.slices.items()}
        return live

    def skip(self, offset: int) -> None:
        """A record that is not an event (dead-lettered) still moves the offset."""
        self.last_offset = offset

    def _late(self) -> None:
        # Charged to the newest open window: deterministic, and it is the one reported
        # next, which is when an operator wants to hear about it.
        start = max(window_start(self.max_event_ms), self.closed_until)
        counts = self.open.get(start)
        if counts is None:
            counts = self.open[start] = empty_counts()
        counts[LATE] += 1

    @property
    def watermark(self) -> int | None:
        if self.max_event_ms is None:
            return None
        return self.max_event_ms - self.lateness_ms

    def close_until(self, watermark_ms: int) -> None:
        """Close every window whose end is at or before the watermark."""
        bound = window_start(watermark_ms)
        if self.closed_until is not None and bound <= self.closed_until:
            return
        for start in sorted(s for s in self.open if s < bound):
            self.closed[start] = self.open.pop(start)
        self.closed_until = bound

    def advance_idle(self, idle_ms: int) -> None:
        """The partition has been silent for `idle_ms` of wall-clock time past the idle
        timeout's start: let time pass as the clock says, so the last minute closes."""
        if self.watermark is not None:
            self.close_until(self.watermark + idle_ms)

    def drain_closed(self) -> dict[int, list[int]]:
        closed, self.closed = self.closed, {}
        return closed


class Closed(NamedTuple):
    """A final minute: statuses + late summed, events per partition, terminals."""

    start: int
    counts: list[int]
    sources: list[int]
    slices: HeavyHitters | None


@dataclass
class MinuteMerger:
    """Merges per-partition partial windows into one record per minute.

    A minute is final once every partition has closed it. A silent partition closes
    its windows by the clock (PartitionWindows.advance_idle), so it cannot hold minutes
    back for long; a partition that never had an event is left out (like Flink's idle
    sources) once it claims idle (caught up and silent for the idle timeout, as any
    partition) and the claim is fresh: sent at least `idle_confirm_ms` after the
    latest advance of another partition, so one that just woke up (its data still in
    flight) is waited for rather than skipped. Minutes in between with no partial at
    all are emitted as zeros: a minute with no transactions is what an outage looks
    like. A jump longer than `max_empty_minutes` (a bogus far-past first event, say)
    is not filled minute by minute.

    Decisions use only the records' contents (including their send times), so
    re-applying the same records after a crash decides the same.
    """

    partitions: int
    max_empty_minutes: int = 1440
    idle_confirm_ms: int = 2000
    reported: dict[int, int] = field(default_factory=dict)
    advanced_at: dict[int, int] = field(default_factory=dict)
    idle_at: dict[int, int] = field(default_factory=dict)
    partials: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    emitted_until: int | None = None
    #: Partition-windows whose summary found MAX_PENDING_SLICES minutes pending.
    dropped_slices: int = 0
    late_carry: int = 0
    skipped_minutes: int = 0

    def apply(
        self,
        partition: int,
        closed_until: int | None,
        idle: bool,
        windows: dict[int, list[int]],
        sent_ms: int = 0,
    ) -> None:
        previous = self.reported.get(partition)
        for start, counts in windows.items():
            if previous is not None and start < previous:
                # Received already: a partition closes each window once, in order, so a
                # window below its own earlier claim is a re-send (a restarted or
                # reassigned worker repeating what it did since its last checkpoint).
                continue
            if self.emitted_until is not None and start < self.emitted_until:
                # A partition left out while it had no events, now with a reported minute.
                self.late_carry += sum(counts)
                continue
            self.partials.setdefault(start, {})[partition] = list(counts)
        if closed_until is not None and (previous is None or closed_until > previous):
            self.reported[partition] = closed_until
            if not idle:
                self.advanced_at[partition] = sent_ms
        if idle:
            self.idle_at[partition] = sent_ms
        else:
            self.idle_at.pop(partition, None)

    def bound(self) -> int | None:
        """Every minute before this is final: the least any partition has closed.

        Idle partitions count with their clock-advanced claims (a silent partition still
        moves forward, so it cannot hold minutes back for long). Only partitions that
        never had an event are left out, and only on a fresh idle claim.
        """
        claims = []
        for p in range(self.partitions):
            if p in self.reported:
                claims.append(self.reported[p])
            elif p not in self.idle_at:
                return None  # active, nothing closed yet
        if not claims:
            return None
        newest_advance = max(self.advanced_at.values(), default=0)
        if any(self.idle_at[p] < newest_advance + self.idle_confirm_ms
               for p in self.idle_at if p not in self.reported):
            return None  # an empty partition's idle claim older than the data: wait
        return min(claims)

    def close(self) -> list[tuple[int, list[int]]]:
        """The minutes that became final, in order, each with statuses + late summed."""
        return [(c.start, c.counts) for c in self.close_with_sources()]

    def close_with_sources(self, pending: dict[int, HeavyHitters] | None = None,
                           ) -> list[Closed]:
        """`close`, with each minute's events per source partition (late ones aside):
        a partition that falls silent while the others flow shows there, idle-closed
        minutes included; and its terminals' summary, merged over the partitions."""
        bound = self.bound()
        if bound is None:
            return []
        start = self.emitted_until
        if start is None:
            if not self.partials:
                return []
            start = min(self.partials)
        out: list[Closed] = []
        minute = start
        while minute < bound:
            sources = [0] * self.partitions
            parts = self.partials.pop(minute, None)
            if parts is None:
                following = [s for s in self.partials if minute < s < bound]
                nxt = min(following) if following else bound
                if (nxt - minute) // WINDOW_MS > self.max_empty_minutes:
                    self.skipped_minutes += (nxt - minute) // WINDOW_MS
                    minute = nxt
                    continue
                counts = empty_counts()
            else:
                counts = self._sum(parts, sources)
            if self.late_carry:
                counts[LATE] += self.late_carry
                self.late_carry = 0
            out.append(Closed(minute, counts, sources,
                              None if pending is None else pending.pop(minute, None)))
            minute += WINDOW_MS
        self.emitted_until = max(minute, start)
        return out

    def add_slices(self, partition: int, slices: dict[int, Wire],
                   pending: dict[int, HeavyHitters]) -> None:
        """A partial's terminals' summaries into `pending`, before its `apply`: only
        the windows `apply` will count (see `_add_slices`)."""
        previous = self.reported.get(partition)
        for start, wire in slices.items():
            if (previous is None or start >= previous) and (
                    self.emitted_until is None or start >= self.emitted_until):
                self._add_slices(pending, start, wire)

    def _add_slices(self, pending: dict[int, HeavyHitters], start: int, wire: Wire) -> None:
        """Merge a partition's summary into its minute's, on arrival: a partition's
        window is accepted once (a re-send is below its claim). `pending` is the
        caller's, in memory, not in this stored state, which is written after every
        partial and would grow by a summary per pending minute (a replay far ahead of
        its slowest partition has hundreds): after a restart, the minutes pending then
        are judged without their terminals, their counts exact as ever. At most
        MAX_PENDING_SLICES minutes."""
        held = pending.get(start)
        if held is None:
            if len(pending) >= MAX_PENDING_SLICES:
                if not self.dropped_slices % MAX_PENDING_SLICES:
                    log.warning("%d minutes pending: the minute %s is judged without its "
                                "terminals", len(pending), minute_id(start))
                self.dropped_slices += 1
                return
            pending[start] = HeavyHitters.from_wire(wire)
            return
        held.merge(HeavyHitters.from_wire(wire))



    def _sum(self, parts: dict[int, list[int]], sources: list[int]) -> list[int]:
        """The partitions' counts summed; each one's events written into `sources`."""
        counts = empty_counts()
        for p, part in parts.items():
            for i, n in enumerate(part):
                counts[i] += n
            if p < self.partitions:
                sources[p] = sum(part) - part[LATE]
        return counts
