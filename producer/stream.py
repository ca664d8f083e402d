"""Sending batches on a clock: paced by event time at a given speed, or as fast as possible.

Speed 1 sends each event when the wall clock reaches its event time (relative to the
first event), 60 sends a minute of events per second, None sends at once. Events go out
in slices of about `SLICE_SECONDS` of wall time, each once its last event is due, so an
event is never sent before its time and at most a slice after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

SLICE_SECONDS = 0.1


class Pacer:
    def __init__(self, speed: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, anchor_ms: int | None = None):
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.anchor_ms = anchor_ms
        self.wall0: float | None = None

    def due(self, event_ms: int) -> float:
        """Wall-clock time (of `clock`) at which `event_ms` is due."""
        if self.anchor_ms is None:
            self.anchor_ms = event_ms
        if self.wall0 is None:
            self.wall0 = self.clock()
        return self.wall0 + (event_ms - self.anchor_ms) / 1000.0 / self.speed

    def wait(self, event_ms: int) -> None:
        if self.speed is None:
            return
        delay = self.due(event_ms) - self.clock()
        if delay > 0:
            self.sleep(delay)


def slices(ts_ms: np.ndarray, speed: float | None) -> Iterator[tuple[int, int]]:
    """(lo, hi) index ranges of a batch, each spanning one wall-clock slice of event time."""
    n = len(ts_ms)
    if speed is None or n == 0:
        if n:
            yield 0, n
        return
    span = max(1, int(SLICE_SECONDS * speed * 1000))
    edges = np.flatnonzero(np.diff(ts_ms // span)) + 1
    lo = 0
    for hi in [*edges.tolist(), n]:
        yield lo, hi
        lo = hi


def send_paced(
    batches: Iterable,
    send: Callable[[list[bytes], list[bytes]], None],
    pacer: Pacer,
    encode: Callable[[object], tuple[list[bytes], list[bytes]]],
    on_sent: Callable[[object, int, int], None] | None = None,
) -> None:
    """Encode and send each batch, slice by slice, on the pacer's clock."""
    for batch in batches:
        keys, values = encode(batch)
        ts = batch.ts_ms
        for lo, hi in slices(ts, pacer.speed):
            pacer.wait(int(ts[hi - 1]))
            if lo == 0 and hi == len(keys):
                send(keys, values)
            else:
                send(keys[lo:hi], values[lo:hi])
            if on_sent:
                on_sent(batch, lo, hi)
