"""The benchmarks at a tiny size, so they don't rot: each script runs against the real
broker and the real worker, and its figures land in the results table. This checks that
they run and report, not how fast anything is (that is what `make bench` is for)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_at_a_tiny_size(kafka_bootstrap: str, tmp_path: Path):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "TXMON_STATE_DIR": str(tmp_path / "state")}
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    benches = {r["bench"] for r in results["rows"]}
    assert benches == {"producer", "processor", "memory", "scale-out", "latency",
                       "ingest API", "merge load"}, benches
    by_metric = {(r["bench"], r["metric"]): r for r in results["rows"]}
    for (bench, metric), r in by_metric.items():
        if bench == "latency" and "alert" in metric:
            continue  # no model in the smoke run: no alerts, by design
        if bench == "scale-out" and "steady" in metric:
            continue  # a tiny run may be all counted before the second worker joins
        assert r["value"] is not None and r["value"] > 0, (bench, metric, r)
    # Correctness rides along: every processor run's minutes equal the events written.
    for name in ("throughput", "throughput-10x", "memory"):
        runs = results["raw"][name]["runs"]
        assert all(run["wrong_minutes"] == 0 for run in runs), runs
    scale = results["raw"]["scale-out"]
    assert scale["one"]["wrong_minutes"] == 0 and scale["two"]["wrong_minutes"] == 0
    assert "| benchmark |" in (out / "results.md").read_text()
