"""Issue 8, item 2: the broker stopped and restarted in the middle of a replay, with the
producer (`txmon replay`) and the processor left running: nothing lost, nothing counted
twice, no minute or alert duplicated, and the pipeline resumes without help.

The truth is the CSV's pandas pivot for counts, and for alerts a second, undisturbed
worker started after the restart over the same transactions."""

from __future__ import annotations

import json
import subprocess
import time

import pandas as pd
import pytest
from support.faults import (
    WindowWatch,
    fresh_outputs,
    pipeline_env,
    pivot,
    slug,
    tally_records,
    tally_windows,
)
from support.processor import TXMON, Worker, processor_env, read_alerts, read_dead, read_windows
from support.reliability import record

from txmon.config import KafkaSettings
from txmon.contracts import Topics
from txmon.kafka.admin import ensure_topics, pipeline_topics

pytestmark = [pytest.mark.timeout(900)]

SOURCE = "transactions_2.csv"
SPEED = "600"  # the day in about 2.5 min of wall time
DOWN_AFTER_WINDOWS = 10  # closed by the worker before the broker stops
DOWN_FOR_S = 5  # plus the broker's own start time
WORKER_ENV = {"TXMON_WARMUP_WINDOWS": "60", "TXMON_SESSION_TIMEOUT_MS": "6000"}


def test_broker_restart_mid_replay_loses_and_duplicates_nothing(
        shared_data, local_kafka_factory, tmp_path):
    started = time.monotonic()
    kafka = local_kafka_factory()
    settings = KafkaSettings(bootstrap=kafka.bootstrap)
    run = slug("t-restart")
    names = Topics(**{f: f"{run}-{f.replace('_', '-')}" for f in Topics.__dataclass_fields__})
    ensure_topics(settings, pipeline_topics(names))
    source = shared_data / SOURCE
    truth = pivot(source)
    env = pipeline_env(settings, names)
    worker = Worker(processor_env(env, TXMON_APP_ID=slug("victim"), **WORKER_ENV),
                    tmp_path, "victim").start()
    report = tmp_path / "replay.json"
    replay_log = open(tmp_path / "replay.log", "wb")  # noqa: SIM115 - closed below
    feeder = subprocess.Popen([TXMON, "replay", str(source), "--speed", SPEED, "--no-progress",
                               "--report", str(report)], env=env, stdout=replay_log,
                              stderr=subprocess.STDOUT)
    calm = None
    watch = WindowWatch(settings, names.window_counts)
    watch.start()
    try:
        # Mid-stream: the worker has closed windows and the replay is still sending.
        try:
            watch.wait_for(DOWN_AFTER_WINDOWS, 300, worker.alive)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.tail()}") from None
        finally:
            watch.stop()
        assert feeder.poll() is None, "the replay ended before the broker stopped"
        t_down = time.monotonic()
        assert kafka.down(timeout=30)
        time.sleep(DOWN_FOR_S)
        kafka.up(timeout=180)
        outage = time.monotonic() - t_down
        assert feeder.wait(300) == 0, (tmp_path / "replay.log").read_text()[-2000:]
        assert worker.alive(), f"the worker died with the broker:\n{worker.tail()}"
        calm_names = fresh_outputs(names, "calm")
        calm = Worker(processor_env(pipeline_env(settings, calm_names),
                                    TXMON_APP_ID=slug("calm"), **WORKER_ENV),
                      tmp_path, "calm").start()
        for topic, who in ((names.window_counts, worker), (calm_names.window_counts, calm)):
            watch = WindowWatch(settings, topic)
            watch.start()
            try:
                watch.wait_for(len(truth), 600, who.alive)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{who.tail()}") from None
            finally:
                watch.stop()
        time.sleep(2)
        windows = read_windows(settings, names.window_counts)
        alerts = read_alerts(settings, names.alerts)
        dead = read_dead(settings, names.dead_letter)
        calm_windows = read_windows(settings, calm_names.window_counts)
        calm_alerts = read_alerts(settings, calm_names.alerts)
    finally:
        feeder.kill()
        replay_log.close()
        worker.stop()
        if calm is not None:
            calm.stop()
    produced = json.loads(report.read_text())["totals"]
    want = {s: int(v) for s, v in truth.sum().items() if v}
    counts = tally_windows(windows, truth)
    last = max(truth.index)
    in_day = [w for w in windows if pd.Timestamp(w.start) <= last]
    calm_in_day = [w for w in calm_windows if pd.Timestamp(w.start) <= last]
    same = tally_records(in_day, calm_in_day)
    end = max(w.start for w in calm_in_day)
    alert_tally = tally_records([a for a in alerts if a.window_start <= end],
                                [a for a in calm_alerts if a.window_start <= end])
    ok = (produced == want and counts.clean() and same.clean() and alert_tally.clean()
          and not dead)
    print(f"\nbroker out {outage:.1f}s; windows re-emitted {same.reemitted}, "
          f"alerts {alert_tally.expected} re-emitted {alert_tally.reemitted}")
    record("test_faults_broker_restart", order=2, fault="broker stop + restart mid-replay",
           trials=1, crashes=1, records=counts.expected, windows=len(truth),
           alerts=alert_tally.expected, lost=counts.lost + same.lost + alert_tally.lost,
           double_counted=counts.double_counted,
           duplicated=same.duplicated + alert_tally.duplicated,
           reemitted=same.reemitted + alert_tally.reemitted,
           outcome=("replay and worker resumed by themselves; equal to an undisturbed run"
                    if ok else "FAILED: differs from the CSV or the undisturbed run"),
           seconds=round(time.monotonic() - started),
           notes=f"{SOURCE} at --speed {SPEED}; broker stopped once the worker had closed "
                 f"{DOWN_AFTER_WINDOWS} windows, unreachable {outage:.0f}s "
                 f"(stop, {DOWN_FOR_S}s, start); TXMON_PRODUCER_TIMEOUT_MS default 120000"
                 + ("" if ok else f"; counts {counts!r}; windows {same}; alerts {alert_tally}; "
                                  f"dead letters {len(dead)}"))
    assert produced == want, "the replay's own totals differ from the file"
    assert counts.clean(), counts
    assert same.clean(), f"windows differ from an undisturbed run: {same}"
    assert alert_tally.clean(), f"alerts differ from an undisturbed run: {alert_tally}"
    assert not dead, f"{len(dead)} dead letters, e.g. {dead[0]}"


def test_a_worker_started_before_its_broker_waits_for_it(local_kafka_factory, txmon_env,
                                                          unique_topics, tmp_path):
    """Services start in any order: a worker whose broker is not up yet says it is waiting,
    stays alive, and counts once the broker comes."""
    import dataclasses

    from confluent_kafka import Producer

    from txmon.contracts import Transaction, encode

    kafka = local_kafka_factory()
    settings = dataclasses.replace(KafkaSettings(), bootstrap=kafka.bootstrap)
    assert kafka.down(timeout=30)
    env = processor_env(txmon_env, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap)
    worker = Worker(env, tmp_path, "early").start()
    try:
        # It says so at once, then again every ~10 s while it stays alive.
        deadline = time.monotonic() + 60
        while "still waiting for Kafka" not in worker.log.read_text():
            assert worker.alive() and time.monotonic() < deadline, worker.tail()
            time.sleep(0.2)
        assert "waiting for Kafka" in worker.log.read_text().split("still waiting")[0]
        kafka.up(timeout=120)
        producer = Producer(settings.confluent())
        minute = pd.Timestamp("2026-03-02T10:00:00Z")
        for i, offset_s in enumerate([1, 2, 3, 70]):  # the last one closes 10:00
            tx = Transaction(id=f"early-{i}", status="approved",
                             timestamp=(minute + pd.Timedelta(seconds=offset_s)).to_pydatetime())
            producer.produce(unique_topics.transactions, encode(tx), tx.id.encode())
        assert producer.flush(30) == 0
        deadline = time.monotonic() + 120
        first = None
        while first is None:
            assert time.monotonic() < deadline and worker.alive(), worker.tail()
            got = [w for w in read_windows(settings, unique_topics.window_counts)
                   if w.id == "2026-03-02T10:00Z"]
            first = got[0] if got else None
            time.sleep(1)
    finally:
        worker.stop()
    assert first.counts["approved"] == 3
