"""`make bench` never overwrites the committed table from a busy machine or a partial run."""

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import run_all  # noqa: E402


def args_for(monkeypatch, argv: list[str], load: float):
    monkeypatch.setattr(sys, "argv", ["run_all.py", *argv])
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    return run_all._args()


def test_a_busy_machine_leaves_the_committed_table_alone(monkeypatch):
    with pytest.raises(SystemExit, match="load average 2.50 > 1.5"):
        args_for(monkeypatch, [], 2.5)
    assert args_for(monkeypatch, ["--force"], 2.5).out == run_all.COMMITTED
    assert args_for(monkeypatch, [], 0.4).out == run_all.COMMITTED


def test_partial_and_smoke_runs_write_elsewhere(monkeypatch, tmp_path):
    assert args_for(monkeypatch, ["--only", "memory"], 9.0).out == run_all.PARTIAL
    assert args_for(monkeypatch, ["--smoke"], 9.0).out == run_all.PARTIAL
    assert args_for(monkeypatch, ["--out", str(tmp_path)], 9.0).out == tmp_path
    with pytest.raises(SystemExit, match="load average"):
        args_for(monkeypatch, ["--only", "memory", "--out", str(run_all.COMMITTED)], 9.0)


def test_the_readmes_figures_are_the_committed_tables():
    results = json.loads((run_all.COMMITTED / "results.json").read_text())
    block = run_all.readme_block(results)
    assert block in run_all.README.read_text(), \
        "README.md's figures differ from bench/results: `bench/run_all.py --readme`"
