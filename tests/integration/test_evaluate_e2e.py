"""The evaluation's in-process path equals the real pipeline: the same simulated
scenario streamed by `txmon produce` through the real broker into `txmon process`
yields exactly the windows and alerts that `evaluation.evaluate` computes by feeding the
simulator's minute counts to the worker's own `Minutes`."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from support.processor import TXMON, Worker, read_alerts, unique_by_id, wait_for_windows

from evaluation.evaluate import Case, run_windows, scenario, windows_of
from txmon.contracts import STATUSES
from txmon.contracts.minutes import minute_id, to_ms

pytestmark = pytest.mark.slow

START = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
CASE = Case("e2e", "spike", seed=7, rate=20.0, hours=3.0,
            incidents=("denied:x3:15m@1h", "reversed,backend_reversed:x10:3m:burst@1h40m"),
            outages=("10m:0.2@2h15m",))


def trained_env(txmon_env: dict, tmp_path, app: str) -> tuple[dict, object]:
    """The worker's environment with a model trained on one simulated day."""
    model = tmp_path / "model.joblib"
    env = dict(txmon_env, TXMON_MODEL_PATH=str(model), TXMON_IDLE_TIMEOUT_SECONDS="3",
               TXMON_APP_ID=f"txmon-{app}-{uuid.uuid4().hex[:8]}",
               TXMON_STATE_DIR=str(tmp_path / "state"))
    subprocess.run([TXMON, "train", "--simulate-days", "1", "--out", str(model)], env=env,
                   check=True, capture_output=True, timeout=300)
    return env, model


def stream(case: Case, start: datetime, env: dict, tmp_path, kafka_settings, txmon_env,
           last_ms: int) -> tuple[list, list]:
    """`txmon produce` the case at full speed into a running `txmon process`: the
    window and alert records once the minute starting at `last_ms` is out."""
    specs = [*(("--incident", x) for x in case.incidents),
             *(("--outage", x) for x in case.outages),
             *(("--slice", x) for x in case.slices)]
    fleet = ["--terminals", str(case.terminals)] if case.terminals else []
    worker = Worker(env, tmp_path).start()
    try:
        produce = subprocess.run(
            [TXMON, "produce", "--start", start.strftime("%Y-%m-%dT%H:%M"),
             "--duration", f"{case.hours:g}h", "--rate", str(case.rate), "--seed",
             str(case.seed), "--speed", "max", "--no-progress", "--labels",
             str(tmp_path / "labels.jsonl"), *fleet, *(a for pair in specs for a in pair)],
            env=env, capture_output=True, text=True, timeout=300)
        assert produce.returncode == 0, produce.stderr
        windows = wait_for_windows(kafka_settings, txmon_env["TXMON_TOPIC_WINDOW_COUNTS"],
                                   minute_id(last_ms), [worker], timeout=300)
        return windows, read_alerts(kafka_settings, txmon_env["TXMON_TOPIC_ALERTS"])
    finally:
        worker.stop()


def test_broker_and_processor_agree_with_the_evaluation(kafka_settings, txmon_env, tmp_path):
    env, model = trained_env(txmon_env, tmp_path, "eval")

    # In process: the evaluation's path.
    sc = scenario(CASE, START)
    expected = run_windows(model, windows_of(sc))
    assert {a.group for a in expected.alerts if a.event == "open"} >= {
        "denials", "reversals", "outage"}

    # End to end: producer -> broker -> worker.
    windows, alerts = stream(CASE, START, env, tmp_path, kafka_settings, txmon_env,
                             int(expected.starts[-1]))

    got = unique_by_id(windows, "window")
    assert len(got) == len(expected.starts)
    for start, counts, score in zip(expected.starts, expected.counts, expected.scores,
                                    strict=True):
        w = got[minute_id(int(start))]
        assert [w.counts[s] for s in STATUSES] == list(counts)
        assert w.score == score
    by_id = unique_by_id(alerts, "alert")
    assert sorted(by_id) == sorted(a.id for a in expected.alerts)
    for a in expected.alerts:
        assert msgspec.to_builtins(by_id[a.id]) == msgspec.to_builtins(a)
    # The labels the producer wrote are the scenario's.
    labels = (tmp_path / "labels.jsonl").read_text().splitlines()
    assert len(labels) == 3
    assert all(to_ms(lb.start) >= to_ms(START) for lb in sc.labels())


FLEET = Case("e2e-fleet", "slice", seed=8, rate=20.0, hours=2.0, terminals=1_000_000,
             slices=("ranks:8-10:failed:20m@30m", "top:5:silent:30m@1h10m"))


def test_terminals_through_the_broker_are_counted_exactly_and_named(kafka_settings,
                                                                     txmon_env, tmp_path):
    """Events carrying terminal ids from a million-terminal fleet: every minute exact,
    and the slices the producer injected are paged with only their own terminals named.
    (The summaries are cut per batch and partition in the worker, per minute in
    process, so names, not records, are compared.)"""
    start = START.replace(hour=10)
    env, _ = trained_env(txmon_env, tmp_path, "fleet")
    sc = scenario(FLEET, start)
    expected = windows_of(sc)
    windows, alerts = stream(FLEET, start, env, tmp_path, kafka_settings, txmon_env,
                             expected[-1][0])
    got = unique_by_id(windows, "window")
    for s, counts in expected:
        assert [got[minute_id(s)].counts[x] for x in STATUSES] == counts
    opened = {a.group: a for a in unique_by_id(alerts, "alert").values() if a.event == "open"}
    labels = {lb.statuses[0] if len(lb.statuses) == 1 else "silent": lb for lb in sc.labels()}
    failures, outage = opened["failures"], opened["outage"]
    assert "slice_failures" in failures.causes or "failed" in failures.causes
    assert set(failures.terminals.get("failures", ["none"])) <= set(labels["failed"].terminals), \
        failures
    assert outage.causes == ["slice_silence"]
    assert set(outage.terminals["outage"]) <= set(labels["silent"].terminals)
    assert to_ms(labels["failed"].start) <= to_ms(failures.window_start) <= to_ms(
        labels["failed"].start) + 3 * 60_000
