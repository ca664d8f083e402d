from __future__ import annotations

import numpy as np

from producer.stream import Pacer, slices


def test_slices_cut_by_wall_time():
    ts = np.array([0, 50, 99, 100, 5999, 6000, 6001])
    assert list(slices(ts, None)) == [(0, 7)]
    assert list(slices(ts, 1.0)) == [(0, 3), (3, 4), (4, 5), (5, 7)]  # 100 ms slices
    assert list(slices(ts, 60.0)) == [(0, 5), (5, 7)]  # 6 s of events per 0.1 s


def test_pacer_waits_until_events_are_due():
    now = [100.0]
    waited = []

    def sleep(s):
        waited.append(round(s, 6))
        now[0] += s

    pacer = Pacer(60.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait(1_000_000)  # first event: anchor, no wait
    pacer.wait(1_060_000)  # a minute later in event time = 1 s of wall time at speed 60
    now[0] += 5
    pacer.wait(1_120_000)  # already overdue: no sleep
    assert waited == [1.0]
    Pacer(None).wait(10**12)  # max speed never sleeps
