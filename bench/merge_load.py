"""The merge stage's load against the number of source partitions, measured.

    .venv/bin/python bench/merge_load.py [--partitions 1,6,24] [--seconds 60]
        [--warmup 20] [--tps 1000] [--start ISO] [--json FILE] [--plot FILE]

Every source partition's counting sends partials to the one-partition partials topic,
and the merge stage writes its whole state to the Faust changelog after each partial, so
the merge's work grows with partitions, not with the transaction rate. For each partition
count, a fresh topic and a real `txmon process` take live traffic (`txmon produce --rate`
from the busiest hour, event time advancing with wall time); after the worker has counted
its first events and --warmup seconds more, the growth of the partials topic and of the
merge changelog over --seconds is read back, with the worker's CPU time. The merge's own
cost is then timed on one core, offline: every partial read back is decoded, applied by
processor.minutes.Minutes (the merge logic the worker runs) and the state encoded as the
table stores it. Baseline: the first partition count (1), measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
from common import (
    TXMON,
    Broker,
    Workdir,
    Worker,
    fresh_topics,
    print_rows,
    row,
    settings_for,
    worker_env,
    write_json,
)
from support.kafka import end_offsets

from processor.detector import Detector
from processor.features import LEVEL_MINUTES
from processor.incidents import IncidentTracker
from processor.merging import state_topic
from processor.minutes import Minutes, MinuteState
from processor.windows import WINDOW_MS, MinuteMerger
from txmon.contracts import WindowPartial, encode
from txmon.kafka.read import read_range
from txmon.settings import ProcessorSettings

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def end_offset(settings, topic: str) -> int:
    """The topic's end offsets, summed over its partitions."""
    return sum(end_offsets(settings, topic).values())


def steady_state(partitions: int, cfg: ProcessorSettings, first_ms: int) -> MinuteState:
    """The merge state of a worker long running without a model file: a full warm-up
    history (kept, since a restart re-fits from it) and LEVEL_MINUTES of recent minutes,
    so the record size and the scoring are what a day-old worker has."""
    rng = np.random.default_rng(1)
    history = [(first_ms - (i + 1) * WINDOW_MS,
                [int(v) for v in rng.poisson([600, 40, 12, 6, 3, 2, 1])])
               for i in reversed(range(max(cfg.warmup_windows, LEVEL_MINUTES)))]
    state = MinuteState(MinuteMerger(partitions, cfg.max_empty_minutes,
                                     int(2 * cfg.tick_s * 1000)), IncidentTracker())
    state.warmup = history[-cfg.warmup_windows:]
    state.recent = history[-LEVEL_MINUTES:]
    return state


def merge_cost(partials: list[bytes], partitions: int, cfg: ProcessorSettings) -> dict:
    """Seconds per partial of the merge's own work on a steady state: decode, apply
    (closing and scoring minutes), encode the state as the table stores it."""
    decoder = msgspec.json.Decoder(WindowPartial)
    decoded = [decoder.decode(v) for v in partials]
    first = min((min(p.windows) for p in decoded if p.windows), default=0)
    state = steady_state(partitions, cfg, first)
    minutes = Minutes(None, cfg.warmup_windows)
    minutes.detector = Detector.fit(state.warmup, source="bench")
    size = len(encode(state))
    started = time.process_time()
    for offset, value in enumerate(partials):
        minutes.apply(state, offset, decoder.decode(value))
        size = max(size, len(encode(state)))
    spent = time.process_time() - started
    return {"per_partial_s": spent / max(len(partials), 1), "state_bytes": size}


def measure(bootstrap: str, partitions: int, args, work: Path) -> dict:
    settings = settings_for(bootstrap)
    names = fresh_topics(settings, f"merge{partitions}", partitions)
    env = worker_env(bootstrap, names)
    cfg = ProcessorSettings.from_env()
    changelog = state_topic(ProcessorSettings(app_id=env["TXMON_APP_ID"]))
    worker = Worker(env, work, f"merge{partitions}").start()
    feeder = subprocess.Popen(
        [TXMON, "produce", "--rate", str(args.tps), "--topic", names.transactions,
         *(["--start", args.start] if args.start else []),
         "--duration", f"{args.warmup + args.seconds + 600}s", "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not worker.counted():
            if not worker.alive() or time.monotonic() > deadline:
                raise SystemExit(f"merge{partitions}: worker never counted\n{worker.tail()}")
            time.sleep(0.5)
        time.sleep(args.warmup)
        tx0 = end_offset(settings, names.transactions)
        p0, c0, cpu0, t0 = (end_offset(settings, names.window_partials),
                            end_offset(settings, changelog), cpu_seconds(worker.pid),
                            time.monotonic())
        for _ in range(args.seconds):
            time.sleep(1)
            print(f"\r{partitions} partitions: {time.monotonic() - t0:.0f}/{args.seconds}s",
                  end="", file=sys.stderr, flush=True)
        p1, c1, cpu1, t1 = (end_offset(settings, names.window_partials),
                            end_offset(settings, changelog), cpu_seconds(worker.pid),
                            time.monotonic())
        tx1 = end_offset(settings, names.transactions)
        print(file=sys.stderr)
    finally:
        feeder.kill()
        worker.stop()
    per_min = 60 / (t1 - t0)
    everything = [m.value() for m in read_range(settings, names.window_partials, 0, 0, p1)]
    changes = read_range(settings, changelog, 0, c0, c1)
    carrying = sum(1 for v in everything[p0:] if msgspec.json.decode(v).get("windows"))
    return {"partitions": partitions, "partials_per_min": (p1 - p0) * per_min,
            "with_windows_per_min": carrying * per_min,
            "changelog_per_min": (c1 - c0) * per_min,
            "changelog_kb_per_min": sum(len(m.value() or b"") for m in changes) / 1024 * per_min,
            "worker_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
            "tx_per_s": (tx1 - tx0) / (t1 - t0),
            **merge_cost(everything, partitions, cfg)}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["partitions"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(xs, [r["partials_per_min"] for r in results], "o-", label="partials")
    a.plot(xs, [r["changelog_per_min"] for r in results], "s--", label="changelog records")
    a.set(xlabel="source partitions", ylabel="per minute", title="Merge stage input")
    a.legend()
    b.plot(xs, [r["worker_cpu_pct"] for r in results], "o-")
    b.set(xlabel="source partitions", ylabel="% of one core",
          title="Worker CPU (counting + merge)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--partitions", default="1,6,24")
    ap.add_argument("--seconds", type=int, default=60, help="measured wall time per run")
    ap.add_argument("--warmup", type=int, default=20, help="seconds after the first count")
    ap.add_argument("--tps", type=float, default=1000, help="`txmon produce --rate`")
    ap.add_argument("--start", default=time.strftime(
                        "%Y-%m-%dT12:00Z", time.gmtime(time.time() - 86_400)),
                    help="`txmon produce --start`: the simulated clock, yesterday's busiest "
                         "hour (not in the future, which is dead-lettered) so the rate is "
                         "near --tps; '' for now")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    counts = [int(p) for p in args.partitions.split(",")]
    with Broker() as bootstrap, Workdir() as work:
        results = [measure(bootstrap, p, args, work) for p in counts]
    base = results[0]
    rows = []
    for r in results:
        p, of = r["partitions"], f"{base['partitions']} partition"
        merge_pct = 100 * r["per_partial_s"] * r["partials_per_min"] / 60
        rows += [
            row("merge load", f"{p} partitions: partials per minute", r["partials_per_min"],
                "/min", of, base["partials_per_min"],
                note=f"{r['with_windows_per_min']:.0f}/min carry closed windows, the rest "
                     "are ticks"),
            row("merge load", f"{p} partitions: changelog records per minute",
                r["changelog_per_min"], "/min", of, base["changelog_per_min"],
                note=f"a steady state record is {r['state_bytes']:,} bytes: "
                     f"{r['changelog_per_min'] * r['state_bytes'] / 1e6:.2f} MB/min (derived)"),
            row("merge load", f"{p} partitions: merge CPU per partial",
                r["per_partial_s"] * 1e6, "µs", of, base["per_partial_s"] * 1e6,
                note=f"{merge_pct:.3f}% of a core at this many partials (derived)"),
            row("merge load", f"{p} partitions: worker CPU", r["worker_cpu_pct"], "%",
                of, base["worker_cpu_pct"],
                note=f"{r['tx_per_s']:,.0f} tx/s (`txmon produce --rate {args.tps:g}`); "
                     "counting and merge together"),
        ]
    print_rows(rows)
    if args.plot:
        plot(results, args.plot)
    write_json(args.json, rows, {"runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
