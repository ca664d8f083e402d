"""Which terminals: a busy one failing alone, a crowd of small ones, busy ones gone
silent, the blame for a rise; and the summaries' way through stage 1 and the merge."""

from __future__ import annotations

import msgspec
import numpy as np

from processor.detector import FAULT_Z
from processor.slices import SliceWatch, Terminals, blame
from processor.windows import MinuteMerger, PartitionWindows, new_slices
from producer.shape import STATUS_MIX
from txmon.contracts import STATUS_INDEX, encode

A, D, F = STATUS_INDEX["approved"], STATUS_INDEX["denied"], STATUS_INDEX["failed"]


def minute(rng, fleet: int = 400, events: int = 1200, override=None):
    """A minute of a skewed fleet (terminal i weighs 1/(i+1)); `override`: terminal ->
    status every one of its events gets."""
    w = 1 / np.arange(1, fleet + 1)
    who = rng.choice(fleet, size=events, p=w / w.sum())
    status = rng.choice(len(STATUS_MIX), size=events, p=STATUS_MIX)
    for t, s in (override or {}).items():
        status[who == t] = s
    hh = new_slices()
    hh.update([f"T-{t:04d}" for t in who], status.tolist())
    return hh


def test_a_busy_terminal_failing_alone_is_named():
    rng = np.random.default_rng(1)
    watch = SliceWatch()
    for _ in range(3):
        clean = watch.judge(minute(rng), STATUS_MIX, 1200, learn=True)
        assert max(clean.rules().values()) < FAULT_Z, clean.rules()
    seen = [watch.judge(minute(rng, override={2: F}), STATUS_MIX, 1200, learn=False)
            for _ in range(2)]
    failing = seen[-1].failing["failures"]
    assert failing[0].terminal == "T-0002" and failing[0].z >= FAULT_Z
    assert seen[-1].rules()["slice_failures"] >= FAULT_Z
    assert seen[-1].blame["failures"].top[0].terminal == "T-0002"


def test_a_crowd_of_small_terminals_is_seen_though_none_is_alone():
    rng = np.random.default_rng(2)
    watch = SliceWatch()
    crowd = {t: D for t in range(60, 80)}  # about one event a minute each
    alone = []
    for _ in range(4):
        t = watch.judge(minute(rng, override=crowd), STATUS_MIX, 1200, learn=False)
        alone.append(t)
    denials = alone[-1].failing["denials"]
    assert alone[-1].rules()["slice_denials"] >= FAULT_Z
    assert {s.terminal for s in denials} <= {f"T-{i:04d}" for i in crowd}


def test_clean_minutes_name_nobody():
    rng = np.random.default_rng(3)
    watch = SliceWatch()
    for _ in range(60):
        t = watch.judge(minute(rng), STATUS_MIX, 1200, learn=True)
        assert max(t.rules().values()) < FAULT_Z, t.rules()


def test_busy_terminals_gone_silent_are_named_and_a_global_silence_is_not():
    rng = np.random.default_rng(4)
    watch = SliceWatch()
    for _ in range(40):
        watch.judge(minute(rng), STATUS_MIX, 1200, learn=True)
    assert watch.judge(new_slices(), STATUS_MIX, 0, learn=False).silent == ()
    found = ()
    for _ in range(3):
        hh = minute(rng, fleet=400)
        quiet = new_slices()
        quiet.update([h.key for h in hh.top(len(hh)) if h.key not in ("T-0000", "T-0001")
                      for _ in range(sum(h.counts))], [A] * sum(
            sum(h.counts) for h in hh.top(len(hh)) if h.key not in ("T-0000", "T-0001")))
        found = watch.judge(quiet, STATUS_MIX, 1000, learn=False).silent
    assert {s.terminal for s in found if s.z >= FAULT_Z} == {"T-0000", "T-0001"}


def test_blame_is_the_extra_beyond_each_terminals_own_volume():
    hh = new_slices()
    hh.update(["T-1"] * 100 + ["T-2"] * 10, [A] * 90 + [D] * 10 + [D] * 10)
    b = blame(hh, STATUS_MIX)["denials"]
    assert [s.terminal for s in b.top] == ["T-2", "T-1"]
    assert b.share(0.0) > 0.9  # T-2's 10 denials are almost all of the extra


def test_stage_one_keeps_a_summary_per_window_and_stores_it():
    w = PartitionWindows(lateness_ms=10_000)
    times = [60_000, 61_000, 131_000, 132_000]
    late = w.add_many(times, [A, D, A, F])
    w.slice_batch(times, [A, D, A, F], ["T-1", "T-2", None, "T-1"], late)
    late2 = w.add_many([62_000], [A])  # its window closed: late, and not in any summary
    w.slice_batch([62_000], [A], ["T-9"], late2)
    assert late2 and 60_000 in w.closed
    drained = w.drain_slices(w.drain_closed())
    assert set(drained) == {60_000} and "T-9" not in str(drained)
    w.pack()
    again = msgspec.json.Decoder(PartitionWindows).decode(encode(w))
    assert again._sketches()[120_000].get("T-1").counts[F] == 1


def test_the_merge_adds_the_partitions_summaries_once():
    a, b = new_slices(), new_slices()
    a.update(["T-1", "T-2"], [A, A])
    b.update(["T-1"], [D])
    m, pending = MinuteMerger(2), {}
    for p, hh, counts in ((0, a, [2, 0]), (0, a, [2, 0]), (1, b, [0, 1])):
        m.add_slices(p, {0: hh.to_wire()}, pending)
        m.apply(p, 60_000, False, {0: [*counts, 0, 0, 0, 0, 0, 0]})
    (closed,) = m.close_with_sources(pending)
    assert closed.sources == [2, 1]
    assert closed.slices.get("T-1").counts[:2] == (1, 1)
    assert isinstance(Terminals({}, (), {}).rules(), dict)


def test_the_merge_holds_a_bounded_number_of_minutes_of_summaries():
    """A backlog far ahead of its slowest partition: memory stays bounded, the minutes
    past the cap are judged without terminals, counts stay exact; the stored state
    never carries summaries."""
    from processor.windows import MAX_PENDING_SLICES

    hh = new_slices()
    hh.update(["T-1"], [A])
    m, pending = MinuteMerger(2), {}
    n = MAX_PENDING_SLICES + 3
    for i in range(n):
        m.add_slices(0, {i * 60_000: hh.to_wire()}, pending)
        m.apply(0, (i + 1) * 60_000, False, {i * 60_000: [1, 0, 0, 0, 0, 0, 0, 0]})
    assert len(pending) == MAX_PENDING_SLICES and m.dropped_slices == 3
    m.apply(1, n * 60_000, False, {})
    closed = m.close_with_sources(pending)
    assert [c.counts[A] for c in closed] == [1] * n
    assert sum(c.slices is not None for c in closed) == MAX_PENDING_SLICES
    assert b"T-1" not in encode(m)
