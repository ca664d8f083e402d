"""Pure window logic: assignment, watermark, lateness, idle closing, merging."""

import random

from processor.windows import (
    LATE,
    WINDOW_MS,
    MinuteMerger,
    PartitionWindows,
    window_start,
)
from txmon.contracts import minute_id

M = WINDOW_MS
T0 = 1_700_000_040_000  # a minute boundary
assert T0 % M == 0


def status(counts, i=0):
    return counts[i]


def test_window_start_is_floor_to_minute():
    assert window_start(T0) == T0
    assert window_start(T0 + M - 1) == T0
    assert window_start(T0 + M) == T0 + M
    assert minute_id(T0) == "2023-11-14T22:14Z"


def test_window_closes_when_watermark_passes_its_end():
    w = PartitionWindows(lateness_ms=10_000)
    w.add(0, T0 + 5_000, 0)
    w.add(1, T0 + M + 9_000, 0)  # watermark T0+M-1s: first window still open
    assert w.drain_closed() == {}
    w.add(2, T0 + M + 10_000, 1)  # watermark reaches T0+M: first window closes
    closed = w.drain_closed()
    assert list(closed) == [T0]
    assert closed[T0][0] == 1 and sum(closed[T0]) == 1


def test_event_within_lateness_counts_later_is_late():
    w = PartitionWindows(lateness_ms=10_000)
    w.add(0, T0 + M + 5_000, 0)
    assert w.add(1, T0 + 59_000, 2)  # 6 s late, window still open: counted
    w.add(2, T0 + M + 10_000, 0)  # closes [T0, T0+M)
    assert not w.add(3, T0 + 30_000, 2)  # its window is closed: late
    closed = w.drain_closed()
    assert closed[T0][2] == 1
    w.add(4, T0 + 2 * M + 10_000, 0)  # closes the second window, which carries the late
    assert w.drain_closed()[T0 + M][LATE] == 1


def test_offsets_already_applied_are_recognised():
    w = PartitionWindows(lateness_ms=0)
    w.add(41, T0, 0)
    assert w.seen(41) and w.seen(3) and not w.seen(42)


def test_decisions_do_not_depend_on_batching():
    events = [(i, T0 + (i * 7919) % (5 * M), i % 7) for i in range(2000)]
    a = PartitionWindows(lateness_ms=10_000)
    for off, ts, s in events:
        a.add(off, ts, s)
    b = PartitionWindows(lateness_ms=10_000)
    out_b = {}
    for off, ts, s in events:
        b.add(off, ts, s)
        if off % 97 == 0:
            out_b.update(b.drain_closed())
    out_b.update(b.drain_closed())
    assert a.drain_closed() == out_b
    assert a.open == b.open


def test_idle_partition_closes_its_last_minute():
    w = PartitionWindows(lateness_ms=10_000)
    w.add(0, T0 + 30_000, 0)
    assert w.drain_closed() == {}
    w.advance_idle(20_000)  # wm = T0+40s: not yet
    assert w.drain_closed() == {}
    w.advance_idle(41_000)  # wm = T0+61s
    assert list(w.drain_closed()) == [T0]
    assert not w.add(1, T0 + 31_000, 0)  # late once closed by the clock


def test_merge_waits_for_every_active_partition_and_fills_empty_minutes():
    mm = MinuteMerger(partitions=2)
    mm.apply(0, T0 + 3 * M, False, {T0: [1, 0, 0, 0, 0, 0, 0, 0]})
    assert mm.close() == []  # partition 1 has not reported
    mm.apply(1, T0 + 2 * M, False, {T0 + M: [0, 2, 0, 0, 0, 0, 0, 1]})
    out = mm.close()
    assert [s for s, _ in out] == [T0, T0 + M]
    assert out[0][1][0] == 1 and out[1][1][1] == 2 and out[1][1][LATE] == 1
    mm.apply(1, T0 + 4 * M, False, {})
    out = mm.close()
    assert [s for s, _ in out] == [T0 + 2 * M]  # empty minute, emitted as zeros
    assert sum(out[0][1]) == 0


def test_merge_is_idempotent_for_resent_partials():
    def run(resend):
        mm = MinuteMerger(partitions=1)
        msgs = [(T0 + M, {T0: [3, 1, 0, 0, 0, 0, 0, 0]}), (T0 + 2 * M, {T0 + M: [5] + [0] * 7})]
        out = []
        for cu, w in msgs:
            mm.apply(0, cu, False, w)
            if resend:
                mm.apply(0, cu, False, w)
            out += mm.close()
        return out

    assert run(False) == run(True)


def test_a_worker_repeating_emitted_minutes_after_a_restart_changes_nothing():
    """A restarted worker re-sends every window closed since its last checkpoint, batched
    differently; minutes already emitted must not come back as late events."""
    a, b, c = [3, 1] + [0] * 6, [5] + [0] * 7, [2] * 7 + [0]

    def run(restart: bool):
        mm = MinuteMerger(partitions=1)
        mm.apply(0, T0 + M, False, {T0: a})
        out = mm.close()
        mm.apply(0, T0 + 2 * M, False, {T0 + M: b})
        out += mm.close()
        if restart:
            mm.apply(0, T0 + 2 * M, False, {T0: a, T0 + M: b})
            out += mm.close()
        mm.apply(0, T0 + 3 * M, False, {T0 + 2 * M: c})
        return out + mm.close()

    assert run(True) == run(False)
    assert run(True)[-1] == (T0 + 2 * M, c)


def test_idle_partitions_do_not_hold_minutes_back():
    mm = MinuteMerger(partitions=2, idle_confirm_ms=2000)
    mm.apply(1, None, True, {}, sent_ms=0)
    mm.apply(0, T0 + M, False, {T0: [1] + [0] * 7}, sent_ms=1000)
    assert mm.close() == []  # the idle claim predates the data: partition 1 may be waking
    mm.apply(1, None, True, {}, sent_ms=3500)
    assert [s for s, _ in mm.close()] == [T0]


def test_a_partition_waking_up_is_waited_for():
    mm = MinuteMerger(partitions=2, idle_confirm_ms=2000)
    mm.apply(1, None, True, {}, sent_ms=0)
    mm.apply(0, T0 + M, False, {T0: [1] + [0] * 7}, sent_ms=1000)
    mm.apply(1, T0 + M, False, {T0: [2] + [0] * 7}, sent_ms=1100)
    out = mm.close()
    assert out == [(T0, [3] + [0] * 7)]


def test_partial_for_a_reported_minute_becomes_late():
    mm = MinuteMerger(partitions=2, idle_confirm_ms=0)
    mm.apply(1, None, True, {})
    mm.apply(0, T0 + M, False, {T0: [1] + [0] * 7})
    assert mm.close()
    mm.apply(1, T0 + 2 * M, False, {T0: [4] + [0] * 7})  # woke up with an old minute
    mm.apply(0, T0 + 2 * M, False, {})
    out = mm.close()
    assert out[0][0] == T0 + M and out[0][1][LATE] == 4


def test_huge_gap_is_not_filled_minute_by_minute():
    mm = MinuteMerger(partitions=1, max_empty_minutes=10)
    far = T0 + 10_000 * M
    mm.apply(0, far + M, False, {T0: [1] + [0] * 7, far: [2] + [0] * 7})
    out = mm.close()
    assert [s for s, _ in out] == [T0, far]
    assert mm.skipped_minutes == 9_999


def test_all_idle_partitions_wait_for_the_slowest_claim():
    """Each silent partition closes by the clock from its own last event: a minute is
    final only when all of them have closed it, not the first one."""
    mm = MinuteMerger(partitions=2, idle_confirm_ms=0)
    mm.apply(0, T0, False, {}, sent_ms=0)
    mm.apply(1, T0, False, {}, sent_ms=0)
    mm.apply(0, T0 + M, True, {T0: [1] + [0] * 7}, sent_ms=10)
    assert mm.close() == []
    mm.apply(1, T0 + M, True, {T0: [2] + [0] * 7}, sent_ms=20)
    assert mm.close() == [(T0, [3] + [0] * 7)]


def test_add_many_decides_as_add_one_at_a_time():
    rng = random.Random(11)
    lates = 0
    for trial in range(30):
        lateness = rng.choice([0, 1, 10_000, 25_500])
        # Mostly in order with jitter, some far behind (late), some jumps ahead.
        t, events = T0 + rng.randrange(M), []
        for _ in range(rng.randrange(1, 600)):
            t += rng.randrange(0, 900)
            jitter = rng.choice([0, 0, 0, -rng.randrange(40_000), -rng.randrange(200_000)])
            events.append((max(0, t + jitter), rng.randrange(7)))
        one = PartitionWindows(lateness_ms=lateness)
        many = PartitionWindows(lateness_ms=lateness)
        expected_late = []
        for i, (ts, s) in enumerate(events):
            before = one.closed_until
            if not one.add(i, ts, s):
                expected_late.append((i, before))
        cut = rng.randrange(len(events) + 1)  # two batches: the split must not matter
        times, statuses = [e[0] for e in events], [e[1] for e in events]
        got = many.add_many(times[:cut], statuses[:cut])
        got += [(i + cut, c) for i, c in many.add_many(times[cut:], statuses[cut:])]
        assert got == expected_late, trial
        assert (one.max_event_ms, one.closed_until, one.open, one.closed) == \
            (many.max_event_ms, many.closed_until, many.open, many.closed), trial
        lates += len(got)
    assert lates > 100, "the trials exercise late events"
