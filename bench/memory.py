"""Memory: the worker's peak RSS after a small and a large run, to show it stays flat.

    .venv/bin/python bench/memory.py [--sizes 1000000,10000000] [--json FILE]

Each size is a fresh `txmon process` over that many preloaded events (bench/pipeline.py);
the peak is the kernel's high-water mark of the process (VmHWM in /proc/PID/status),
read when every window has closed. The baseline is the smallest run: flat means the
largest run's peak is within 10 % of it. The default is the issue's 1M-vs-10M
comparison (a few minutes). Target: <= 300 MB, flat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import Broker, Workdir, print_rows, row, write_json
from pipeline import run_processor

TARGET_MB = 300
FLAT = 1.10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--terminals", type=int, default=0,
                    help="the events carry terminal ids from a fleet this size")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]

    runs = []
    with Broker() as bootstrap, Workdir() as work:
        for i, n in enumerate(sizes):
            runs.append(run_processor(bootstrap, n, work, label=f"mem{i}",
                                      terminals=args.terminals))
    base = runs[0]["peak_rss"][0] / 2**20
    rows = []
    for r in runs:
        peak = r["peak_rss"][0] / 2**20
        ok = peak <= TARGET_MB and peak <= base * FLAT
        fleet = f" from {args.terminals:,} terminals" if args.terminals else ""
        rows.append(row("memory", f"worker peak RSS after {r['events']:,} events{fleet}", peak,
                        "MB",
                        f"after {runs[0]['events']:,}", base, f"<= {TARGET_MB} MB, flat",
                        ok, note=f"RSS at the end {r['rss'][0] / 2**20:.0f} MB, "
                        f"wrong minutes {r['wrong_minutes']}"))
    print_rows(rows)
    write_json(args.json, rows, {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
