"""Processor throughput: N preloaded events through the real `txmon process`, beside the
bare floor (a confluent-kafka loop that only decodes and counts), in the same run.

    .venv/bin/python bench/processor_throughput.py [--events 1000000] [--repeat 2]
        [--profile prof.txt] [--json FILE]

How the time is taken (counting rate, close-all time, the idle timeout subtracted) is
in bench/pipeline.py. The floor and the processor run interleaved `--repeat` times and
the best of each counts (the machine is shared). `--profile` adds one more processor
run recorded by py-spy and prints where its time goes (not counted in the figures:
sampling slows it). Targets (issue 7): >= 100,000 tx/s on one worker, >= 50 % of floor.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import common
from common import Broker, Workdir, print_rows, row, write_json
from pipeline import floor, run_processor, summarise_profile

TARGET_RATE = 100_000
TARGET_RATIO = 0.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--profile", type=Path, help="py-spy raw output file (extra run)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    runs, floors = [], []
    with Broker() as bootstrap, Workdir() as work:
        for i in range(args.repeat):
            floors.append(floor(bootstrap, args.events, args.partitions))
            runs.append(run_processor(bootstrap, args.events, work, partitions=args.partitions,
                                      label=f"tput{i}"))
        hot = None
        if args.profile:
            prof = run_processor(bootstrap, args.events, work, partitions=args.partitions,
                                 profile=args.profile, label="profiled")
            hot = summarise_profile(args.profile)
    best_floor = max(f["rate"] for f in floors)
    best_count = max(r["counting_rate"] or 0.0 for r in runs)
    best_close = max(r["close_all_rate"] for r in runs)
    wrong = sum(r["wrong_minutes"] for r in runs)
    rss = max(max(r["peak_rss"]) for r in runs)
    n = runs[0]["events"]
    print(f"\nprocessor throughput: {n:,} events, {args.partitions} partitions, 1 worker, "
          f"best of {args.repeat}; {runs[0]['minutes']} minutes, start-up "
          f"{min(r['startup_s'] for r in runs):.1f}s (excluded)")
    for i, (f, r) in enumerate(zip(floors, runs, strict=True)):
        print(f"  run {i}: floor {f['rate']:,.0f}/s, processor counting "
              f"{r['counting_rate'] or 0:,.0f}/s, close-all {r['close_all_rate']:,.0f}/s "
              f"({r['close_all_s']:.1f}s), "
              f"wrong minutes {r['wrong_minutes']}, peak RSS {max(r['peak_rss']) / 2**20:.0f} MB")
    target = f">= {TARGET_RATE:,}/s, >= {TARGET_RATIO:.0%}"
    rows = [
        row("processor", f"close every window, {n // 1000}k events", best_close, "tx/s",
            "bare consume+decode+count", best_floor, target,
            best_close >= TARGET_RATE and best_close / best_floor >= TARGET_RATIO and not wrong,
            note=f"clock wait for the last minute ({runs[0]['clock_wait_s']:.1f}s) "
                 f"subtracted; minutes wrong: {wrong}"),
        row("processor", "counting rate (first to last event)", best_count, "tx/s",
            "bare consume+decode+count", best_floor, target,
            best_count >= TARGET_RATE and best_count / best_floor >= TARGET_RATIO),
    ]
    print_rows(rows)
    if hot:
        print(f"\nwhere the worker's time goes (py-spy, {prof['counting_rate']:,.0f} tx/s "
              "while sampled; self % of samples, inclusive %):")
        for func, self_pct, incl in hot:
            print(f"  {self_pct:5.1f}%  {incl:5.1f}%  {func}")
    write_json(args.json, rows, {"runs": runs, "floors": floors, "profile": hot,
                                 "peak_rss": rss})
    return 0 if not wrong else 1


if __name__ == "__main__":
    assert common  # imported for its sys.path set-up
    sys.exit(main())
