"""Processor throughput: N preloaded events through the real `txmon process`, beside
bare confluent-kafka loops over the same kind of topic, in the same run.

    .venv/bin/python bench/processor_throughput.py [--events 1000000] [--repeat 2]
        [--profile prof.txt] [--json FILE]

Baselines (bench/pipeline.py): the *lean loop* (`consume(10000)`, msgspec to a dict,
count per minute prefix and status, librdkafka's defaults: the yardstick), the
same lean loop with the worker's consumer settings (its prefetch and fetch back-off, so
only the Python work per event differs), and the *struct floor* (decode into
`Transaction`, datetime parsed). How the worker's time is taken (counting rate,
close-all time, the idle timeout subtracted) is in bench/pipeline.py. Baselines and
processor run interleaved `--repeat` times and the best of each counts (the machine is
shared). `--profile` adds one more processor run recorded by py-spy and prints where its
time goes (not counted in the figures: sampling slows it).
Target: close every window at >= 75 % of the lean loop, every minute right. Both stages'
transactions (TXMON_PROCESSING_GUARANTEE=exactly_once, the default) are measured beside
the same run without them (at_least_once): at least TRANSACTIONS_FLOOR tx/s with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import common
from common import Broker, Workdir, print_rows, row, write_json
from pipeline import floor, lean_floor, run_processor, summarise_profile

TARGET_RATIO = 0.75


#: Keeping which terminals each window saw may cost at most a tenth of the rate.
FLEET_RATIO = 0.9
#: Closing every window with both stages' transactions, on the bench box.
TRANSACTIONS_FLOOR = 200_000


def _rows(n: int, best: dict, close: float, count: float, wrong: int, clock_wait: float,
          ) -> list[dict]:
    target = f">= {TARGET_RATIO:.0%} of lean"
    lean = "lean loop (librdkafka defaults)"
    k = f"{n / 1e6:.0f}M" if n >= 950_000 else f"{n // 1000}k"
    return [
        row("processor", f"close every window, {k} events", close, "tx/s", lean,
            best["lean"], target, close / best["lean"] >= TARGET_RATIO and not wrong,
            note=f"clock wait for the last minute ({clock_wait:.1f}s) subtracted; minutes "
                 f"wrong: {wrong}"),
        row("processor", f"close every window, {k}: vs lean, worker's fetch", close, "tx/s",
            "lean loop, worker's consumer settings", best["tuned"]),
        row("processor", f"close every window, {k}: vs struct floor", close, "tx/s",
            "decode into Transaction + count", best["struct"]),
        row("processor", f"counting rate (first to last event), {k}", count, "tx/s", lean,
            best["lean"], target, count / best["lean"] >= TARGET_RATIO),
    ]


def _fleet_row(n: int, terminals: int, fleet: list[dict], plain: float) -> dict:
    close = max(r["close_all_rate"] for r in fleet)
    wrong = sum(r["wrong_minutes"] for r in fleet)
    rss = max(max(r["peak_rss"]) for r in fleet) / 2**20
    k = f"{n / 1e6:.0f}M" if n >= 950_000 else f"{n // 1000}k"
    return row("processor", f"close every window, {k} events from {terminals:,} terminals",
               close, "tx/s", "the same events without terminal ids", plain,
               f">= {FLEET_RATIO:.0%}", close / plain >= FLEET_RATIO and not wrong,
               note=f"heavy hitters per window kept; peak RSS {rss:.0f} MB; minutes wrong: "
                    f"{wrong}")


def _transactions_row(n: int, close: float, plain: list[dict]) -> dict:
    without = max(r["close_all_rate"] for r in plain)
    k = f"{n / 1e6:.0f}M" if n >= 950_000 else f"{n // 1000}k"
    return row("processor", f"close every window, {k}: in transactions", close, "tx/s",
               "the same without (TXMON_PROCESSING_GUARANTEE=at_least_once)", without,
               f">= {TRANSACTIONS_FLOOR:,} tx/s", close >= TRANSACTIONS_FLOOR,
               note="exactly once for read_committed readers; minutes wrong without: "
                    f"{sum(r['wrong_minutes'] for r in plain)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--profile", type=Path, help="py-spy raw output file (extra run)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--terminals", type=int, default=0,
                    help="also run the same events carrying terminal ids from a fleet this "
                    "size, beside the run without them")
    args = ap.parse_args()

    runs, floors, leans, tuned, fleet, plain = [], [], [], [], [], []
    with Broker() as bootstrap, Workdir() as work:
        for i in range(args.repeat):
            leans.append(lean_floor(bootstrap, args.events, args.partitions))
            tuned.append(lean_floor(bootstrap, args.events, args.partitions,
                                    worker_fetch=True))
            floors.append(floor(bootstrap, args.events, args.partitions))
            runs.append(run_processor(bootstrap, args.events, work, partitions=args.partitions,
                                      label=f"tput{i}"))
            plain.append(run_processor(bootstrap, args.events, work,
                                       partitions=args.partitions, label=f"plain{i}",
                                       guarantee="at_least_once"))
            if args.terminals:
                fleet.append(run_processor(bootstrap, args.events, work,
                                           partitions=args.partitions, label=f"fleet{i}",
                                           terminals=args.terminals))
        hot = None
        if args.profile:
            prof = run_processor(bootstrap, args.events, work, partitions=args.partitions,
                                 profile=args.profile, label="profiled")
            hot = summarise_profile(args.profile)
    best = {name: max(x["rate"] for x in xs)
            for name, xs in (("lean", leans), ("tuned", tuned), ("struct", floors))}
    best_count = max(r["counting_rate"] or 0.0 for r in runs)
    best_close = max(r["close_all_rate"] for r in runs)
    wrong = sum(r["wrong_minutes"] for r in runs)
    rss = max(max(r["peak_rss"]) for r in runs)
    n = runs[0]["events"]
    print(f"\nprocessor throughput: {n:,} events, {args.partitions} partitions, 1 worker, "
          f"best of {args.repeat}; {runs[0]['minutes']} minutes, start-up "
          f"{min(r['startup_s'] for r in runs):.1f}s (excluded)")
    for i, r in enumerate(runs):
        print(f"  run {i}: lean {leans[i]['rate']:,.0f}/s, lean with the worker's fetch "
              f"{tuned[i]['rate']:,.0f}/s, struct floor {floors[i]['rate']:,.0f}/s; processor "
              f"counting {r['counting_rate'] or 0:,.0f}/s, close-all {r['close_all_rate']:,.0f}/s"
              f" ({r['close_all_s']:.1f}s), wrong minutes {r['wrong_minutes']}, peak RSS "
              f"{max(r['peak_rss']) / 2**20:.0f} MB")
    rows = _rows(n, best, best_close, best_count, wrong, runs[0]["clock_wait_s"])
    rows.append(_transactions_row(n, best_close, plain))
    wrong += sum(r["wrong_minutes"] for r in plain)
    if fleet:
        rows.append(_fleet_row(n, args.terminals, fleet, best_close))
        wrong += sum(r["wrong_minutes"] for r in fleet)
    print_rows(rows)
    if hot:
        print(f"\nwhere the worker's time goes (py-spy, {prof['counting_rate']:,.0f} tx/s "
              "while sampled; self % of samples, inclusive %):")
        for func, self_pct, incl in hot:
            print(f"  {self_pct:5.1f}%  {incl:5.1f}%  {func}")
    write_json(args.json, rows, {"runs": runs, "without_transactions": plain, "floors": floors,
                                 "leans": leans,
                                 "leans_worker_fetch": tuned, "profile": hot, "peak_rss": rss})
    return 0 if not wrong else 1


if __name__ == "__main__":
    assert common  # imported for its sys.path set-up
    sys.exit(main())
