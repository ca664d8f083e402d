"""Heavy hitters per window: the batch update's cost an event beside a plain dict loop.

    .venv/bin/python bench/sketch.py [--terminals 1000000] [--skew 0.8] [--batch 5000]
        [--batches 200] [--capacity 256] [--repeat 5] [--smoke]

Stage 1 merges every batch of up to 5,000 events into its partition's summary
(processor/sketch.py, docs/decisions/0006-heavy-hitters-per-window.md). Terminals are
drawn Zipf-skewed (p ~ 1/rank^skew) from the fleet, statuses from a normal day's mix,
and every run decodes its ids from JSON first, as the parser hands them over (fresh
strings whose hashes are not cached yet). Baseline, measured in the same run, runs
interleaved, best of --repeat: a plain `for` loop over each batch incrementing a dict of
its own. Target: under 500 ns an event. Also printed: the exact count per terminal over
the whole run, which the summary replaces (unbounded at 1,000,000 terminals), with its
memory beside the summary's (tracemalloc, its lookup dict included); the summary's wire
size; a stage-2 merge of two summaries; the bound beside N/(k+1) and the largest error
seen against the exact counts. Standalone: no broker, not part of `make bench`.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc

import msgspec
import numpy as np

from processor.sketch import HeavyHitters
from txmon.contracts.statuses import STATUSES

TARGET_NS = 500
MIX = {"approved": 0.86, "denied": 0.05, "failed": 0.04, "reversed": 0.02,
       "backend_reversed": 0.01, "refunded": 0.01, "processing": 0.01}
TROUBLE = tuple(3 if s in ("failed", "denied", "reversed", "backend_reversed") else 1
                for s in STATUSES)
MERGES = 50


def workload(args) -> tuple[list[bytes], list[list[int]], float]:
    """Each batch's ids as JSON, its statuses, and the mean distinct terminals a batch."""
    rng = np.random.default_rng(1)
    p = 1.0 / np.arange(1, args.terminals + 1) ** args.skew
    draws = rng.choice(args.terminals, size=(args.batches, args.batch), p=p / p.sum())
    mix = np.array([MIX[s] for s in STATUSES])
    statuses = rng.choice(len(STATUSES), size=draws.shape, p=mix / mix.sum())
    wires = [msgspec.json.encode([f"T-{t:07d}" for t in row]) for row in draws]
    distinct = float(np.mean([len(np.unique(row)) for row in draws]))
    return wires, [row.tolist() for row in statuses], distinct


def batch_loop(batches, _statuses) -> None:
    """The baseline: a plain loop counting each batch into a dict of its own."""
    for ids in batches:
        counts: dict = {}
        get = counts.get
        for t in ids:
            counts[t] = get(t, 0) + 1


def window_loop(batches, _statuses) -> dict:
    """The exact count per terminal over the whole window: what the summary replaces."""
    counts: dict = {}
    get = counts.get
    for ids in batches:
        for t in ids:
            counts[t] = get(t, 0) + 1
    return counts


def summary_of(capacity: int, weights: tuple[int, ...] | None):
    def run(batches, statuses) -> HeavyHitters:
        summary = HeavyHitters(capacity, weights)
        for ids, sts in zip(batches, statuses, strict=True):
            summary.update(ids, sts)
        return summary
    return run


def timed(contenders: dict, wires: list[bytes], statuses, repeat: int) -> tuple[dict, dict]:
    """Best seconds of each contender, runs interleaved, and each one's last result."""
    best = dict.fromkeys(contenders, float("inf"))
    results = {}
    for _ in range(repeat):
        for name, run in contenders.items():
            batches = [msgspec.json.decode(w) for w in wires]
            start = time.perf_counter()
            results[name] = run(batches, statuses)
            best[name] = min(best[name], time.perf_counter() - start)
    return best, results


def memory(summary: HeavyHitters) -> tuple[int, int]:
    """(bytes held by a summary decoded from the wire, bytes of its JSON wire form)."""
    encoded = msgspec.json.encode(summary.to_wire())
    tracemalloc.start()
    copy = HeavyHitters.from_wire(msgspec.json.decode(encoded))
    _ = "" in copy  # the key lookup a stage-2 merge builds
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return held, len(encoded)


def merge_us(summary: HeavyHitters, other: HeavyHitters) -> float:
    wire, best = summary.to_wire(), float("inf")
    for _ in range(MERGES):
        copy = HeavyHitters.from_wire(wire)
        start = time.perf_counter()
        copy.merge(other)
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def largest_error(summary: HeavyHitters, exact: dict) -> int:
    seen = {h.key: h.weight for h in summary.top(summary.capacity)}
    return max(n - seen.get(key, 0) for key, n in exact.items())


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def print_rows(rows: list[tuple]) -> None:
    print(f"\n{'benchmark':<14}{'metric':<40}{'value':>14}{'baseline':>14}{'ratio':>8}"
          f"  {'target':<16}met")
    for metric, value, unit, baseline, target, met in rows:
        ratio = f"{value / baseline:.0%}" if baseline else "-"
        mark = {True: "yes", False: "NO", None: "-"}[met]
        print(f"{'sketch':<14}{metric:<40}{fmt(value, unit):>14}{fmt(baseline, unit):>14}"
              f"{ratio:>8}  {target:<16}{mark}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--terminals", type=int, default=1_000_000)
    ap.add_argument("--skew", type=float, default=0.8, help="Zipf exponent of the fleet")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--capacity", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="10 batches, 2 runs: a second or two")
    args = ap.parse_args()
    if args.smoke:
        args.batches, args.repeat = 10, 2

    wires, statuses, distinct = workload(args)
    events = args.batch * args.batches
    best, results = timed({"batch dict": batch_loop, "window dict": window_loop,
                           "events": summary_of(args.capacity, None),
                           "trouble": summary_of(args.capacity, TROUBLE)},
                          wires, statuses, args.repeat)
    ns = {name: seconds / events * 1e9 for name, seconds in best.items()}
    base, summary, exact = ns["batch dict"], results["events"], results["window dict"]
    held, wire_bytes = memory(summary)
    exact_bytes = sys.getsizeof(exact) + sum(map(sys.getsizeof, exact))
    half = args.batches // 2
    first = summary_of(args.capacity, None)(
        [msgspec.json.decode(w) for w in wires[:half]], statuses[:half])
    second = summary_of(args.capacity, None)(
        [msgspec.json.decode(w) for w in wires[half:]], statuses[half:])
    limit = summary.total / (args.capacity + 1)
    print(f"{events:,} events in {args.batches} batches of {args.batch:,}, "
          f"{distinct:,.0f} distinct terminals a batch (of {args.terminals:,}, skew "
          f"{args.skew}), k = {args.capacity}: {len(summary)} tracked")
    print_rows([
        ("update, weight = events (ns/event)", ns["events"], "ns", base,
         f"< {TARGET_NS} ns", ns["events"] < TARGET_NS),
        ("update, trouble-weighted (ns/event)", ns["trouble"], "ns", base,
         f"< {TARGET_NS} ns", ns["trouble"] < TARGET_NS),
        ("exact window dict instead (ns/event)", ns["window dict"], "ns", base, "", None),
        ("summary held, beside the exact dict (B)", held, "B", exact_bytes, "", None),
        ("summary on the wire, JSON (bytes)", wire_bytes, "B", None, "", None),
        ("stage-2 merge of two summaries (us)", merge_us(first, second), "us", None, "",
         None),
        ("bound (events) beside N/(k+1)", summary.bound, "", limit, "<= N/(k+1)",
         summary.bound <= limit),
        ("largest error seen beside the bound", largest_error(summary, exact), "",
         summary.bound, "<= bound", largest_error(summary, exact) <= summary.bound),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
