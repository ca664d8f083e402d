"""Every benchmark, one broker, one results table: what `make bench` runs.

    .venv/bin/python bench/run_all.py [--events 1000000] [--only NAME,...] [--smoke]
        [--out bench/results] [--force]

Starts one private broker (LocalKafka on free ports; or uses KAFKA_BOOTSTRAP_SERVERS),
runs each benchmark script as its own process against it, and prints one table:
figure, baseline measured in the same run, ratio, target, met. Memory compares N with
10N events (1M vs 10M by default, as the issue asks). `--smoke` runs each script once
at a tiny size (throughput-10x is the throughput script again: left out), only to prove
the scripts still work (tests/integration/test_bench_smoke.py). The table,
the machine and the raw figures go to OUT/results.md and OUT/results.json.

The committed table (bench/results) is only ever written whole, by one complete run:
`--only` writes to build/bench-partial instead, and a run that starts on a busy machine
(1-minute load average above MAX_START_LOAD: another job would be measured too) refuses
to start unless `--force`; the table records the load at the start and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

#: The fleet the throughput and memory runs' events come from: a million distinct
#: terminals, the size the heavy hitters per window are made for (decision 0006).
FLEET = 1_000_000

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import Broker, fmt, machine, print_rows, row  # noqa: E402

COMMITTED = BENCH / "results"
PARTIAL = BENCH.parent / "build" / "bench-partial"
MAX_START_LOAD = 1.5


def plan(args) -> dict[str, list[str]]:
    n = args.events
    if args.smoke:
        return {
            "produce": ["produce.py", "--messages", "20000", "--repeat", "1"],
            "throughput": ["processor_throughput.py", "--events", "20000", "--repeat", "1",
                           "--terminals", "100000"],
            "memory": ["memory.py", "--sizes", "10000"],
            "scale-out": ["scale_out.py", "--events", "20000"],
            "latency": ["alert_latency.py", "--no-model", "--speed", "20", "--live", "150",
                        "--backfill-minutes", "0", "--tps", "20"],
            "api": ["ingest_api.py", "--seconds", "2", "--connections", "8",
                    "--batch-records", "20000", "--batch-size", "2000", "--batch-repeat", "1"],
            "merge-load": ["merge_load.py", "--partitions", "2", "--seconds", "3",
                           "--warmup", "1"],
        }
    sizes = f"{n},{10 * n}" if n <= 1_000_000 else f"1000000,{n}"  # the 1M vs 10M
    return {
        "produce": ["produce.py", "--messages", str(min(n, 1_000_000)), "--repeat", "2"],
        "throughput": ["processor_throughput.py", "--events", str(n), "--repeat", "2",
                       "--terminals", str(FLEET),
                       "--profile", str(args.out / "throughput-profile.txt")],
        "throughput-10x": ["processor_throughput.py", "--events", str(10 * n), "--repeat", "1"],
        "memory": ["memory.py", "--sizes", sizes, "--terminals", str(FLEET)],
        "scale-out": ["scale_out.py", "--events", str(min(n, 1_000_000))],
        "latency": ["alert_latency.py"],
        "api": ["ingest_api.py"],
        "merge-load": ["merge_load.py", "--plot", str(args.out / "merge-load.png")],
    }


def produce_rows(data: dict) -> list[dict]:
    best, counts = data["best_msgs_per_s"], data["messages"]
    out = []
    for key, label in (("simulator", "simulator -> Kafka"), ("replay", "replay -> Kafka")):
        ok = best[key] >= 300_000 and best[key] / best["floor"] >= 0.5
        out.append(row("producer", f"{label} ({counts[key]:,} msgs)", best[key], "msgs/s",
                       "bare confluent-kafka produce", best["floor"],
                       ">= 300,000/s, >= 50%", ok))
    return out


def to_markdown(rows: list[dict], info: dict, durations: dict[str, float]) -> str:
    lines = ["| benchmark | figure | value | baseline (same run) | ratio | target | met |",
             "|---|---|---:|---|---:|---|---|"]
    for r in rows:
        ratio = f"{r['ratio']:.0%}" if r["ratio"] is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        base = f"{r['baseline']}: {fmt(r['baseline_value'], r['unit'])}" if r["baseline"] \
            else "-"
        value = fmt(r["value"], r["unit"])
        if r["note"]:
            value += f" <br><sub>{r['note']}</sub>"
        lines.append(f"| {r['bench']} | {r['metric']} | {value} | {base} | {ratio} | "
                     f"{r['target'] or '-'} | {met} |")
    m = info["machine"]
    lines += ["", f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, load average "
              f"{m['load']} at the start and {info['load_end']} at the end, Python "
              f"{m['python']}, kernel {m['kernel']}; broker on the same machine.",
              f"Run: {info['command']} at {info['started']}, "
              + ", ".join(f"{k} {v:.0f}s" for k, v in durations.items()) + "."]
    return "\n".join(lines) + "\n"


README = BENCH.parent / "README.md"
BEGIN, END = "<!-- bench results: begin (bench/run_all.py) -->", "<!-- bench results: end -->"


def readme_block(results: dict) -> str:
    """The README's figures from one complete run's table: every row with a target, and
    every processor row (its other baselines say how far the target's yardstick is)."""
    info, m = results["info"], results["info"]["machine"]
    lines = [BEGIN, "| benchmark | figure | value | baseline (same run) | ratio | target | met |",
             "|---|---|---:|---|---:|---|---|"]
    for r in results["rows"]:
        if not r["target"] and r["bench"] != "processor":
            continue
        ratio = f"{r['ratio']:.0%}" if r["ratio"] is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        base = f"{r['baseline']}: {fmt(r['baseline_value'], r['unit'])}" if r["baseline"] \
            else "-"
        lines.append(f"| {r['bench']} | {r['metric']} | {fmt(r['value'], r['unit'])} | "
                     f"{base} | {ratio} | {r['target'] or '-'} | {met} |")
    lines += ["", f"`make bench` at {info['started']} on {m['nproc']} CPUs ({m['cpu']}), load "
              f"average {m['load']} at the start and {info['load_end']} at the end; every "
              "row in [bench/results/results.md](bench/results/results.md).", END]
    return "\n".join(lines)


def update_readme(results: dict, readme: Path = README) -> None:
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + readme_block(results) + text[end:])


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--only", help="comma-separated: " + ", ".join(plan(
        argparse.Namespace(events=1, smoke=False, out=Path(".")))))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", type=Path, help=f"default {COMMITTED.relative_to(BENCH.parent)} "
                    f"for a complete run, {PARTIAL.relative_to(BENCH.parent)} with --only")
    ap.add_argument("--force", action="store_true",
                    help=f"overwrite the committed table even at a load above {MAX_START_LOAD}")
    ap.add_argument("--readme", action="store_true",
                    help="only rewrite README.md's figures from the committed table")
    args = ap.parse_args()
    if args.readme:
        update_readme(json.loads((COMMITTED / "results.json").read_text()))
        raise SystemExit(0)
    if args.out is None:
        args.out = PARTIAL if args.only or args.smoke else COMMITTED
    load = os.getloadavg()[0]
    if args.out.resolve() == COMMITTED.resolve() and load > MAX_START_LOAD and not args.force:
        raise SystemExit(f"load average {load:.2f} > {MAX_START_LOAD}: the figures would "
                         "measure whatever else runs too; the committed table is left as it "
                         "is (wait, use --out DIR, or --force)")
    return args


def _steps(args: argparse.Namespace) -> dict[str, list[str]]:
    steps = plan(args)
    if args.only:
        wanted = args.only.split(",")
        unknown = set(wanted) - set(steps)
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; one of {list(steps)}")
        steps = {k: v for k, v in steps.items() if k in wanted}
    return steps


def _run(steps: dict[str, list[str]], out_dir: Path) -> tuple[list, dict, dict, list]:
    """Each benchmark as its own process against one broker: rows, raw, durations, failed."""
    rows, raw, durations, failed = [], {}, {}, []
    with Broker() as bootstrap:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        for name, (script, *rest) in steps.items():
            out = out_dir / f"{name}.json"
            out.unlink(missing_ok=True)
            print(f"\n=== {name}: {script} {' '.join(rest)}", flush=True)
            t = time.monotonic()
            # faulthandler: a crash in a native client prints where each thread was.
            code = subprocess.call([sys.executable, "-X", "faulthandler", str(BENCH / script),
                                    *rest, "--json", str(out)], env=env)
            durations[name] = time.monotonic() - t
            if code != 0 or not out.exists():
                failed.append(f"{name} (exit {code})")
                continue
            data = json.loads(out.read_text())
            raw[name] = data
            rows += produce_rows(data) if name == "produce" else data["rows"]
    return rows, raw, durations, failed


def main() -> int:
    args = _args()
    args.out.mkdir(parents=True, exist_ok=True)
    steps = _steps(args)
    info = {"machine": machine(), "command": "bench/run_all.py " + " ".join(sys.argv[1:]),
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    rows, raw, durations, failed = _run(steps, args.out)
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n=== all benchmarks ({info['machine']['nproc']} CPUs, "
          f"{info['machine']['cpu']}, load {info['machine']['load']} -> {info['load_end']})")
    print_rows(rows)
    (args.out / "results.md").write_text(to_markdown(rows, info, durations))
    results = {"info": info, "rows": rows, "raw": raw, "durations_s": durations}
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\ntable: {args.out / 'results.md'}")
    if args.out.resolve() == COMMITTED.resolve() and not failed:
        update_readme(results)
        print(f"figures: {README}")
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
