"""Scale-out: one worker against two on a 4-partition transactions topic.

    .venv/bin/python bench/scale_out.py [--events 1000000] [--json FILE]

Both set-ups run the real `txmon process` in one consumer group over the same number
of preloaded events on a fresh topic, started at once. A second worker joins while the
first may already be counting, which rebalances the group (and the merge stage's Faust
group), so the headline figure is the steady rate: events counted from the moment every
worker holds its share of the partitions to the last one, over that time (rates from the
workers' own counters, summed). The close-all rate (first count to the last minute's
record, as in processor_throughput.py) is shown too: it includes the rebalance. The
window counts of both runs must equal the events written, minute by minute.
Target: two workers >= 1.7x one, identical results.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import Broker, Workdir, print_rows, row, write_json
from pipeline import run_processor

TARGET = 1.7
PARTITIONS = 4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    with Broker() as bootstrap, Workdir() as work:
        one = run_processor(bootstrap, args.events, work, partitions=PARTITIONS, workers=1,
                            label="scale1")
        two = run_processor(bootstrap, args.events, work, partitions=PARTITIONS, workers=2,
                            label="scale2")
    same = one["wrong_minutes"] == 0 and two["wrong_minutes"] == 0
    # None when one worker counted everything before the other joined (tiny runs).
    speedup = two["steady_rate"] / one["steady_rate"] \
        if two["steady_rate"] and one["steady_rate"] else 0.0
    note = (f"{os.cpu_count()} CPUs shared with the broker and this load generator; "
            f"minutes wrong: 1 worker {one['wrong_minutes']}, 2 workers {two['wrong_minutes']}"
            f"; assignments per worker {two['assignments']}; "
            f"{two['counted_before_shared']:,.0f} events counted before both workers held "
            f"their partitions")
    rows = [
        row("scale-out", "2 workers, steady counting rate", two["steady_rate"], "tx/s",
            "1 worker", one["steady_rate"], f">= {TARGET}x, identical",
            speedup >= TARGET and same, note=note),
        row("scale-out", "2 workers, close every window", two["close_all_rate"], "tx/s",
            "1 worker", one["close_all_rate"], f">= {TARGET}x, identical",
            two["close_all_rate"] / one["close_all_rate"] >= TARGET and same),
    ]
    print_rows(rows)
    write_json(args.json, rows, {"one": one, "two": two})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
