"""Heavy hitters per window: exact while the keys fit, within N/(k+1) of the exact counts
on adversarial and skewed streams, the same within that bound however batches and
partitions are merged, bounded in size, and a lossless wire form."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest

from processor.sketch import DEFAULT_CAPACITY, HeavyHitters
from txmon.contracts.statuses import STATUS_INDEX, STATUSES

SLOTS = len(STATUSES)
UNIT = (1,) * SLOTS
#: Failures, denials and reversals weigh more: the summary ranks terminals by trouble.
TROUBLE = tuple(3 if s in ("failed", "denied", "reversed", "backend_reversed") else 1
                for s in STATUSES)
MIX = [0.86, 0.05, 0.04, 0.02, 0.01, 0.01, 0.01]


def exact(batches, weights=UNIT) -> tuple[dict[str, list[int]], int]:
    counts: dict[str, list[int]] = {}
    for ids, statuses in batches:
        for key, s in zip(ids, statuses, strict=True):
            if key is not None:
                counts.setdefault(key, [0] * SLOTS)[s] += 1
    total = sum(weigh(c, weights) for c in counts.values())
    return counts, total


def weigh(counts, weights) -> int:
    return sum(w * c for w, c in zip(weights, counts, strict=True))


def summarize(batches, capacity, weights=UNIT) -> HeavyHitters:
    summary = HeavyHitters(capacity, weights)
    for ids, statuses in batches:
        summary.update(ids, statuses)
    return summary


def assert_within_bound(summary: HeavyHitters, batches) -> None:
    """Every promise a reader relies on, against the exact counts."""
    truth, total = exact(batches, summary.weights)
    k, weights = summary.capacity, summary.weights
    assert len(summary) <= k
    assert summary.total == total
    counters = int(summary._table[:, 0].sum())
    assert summary.bound * (k + 1) <= total - counters
    for hitter in summary.top(k):
        true = truth[hitter.key]
        assert hitter.weight <= weigh(true, weights) <= hitter.weight + hitter.missing
        assert hitter.missing <= summary.bound
        for s, (seen, real) in enumerate(zip(hitter.counts, true, strict=True)):
            assert seen <= real <= seen + hitter.missing // weights[s]
    for key, counts in truth.items():
        if key not in summary:
            assert weigh(counts, weights) <= summary.bound
        if weigh(counts, weights) * (k + 1) > total:
            assert key in summary, f"{key} is heavier than N/(k+1) but not tracked"


def statuses_for(rng: random.Random, n: int) -> list[int]:
    return rng.choices(range(SLOTS), weights=MIX, k=n)


def batched(ids: list, statuses: list[int], size: int) -> list[tuple[list, list[int]]]:
    return [(ids[i:i + size], statuses[i:i + size]) for i in range(0, len(ids), size)]


def zipf_batches(seed: int, terminals: int, events: int, size: int, skew: float = 1.1):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, terminals + 1) ** skew
    draws = rng.choice(terminals, size=events, p=p / p.sum())
    ids = [f"T-{t:06d}" for t in draws]
    return batched(ids, statuses_for(random.Random(seed), events), size)


def round_robin(k: int) -> list:
    """k + 1 keys in turn, one event per batch: the most a summary can be made to drop."""
    ids = [f"T-{i % (k + 1)}" for i in range(40 * (k + 1))]
    return batched(ids, [0] * len(ids), 1)


def starved(k: int) -> list:
    """A key seen once a batch beside k others seen twice: never the heaviest of a batch."""
    out, rng = [], random.Random(2)
    for b in range(60):
        ids = ["T-x"] + [f"T-{b}-{i}" for i in range(k) for _ in range(2)]
        out.append((ids, statuses_for(rng, len(ids))))
    return out


def late_heavy(k: int) -> list:
    """A long tail of singletons first, then one terminal failing in a burst."""
    ids = [f"T-{i}" for i in range(20 * k)] + ["T-late"] * (3 * k)
    statuses = [0] * (20 * k) + [STATUS_INDEX["failed"]] * (3 * k)
    return batched(ids, statuses, 97)


def all_distinct(k: int) -> list:
    ids = [f"T-{i}" for i in range(50 * k)]
    return batched(ids, statuses_for(random.Random(3), len(ids)), 500)


ADVERSARIAL = {"round_robin": round_robin, "starved": starved, "late_heavy": late_heavy,
               "all_distinct": all_distinct}


def test_exact_while_the_distinct_keys_fit():
    rng = random.Random(1)
    ids = [f"T-{rng.randrange(50)}" for _ in range(3000)]
    batches = batched(ids, statuses_for(rng, len(ids)), 256)
    summary = summarize(batches, 64)
    truth, total = exact(batches)
    assert summary.bound == 0 and summary.total == total == len(ids)
    assert {h.key: list(h.counts) for h in summary.top(64)} == truth
    assert all(h.missing == 0 for h in summary.top(64))


def test_a_merge_subtracts_the_k_plus_first_counter_and_remembers_what_may_be_missing():
    summary = HeavyHitters(2)
    summary.update(["a"] * 9 + ["b"] * 5 + ["c"] * 3 + ["d"] * 2, [0] * 19)
    # Counters 9, 5, 3, 2: the third (3) is subtracted; c and d are dropped.
    assert summary._keys == ["a", "b"] and summary._table[:, 0].tolist() == [6, 2]
    assert summary.bound == 3 and summary.get("a").missing == 0
    summary.update(["c"] * 4 + ["a"], [1] * 5)
    # a 6+1, c 4, b 2: the third (2) is subtracted; c may have lost 3 before it came in.
    assert sorted(summary._keys) == ["a", "c"] and summary.bound == 5
    assert summary.get("a") == ("a", (9, 1, 0, 0, 0, 0, 0), 10, 0)
    assert summary.get("c") == ("c", (0, 4, 0, 0, 0, 0, 0), 4, 3)
    assert "b" not in summary  # 5 events, at most the bound


@pytest.mark.parametrize("stream", ADVERSARIAL)
@pytest.mark.parametrize("weights", [UNIT, TROUBLE], ids=["unit", "trouble"])
def test_the_bound_holds_on_adversarial_streams_after_every_batch(stream, weights):
    k = 16
    batches = ADVERSARIAL[stream](k)
    summary = HeavyHitters(k, weights)
    for i, (ids, statuses) in enumerate(batches):
        summary.update(ids, statuses)
        if i % 7 == 0 or i == len(batches) - 1:
            assert_within_bound(summary, batches[:i + 1])


def test_a_late_burst_of_failures_is_named_for_sure():
    k = 16
    summary = summarize(late_heavy(k), k)
    late = summary.top(1, by=STATUS_INDEX["failed"])[0]
    assert late.key == "T-late"
    assert late.counts[STATUS_INDEX["failed"]] >= 3 * k - summary.bound


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("weights", [UNIT, TROUBLE], ids=["unit", "trouble"])
def test_the_bound_holds_on_zipf_streams(seed, weights):
    batches = zipf_batches(seed, terminals=100_000, events=40_000, size=1000)
    summary = summarize(batches, 32, weights)
    assert_within_bound(summary, batches)
    assert summary.bound > 0  # the stream did overflow the summary


def test_merging_per_batch_summaries_stays_within_the_bound_in_any_order():
    batches = zipf_batches(4, terminals=50_000, events=30_000, size=500)
    parts = [summarize([b], 24) for b in batches]
    rng = random.Random(4)
    orders = {"one summary": summarize(batches, 24)}
    folded = HeavyHitters(24)
    for part in parts:
        folded.merge(part)
    orders["folded"] = folded
    shuffled = parts[:]
    rng.shuffle(shuffled)
    while len(shuffled) > 1:  # a random merge tree
        i = rng.randrange(len(shuffled) - 1)
        a, b = shuffled[i], shuffled.pop(i + 1)
        a.merge(b)
    orders["tree"] = shuffled[0]
    for summary in orders.values():
        assert_within_bound(summary, batches)
    weights = [{h.key: h.weight for h in s.top(24)} for s in orders.values()]
    slack = max(s.bound for s in orders.values())
    for a in weights:
        for b in weights:
            for key in a.keys() | b.keys():
                assert abs(a.get(key, 0) - b.get(key, 0)) <= slack


def test_merge_is_commutative():
    batches = zipf_batches(5, terminals=20_000, events=8_000, size=1000)
    left, right = summarize(batches[:4], 16), summarize(batches[4:], 16)
    ab, ba = HeavyHitters.from_wire(left.to_wire()), HeavyHitters.from_wire(right.to_wire())
    ab.merge(right)
    ba.merge(left)
    assert sorted(ab.to_wire()[1:]) == sorted(ba.to_wire()[1:])
    assert (ab.total, ab.bound) == (ba.total, ba.bound)
    assert_within_bound(ab, batches)


def test_merge_is_associative_within_the_bound():
    batches = zipf_batches(6, terminals=20_000, events=9_000, size=3000)
    a, b, c = (summarize([x], 16) for x in batches)
    left = HeavyHitters.from_wire(a.to_wire())
    left.merge(b)
    left.merge(c)
    bc = HeavyHitters.from_wire(b.to_wire())
    bc.merge(c)
    right = HeavyHitters.from_wire(a.to_wire())
    right.merge(bc)
    for summary in (left, right):
        assert_within_bound(summary, batches)
    slack = max(left.bound, right.bound)
    for key in {h.key for h in left.top(16)} | {h.key for h in right.top(16)}:
        lw, rw = left.get(key), right.get(key)
        assert abs((lw.weight if lw else 0) - (rw.weight if rw else 0)) <= slack


def test_merging_an_empty_summary_changes_nothing():
    batches = zipf_batches(7, terminals=10_000, events=4_000, size=1000)
    summary = summarize(batches, 16)
    before = summary.to_wire()
    summary.merge(HeavyHitters(16))
    assert summary.to_wire() == before
    empty = HeavyHitters(16)
    empty.merge(summary)
    assert sorted(empty.to_wire()[1:]) == sorted(before[1:])


def test_only_alike_summaries_merge():
    with pytest.raises(ValueError, match="do not merge"):
        HeavyHitters(16).merge(HeavyHitters(32))
    with pytest.raises(ValueError, match="do not merge"):
        HeavyHitters(16).merge(HeavyHitters(16, TROUBLE))


def test_never_more_than_k_keys():
    k = 8
    rng = random.Random(8)
    summary, other = HeavyHitters(k), HeavyHitters(k)
    for b in range(200):
        ids = [f"T-{rng.randrange(10_000)}" for _ in range(rng.randrange(1, 300))]
        (summary if b % 2 else other).update(ids, statuses_for(rng, len(ids)))
        assert len(summary) <= k and len(other) <= k
        if b % 10 == 9:
            summary.merge(other)
            assert len(summary) <= k


def test_the_wire_form_round_trips_through_json():
    batches = zipf_batches(9, terminals=30_000, events=10_000, size=1000)
    summary = summarize(batches[:-1], 32, TROUBLE)
    wire = msgspec.json.decode(msgspec.json.encode(summary.to_wire()),
                               type=list[list[int | str]])
    restored = HeavyHitters.from_wire(wire)
    assert restored.to_wire() == summary.to_wire()
    assert restored.top(32) == summary.top(32)
    assert (restored.capacity, restored.weights) == (32, TROUBLE)
    summary.update(*batches[-1])
    restored.update(*batches[-1])
    assert restored.to_wire() == summary.to_wire()
    assert len(msgspec.json.encode(wire)) < 64 * len(summary) + 64


@pytest.mark.parametrize("rows", [[], [[16, 0, 0]], [[2, 0, 0, 1], ["a", 1, 0, 1],
                                                    ["b", 1, 0, 1], ["c", 1, 0, 1]],
                                  [[2, 0, 0, 1], ["a", 1, 0]], [[2, 0, 0, 1], [1, 1, 0, 1]],
                                  [[2, -1, 0, 1]], [[2, 0, "x", 1]]])
def test_a_malformed_wire_form_is_refused(rows):
    with pytest.raises(ValueError):
        HeavyHitters.from_wire(rows)


def test_none_ids_are_skipped():
    summary = HeavyHitters(4)
    summary.update([None, "T-1", None, "T-1", "T-2"], [0, 0, 2, 2, 1])
    assert None not in summary and summary.total == 3
    assert summary.get("T-1").counts == (1, 0, 1, 0, 0, 0, 0)
    before = summary.to_wire()
    summary.update([None, None], [0, 1])
    summary.update([], [])
    assert summary.to_wire() == before


def test_a_batch_must_be_parallel_lists_of_slot_indices():
    summary = HeavyHitters(4)
    with pytest.raises(ValueError, match="ids but"):
        summary.update(["T-1", "T-2"], [0])
    with pytest.raises(ValueError, match="status index"):
        summary.update(["T-1"], [SLOTS])
    with pytest.raises(ValueError, match="status index"):
        summary.update(["T-1"], [-1])
    with pytest.raises(ValueError):
        HeavyHitters(0)
    with pytest.raises(ValueError):
        HeavyHitters(4, (1, 0, 1))


def test_top_reads_by_weight_by_slot_or_by_a_function_of_the_counts():
    failed, denied = STATUS_INDEX["failed"], STATUS_INDEX["denied"]
    ids = ["A"] * 10 + ["B"] * 4 + ["C"] * 4 + ["D"] * 2
    statuses = [0] * 10 + [failed] * 4 + [denied] * 3 + [0] + [failed, denied]
    summary = HeavyHitters(8, TROUBLE)
    summary.update(ids, statuses)
    assert [h.key for h in summary.top(2)] == ["B", "A"]  # 4 failures weigh 12
    assert [h.key for h in summary.top(3, by=failed)] == ["B", "D", "A"]
    assert [h.key for h in summary.top(2, by=lambda c: c[denied] / sum(c))] == ["C", "D"]
    assert summary.top(0) == [] and len(summary.top(99)) == 4
    assert summary.get("A").weight == 10 and summary.get("Z") is None


def test_the_same_batches_give_the_same_summary():
    batches = zipf_batches(10, terminals=50_000, events=20_000, size=2000)
    assert summarize(batches, 16).to_wire() == summarize(batches, 16).to_wire()
    assert HeavyHitters().capacity == DEFAULT_CAPACITY


def test_the_benchmark_still_runs():
    """bench/sketch.py is not part of `make bench`'s table: its smoke run keeps it alive."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "bench" / "sketch.py"
    out = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    bound = [line for line in out.stdout.splitlines() if "bound (events)" in line]
    assert bound and bound[0].rstrip().endswith("yes"), out.stdout[-2000:]
