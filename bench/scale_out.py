"""Scale-out: one worker against two on a 4-partition transactions topic.

    .venv/bin/python bench/scale_out.py [--events 1000000] [--json FILE]

Both set-ups run the real `txmon process` in one consumer group on a fresh topic, and
the events are written only once every partition is assigned and the Faust side
(the merge stage's group) has stopped rebalancing (start_first in bench/pipeline.py):
otherwise the second worker would join while the first is already
counting and the run would measure a rebalance. Writing then overlaps the counting
(in both set-ups alike). The figure is the counting rate (first to last event, summed
over the workers' own counters) and the close-all rate; the window counts of both runs
must equal the events written, minute by minute. Target (issue 7): two workers >= 1.7x
one, identical results.
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
                            start_first=True, label="scale1")
        two = run_processor(bootstrap, args.events, work, partitions=PARTITIONS, workers=2,
                            start_first=True, label="scale2")
    same = one["wrong_minutes"] == 0 and two["wrong_minutes"] == 0
    speedup = two["counting_rate"] / one["counting_rate"]
    note = (f"{os.cpu_count()} CPUs shared with the broker and this load generator; "
            f"minutes wrong: 1 worker {one['wrong_minutes']}, 2 workers {two['wrong_minutes']}"
            f"; assignments per worker {two['assignments']}; waited "
            f"{two['settle_s']:.0f}s for the merge stage's Faust group to settle first")
    rows = [
        row("scale-out", "2 workers, counting rate", two["counting_rate"], "tx/s",
            "1 worker", one["counting_rate"], f">= {TARGET}x, identical",
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
