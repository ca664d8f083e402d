"""The benchmarks at a tiny size, so they don't rot: each script runs against the real
broker and the real worker, and its figures land in the results table. This checks that
they run and report, not how fast anything is (that is what `make bench` is for).

One test per benchmark (`run_all.py --smoke --only NAME`), so parallel test workers
share them out instead of queueing behind one long run. `make bench`'s throughput-10x
step is the throughput script at ten times the size: the smoke runs that script once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

#: run_all.py's step name -> the `bench` its rows carry.
BENCHES = {"produce": "producer", "throughput": "processor", "memory": "memory",
           "scale-out": "scale-out", "latency": "latency", "api": "ingest API",
           "merge-load": "merge load"}
#: Figures a tiny run may leave empty by design.
EMPTY_BY_DESIGN = {
    ("latency", "alert"),  # no model in the smoke run: no alerts
    ("scale-out", "steady"),  # all may be counted before the second worker joins
}


def _smoke(step: str, bootstrap: str, tmp_path: Path) -> dict:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "TXMON_STATE_DIR": str(tmp_path / "state")}
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--smoke", "--only", step,
         "--out", str(out)], env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| benchmark |" in (out / "results.md").read_text()
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("step", list(BENCHES))
def test_each_benchmark_runs_at_a_tiny_size(step: str, kafka_bootstrap: str, tmp_path: Path):
    results = _smoke(step, kafka_bootstrap, tmp_path)
    rows = results["rows"]
    assert rows and {r["bench"] for r in rows} == {BENCHES[step]}, rows
    for r in rows:
        if any(r["bench"] == b and word in r["metric"] for b, word in EMPTY_BY_DESIGN):
            continue
        assert r["value"] is not None and r["value"] > 0, r
    # Correctness rides along: every processor run's minutes equal the events written.
    raw = results["raw"][step]
    if step in ("throughput", "memory"):
        assert all(run["wrong_minutes"] == 0 for run in raw["runs"]), raw["runs"]
    if step == "scale-out":
        assert raw["one"]["wrong_minutes"] == 0 and raw["two"]["wrong_minutes"] == 0
