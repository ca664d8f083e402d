"""The merge step (processor/minutes.py) without Faust or a broker: partials in, one
record per minute out, once every partition has closed it, and never twice, however
often a partial arrives. Last, stage 1 and the merge together on in-memory clients."""

from __future__ import annotations

from datetime import timedelta

from support.stage1 import CFG, T0, M, Rig, counts, tx

from processor.incidents import IncidentTracker
from processor.minutes import Minutes, MinuteState, window_count
from processor.windows import MinuteMerger
from txmon.contracts import STATUSES, MinuteCounts, WindowPartial
from txmon.contracts.minutes import minute_id, to_datetime

#: Never fitted from the warm-up within these tests, unless a test asks.
NO_MODEL = 10_000


def new_state(partitions: int = 2) -> MinuteState:
    return MinuteState(merger=MinuteMerger(partitions, CFG.max_empty_minutes, 2000),
                       incidents=IncidentTracker())


def partial(partition: int, closed_until: int | None, windows=None, idle: bool = False,
            sent_ms: int = 1_000) -> WindowPartial:
    return WindowPartial(partition=partition, closed_until=closed_until, idle=idle,
                         windows=windows or {}, sent_ms=sent_ms)


class Merge:
    """Minutes and its state, fed partials at successive offsets of the partials topic."""

    def __init__(self, partitions: int = 2, warmup: int = NO_MODEL):
        self.minutes = Minutes(None, warmup)
        self.state = new_state(partitions)
        self.offset = -1
        self.out = []

    def __call__(self, *partials: WindowPartial) -> list:
        got = []
        for p in partials:
            self.offset += 1
            got += self.minutes.apply(self.state, self.offset, p)
        self.out += got
        return got

    def by_id(self) -> dict:
        return {c.window.id: c.window for c in self.out}


def test_a_minute_is_emitted_once_every_partition_has_closed_it():
    merge = Merge()
    assert merge(partial(0, T0 + M, {T0: counts(approved=3, failed=1)})) == []
    [closed] = merge(partial(1, T0 + M, {T0: counts(approved=2, denied=4, late=1)}))
    w = closed.window
    assert (w.id, w.start, w.end) == (minute_id(T0), to_datetime(T0), to_datetime(T0 + M))
    assert w.counts == {**dict.fromkeys(STATUSES, 0), "approved": 5, "failed": 1, "denied": 4}
    assert (w.total, w.late) == (10, 1)
    assert w.score is None and w.threshold is None, "warming up: no model yet"
    assert closed.alerts == [] and merge.state.last_offset == 1
    assert merge.state.warmup == [(T0, MinuteCounts.of(counts(approved=5, failed=1,
                                                              denied=4)).statuses)]


def test_a_partial_delivered_twice_still_makes_one_record_per_minute():
    first = partial(0, T0 + 2 * M, {T0: counts(approved=3), T0 + M: counts(failed=2)})
    merge = Merge()
    merge(first, first)  # re-sent after stage 1 restarted from its last checkpoint
    merge(partial(1, T0 + M, {T0: counts(approved=1)}))
    merge(partial(1, T0 + M, {T0: counts(approved=1)}), first)
    merge(partial(1, T0 + 2 * M, {T0 + M: counts(denied=1)}))
    ids = [c.window.id for c in merge.out]
    assert ids == [minute_id(T0), minute_id(T0 + M)]
    by_id = merge.by_id()
    assert by_id[minute_id(T0)].counts["approved"] == 4
    assert (by_id[minute_id(T0 + M)].counts["failed"],
            by_id[minute_id(T0 + M)].counts["denied"]) == (2, 1)
    assert merge.state.last_offset == 5


def test_minutes_close_up_to_the_slowest_partition_and_gaps_are_zeros():
    merge = Merge()
    merge(partial(0, T0 + 4 * M, {T0: counts(approved=1), T0 + 3 * M: counts(approved=2)}))
    assert merge(partial(1, T0 + M, {T0: counts(reversed=1)}))[0].window.total == 2
    later = merge(partial(1, T0 + 4 * M, {T0 + 2 * M: counts(denied=1)}))
    assert [(c.window.id, c.window.total) for c in later] == [
        (minute_id(T0 + M), 0), (minute_id(T0 + 2 * M), 1), (minute_id(T0 + 3 * M), 2)]
    assert later[0].window.counts == dict.fromkeys(STATUSES, 0), "no transactions: zeros"


def test_a_partition_that_never_had_an_event_is_left_out_on_a_fresh_idle_claim():
    merge = Merge()
    merge(partial(0, T0 + M, {T0: counts(approved=7)}, sent_ms=10_000))
    # An idle claim older than the other partition's advance: its data may be in flight.
    assert merge(partial(1, None, idle=True, sent_ms=11_000)) == []
    [closed] = merge(partial(1, None, idle=True, sent_ms=12_000))
    assert closed.window.counts["approved"] == 7
    # Its events, when they come, are for minutes already out: counted as late.
    merge(partial(1, T0 + 2 * M, {T0: counts(denied=1), T0 + M: counts(denied=2)}))
    merge(partial(0, T0 + 2 * M, {T0 + M: counts(approved=1)}))
    nxt = merge.by_id()[minute_id(T0 + M)]
    assert (nxt.counts["approved"], nxt.counts["denied"], nxt.late) == (1, 2, 1)


def test_a_model_is_fitted_from_the_warm_up_and_scores_the_minutes_after():
    merge = Merge(partitions=1, warmup=12)
    minutes = [partial(0, T0 + (i + 1) * M, {T0 + i * M: counts(approved=80 + i % 5,
                                                                denied=3, failed=1)})
               for i in range(16)]
    merge(*minutes)
    scored = [c.window for c in merge.out if c.window.score is not None]
    assert len(merge.out) == 16 and len(merge.state.warmup) == 12
    assert [w.id for w in scored] == [minute_id(T0 + i * M) for i in range(12, 16)]
    assert all(w.threshold is not None and w.quiet_sources == [] for w in scored)
    assert merge.minutes.detector is not None


def test_window_count_names_the_counts_and_rounds_the_verdict():
    class Verdict:
        score, threshold, sources = 0.123456, 0.654321, ()

    w = window_count(T0, MinuteCounts.of(counts(approved=2, backend_reversed=1, late=3)),
                     Verdict())
    assert (w.total, w.late, w.score, w.threshold) == (3, 3, 0.1235, 0.6543)
    assert w.end - w.start == timedelta(minutes=1)


def test_counting_then_merging_gives_one_exact_record_per_minute():
    """Both stages on in-memory clients: what stage 1 sends, delivered twice over
    (a restart re-sends since its checkpoint), merges into each minute once, exactly."""
    rig = Rig(partitions=[0, 1])
    rig.assign(0, 1)
    sent = {0: [], 1: []}
    for i in range(240):  # four minutes, both partitions, every status
        p, status = i % 2, STATUSES[i % len(STATUSES)]
        sent[p].append((T0 + i * 1_000, status))
    for p in (0, 1):
        rig.feed(p, *[tx(ts, s, i) for i, (ts, s) in enumerate(sent[p])])
        rig.feed(p, tx(T0 + 5 * M, "approved", 999))  # closes the four minutes
    partials = rig.partials()
    merge = Merge()
    merge(*partials)
    merge(*partials)
    got = {c.window.id: c.window.counts for c in merge.out}
    want: dict[str, dict[str, int]] = {}
    for ts, status in sent[0] + sent[1]:
        minute = want.setdefault(minute_id(ts - ts % M), dict.fromkeys(STATUSES, 0))
        minute[status] += 1
    assert [c.window.id for c in merge.out] == sorted(want)
    assert got == want
