"""The worker against a real broker: counts exact, every minute once, through kills,
several workers, idle inputs, late and bad data."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Producer
from support.faults import DAY, Slice, pivot
from support.kafka import end_offsets
from support.processor import (
    TXMON,
    Worker,
    duplicates,
    processor_env,
    read_alerts,
    read_dead,
    read_windows,
    unique_by_id,
    wait_for_windows,
)

from txmon.contracts import STATUSES
from txmon.contracts.minutes import minute_id

REFERENCE = ["transactions_1.csv", "transactions_2.csv"]


def frame(windows) -> pd.DataFrame:
    rows = {w.start: [w.counts[s] for s in STATUSES] for w in windows}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(STATUSES)).sort_index()
    out.index = pd.DatetimeIndex(out.index).tz_convert("UTC")
    return out


def replay(env, *files: Path, extra=()):
    subprocess.run([TXMON, "replay", *map(str, files), "--no-progress", *extra], env=env,
                   check=True, capture_output=True)


def assert_equal_to_pivot(windows, expected: pd.DataFrame) -> None:
    got = frame(windows)
    assert got.index[0] == expected.index[0], "no minute may come before the first one"
    window = got.loc[expected.index[0]:expected.index[-1]]
    assert list(window.index) == list(expected.index), "every minute, empty ones included"
    diff = (window.astype("int64") - expected.astype("int64")).abs()
    assert int(diff.to_numpy().sum()) == 0, diff[diff.sum(axis=1) > 0].head()


#: The visible incidents each reference day must raise an alert inside (shared/README.md).
SURGES = {
    "transactions_1.csv": ("reversals", f"{DAY}T14:30Z", f"{DAY}T17:00Z"),
    "transactions_2.csv": ("denials", f"{DAY}T16:20Z", f"{DAY}T17:25Z"),
}


@pytest.fixture(scope="module")
def clean_model(tmp_path_factory) -> Path:
    """A model trained on a simulated clean day, as an operator without history would."""
    out = tmp_path_factory.mktemp("model") / "model.joblib"
    subprocess.run([TXMON, "train", "--simulate-days", "1", "--seed", "3", "--out", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCE)
def test_reference_day_windows_equal_the_csv_pivot_and_its_surge_alerts(
        name, shared_data, clean_model, kafka_settings, txmon_env, unique_topics, tmp_path):
    env = processor_env(txmon_env, TXMON_MODEL_PATH=str(clean_model))
    worker = Worker(env, tmp_path).start()
    try:
        replay(env, shared_data / name)
        expected = pivot(shared_data / name)
        windows = wait_for_windows(kafka_settings, unique_topics.window_counts,
                                   minute_id(int(expected.index[-1].timestamp() * 1000)),
                                   [worker])
        alerts = read_alerts(kafka_settings, unique_topics.alerts)
    finally:
        worker.stop()
    assert duplicates(windows) == 0
    assert_equal_to_pivot(windows, expected)
    assert sum(w.late for w in windows) == 0
    assert all(w.score is not None and w.threshold is not None for w in windows)
    group, start, end = SURGES[name]
    # One incident per episode: the group may have joined one that another group opened.
    inside = [a for a in alerts if group in (a.groups or [a.group]) and a.event != "resolved"
              and start <= minute_id(int(a.window_start.timestamp() * 1000)) <= end]
    assert inside, f"no {group} alert between {start} and {end}: " + ", ".join(
        f"{a.event} {'+'.join(a.groups)} {a.window_start:%H:%M}" for a in alerts)
    assert all(a.summary and a.runbook_url for a in alerts)
    printed = subprocess.run([TXMON, "alerts"], env=env, check=True, capture_output=True,
                             text=True, timeout=60).stdout.splitlines()
    assert len(printed) == len(unique_by_id(alerts, "alert"))
    incident = inside[0].incident_id
    assert any(incident in line and "OPEN" in line and inside[0].since.strftime("%H:%M")
               in line for line in printed), printed
    # The pipeline's own history is training data too.
    trained = subprocess.run([TXMON, "train", "--from-topic", "--out", str(tmp_path / "m.joblib")],
                             env=env, check=True, capture_output=True, text=True).stdout
    assert f"trained on {len(unique_by_id(windows, 'window'))} minutes" in trained


@pytest.mark.slow
def test_sigkill_mid_stream_gives_the_same_windows_and_alerts(shared_data, kafka_settings,
                                                              txmon_env, unique_topics, tmp_path):
    """Two workers read the same transactions as they arrive: one runs undisturbed, the
    other is killed with SIGKILL twice while it works. Their outputs must be the same,
    record for record, and equal to the file."""
    # Six hours with the day's incidents: an hour of warm-up, then minutes that alert.
    source = Slice("transactions_1.csv", "12h 00", "17h 59").write(shared_data, tmp_path)
    expected = pivot(source)
    last = minute_id(int(expected.index[-1].timestamp() * 1000))
    env = processor_env(txmon_env, TXMON_WARMUP_WINDOWS="60")
    calm_env = dict(env, TXMON_APP_ID=env["TXMON_APP_ID"] + "-calm")
    for topic in ("WINDOW_COUNTS", "ALERTS", "DEAD_LETTER", "WINDOW_PARTIALS", "PARTITION_STATE"):
        calm_env[f"TXMON_TOPIC_{topic}"] = env[f"TXMON_TOPIC_{topic}"] + "-calm"
    calm = Worker(calm_env, tmp_path, "calm").start()
    victim = Worker(env, tmp_path, "victim").start()
    # 12.5 minutes of the day a second: both stages are mid-stream when the kills land.
    feeder = subprocess.Popen([TXMON, "replay", str(source), "--speed", "750",
                               "--no-progress"], env=env, stdout=subprocess.DEVNULL)
    kills = 0
    try:
        for target in (100, 250):
            deadline = time.monotonic() + 120
            while len(unique_by_id(read_windows(kafka_settings, unique_topics.window_counts),
                                   "window")) < target:
                assert time.monotonic() < deadline, victim.tail()
                time.sleep(0.3)
            victim.kill()
            kills += 1
            victim.start()
        assert feeder.wait(120) == 0
        hit = wait_for_windows(kafka_settings, unique_topics.window_counts, last, [victim])
        calm_windows = wait_for_windows(kafka_settings, calm_env["TXMON_TOPIC_WINDOW_COUNTS"],
                                        last, [calm])
        time.sleep(2)
        hit_alerts = read_alerts(kafka_settings, unique_topics.alerts)
        calm_alerts = read_alerts(kafka_settings, calm_env["TXMON_TOPIC_ALERTS"])
    finally:
        feeder.kill()
        victim.stop()
        calm.stop()
    assert kills == 2 and victim.starts == 3
    assert_equal_to_pivot(hit, expected)
    ids = sorted(w.id for w in calm_windows if w.id <= last)
    got = unique_by_id(hit, "window")
    want = unique_by_id(calm_windows, "window")
    assert sorted(i for i in got if i <= last) == ids
    assert all(got[i] == want[i] for i in ids), "same minute, different content"
    calm_by_id = unique_by_id([a for a in calm_alerts if a.window_start <= want[last].start],
                              "alert")
    hit_by_id = unique_by_id([a for a in hit_alerts if a.window_start <= want[last].start],
                             "alert")
    assert calm_by_id, "the warm-up model should raise some alerts on this day"
    assert sorted(hit_by_id) == sorted(calm_by_id)
    assert all(hit_by_id[i] == calm_by_id[i] for i in calm_by_id)
    print(f"\nkills={kills} windows={len(got)} re-emitted windows={duplicates(hit)} "
          f"alerts={len(hit_by_id)} re-emitted alerts={duplicates(hit_alerts)}")


def test_two_workers_on_three_partitions_equal_one_worker(kafka_settings, txmon_env,
                                                          unique_topics, tmp_path):
    env = processor_env(txmon_env)
    report = tmp_path / "produced.json"
    subprocess.run([TXMON, "produce", "--start", f"{DAY}T09:00", "--speed", "max",
                    "--duration", "30m", "--rate", "40", "--seed", "11", "--no-progress",
                    "--incident", "failed:x30:5m@10m", "--report", str(report)],
                   env=env, check=True, capture_output=True)
    produced = json.loads(report.read_text())
    single_env = dict(env, TXMON_APP_ID=env["TXMON_APP_ID"] + "-single")
    single_env["TXMON_TOPIC_WINDOW_COUNTS"] = env["TXMON_TOPIC_WINDOW_COUNTS"] + "-single"
    single_env["TXMON_TOPIC_WINDOW_PARTIALS"] = env["TXMON_TOPIC_WINDOW_PARTIALS"] + "-single"
    single_env["TXMON_TOPIC_ALERTS"] = env["TXMON_TOPIC_ALERTS"] + "-single"
    single_env["TXMON_TOPIC_PARTITION_STATE"] = env["TXMON_TOPIC_PARTITION_STATE"] + "-single"
    workers = [Worker(env, tmp_path, "a").start(), Worker(env, tmp_path, "b").start()]
    single = Worker(single_env, tmp_path, "single").start()
    last = f"{DAY}T09:29Z"
    try:
        pair = wait_for_windows(kafka_settings, unique_topics.window_counts, last, workers)
        one = wait_for_windows(kafka_settings, single_env["TXMON_TOPIC_WINDOW_COUNTS"], last,
                               [single])
    finally:
        for w in [*workers, single]:
            w.stop()
    pair_by_id = {k: v for k, v in unique_by_id(pair, "window").items() if k <= last}
    one_by_id = {k: v for k, v in unique_by_id(one, "window").items() if k <= last}
    assert len(one_by_id) == 30
    assert pair_by_id == one_by_id
    totals = {s: sum(w.counts[s] for w in one_by_id.values()) for s in STATUSES}
    assert totals == {s: produced["totals"].get(s, 0) for s in STATUSES}


def _send(settings, topic: str, values: list[bytes], key: bytes = b"one-terminal") -> None:
    producer = Producer(settings.confluent(**{"enable.idempotence": True}))
    for value in values:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def tx(ts: str, status: str = "approved", i: int = 0) -> bytes:
    return json.dumps({"id": f"{ts}-{i}", "status": status, "timestamp": ts}).encode()


def test_idle_input_still_closes_the_last_minute(kafka_settings, txmon_env, unique_topics,
                                                 tmp_path):
    env = processor_env(txmon_env, TXMON_IDLE_TIMEOUT_SECONDS="3")
    worker = Worker(env, tmp_path).start()
    try:
        _send(kafka_settings, unique_topics.transactions,
              [tx(f"{DAY}T03:00:5{i % 10}Z", "approved", i) for i in range(10)])
        sent = time.monotonic()
        windows = wait_for_windows(kafka_settings, unique_topics.window_counts,
                                   f"{DAY}T03:00Z", [worker], timeout=90)
        waited = time.monotonic() - sent
    finally:
        worker.stop()
    first = unique_by_id(windows, "window")[f"{DAY}T03:00Z"]
    assert first.counts["approved"] == 10 and first.total == 10
    # No later event closed it: only the clock could (max event 03:00:59 - 10 s lateness).
    assert waited >= 3


def test_a_partition_whose_first_records_come_late_is_waited_for(
        kafka_settings, txmon_env, unique_topics, tmp_path):
    """Producers started with the worker deliver to some partitions seconds after others
    (a topic just created, leaders moving). A partition that has had no event yet is
    left out of a minute only once silent for the idle timeout, like any partition; the
    one never written to (2) is, and the minute still closes."""
    env = processor_env(txmon_env, TXMON_IDLE_TIMEOUT_SECONDS="12")
    worker = Worker(env, tmp_path).start()
    producer = Producer(kafka_settings.confluent(**{"enable.idempotence": True}))

    def send(partition: int, *stamps: str) -> None:
        for i, ts in enumerate(stamps):
            producer.produce(unique_topics.transactions, tx(ts, "approved", partition * 10 + i),
                             partition=partition)
        assert producer.flush(30) == 0

    try:
        worker.wait_assigned()
        send(0, f"{DAY}T10:00:01Z", f"{DAY}T10:01:20Z")  # closes 10:00 on partition 0
        time.sleep(LATE_START_S)  # the delay under test, not a wait for readiness
        send(1, f"{DAY}T10:00:30Z", f"{DAY}T10:01:30Z")
        windows = wait_for_windows(kafka_settings, unique_topics.window_counts,
                                   f"{DAY}T10:00Z", [worker], timeout=90)
    finally:
        worker.stop()
    first = unique_by_id(windows, "window")[f"{DAY}T10:00Z"]
    assert (first.counts["approved"], first.late) == (2, 0), first


#: Longer than the merge's freshness margin (two ticks), shorter than the idle timeout.
LATE_START_S = 5


def test_late_events_are_counted_within_lateness_and_dead_lettered_after(
        kafka_settings, txmon_env, unique_topics, tmp_path):
    # One key, so two partitions stay empty: the minutes close once those are idle
    # (the timeout), while the clock cannot close a minute before the events arrive.
    env = processor_env(txmon_env, TXMON_ALLOWED_LATENESS_SECONDS="10",
                        TXMON_IDLE_TIMEOUT_SECONDS="10")
    worker = Worker(env, tmp_path).start()
    try:
        _send(kafka_settings, unique_topics.transactions, [
            tx(f"{DAY}T10:00:30Z", "approved", 1),
            tx(f"{DAY}T10:02:05Z", "approved", 2),  # watermark 10:01:55: 10:00 closes
            tx(f"{DAY}T10:01:58Z", "failed", 3),  # 7 s behind the newest, its minute open
            tx(f"{DAY}T10:00:40Z", "denied", 4),  # its minute is closed: late
            tx(f"{DAY}T10:03:20Z", "approved", 5),  # closes 10:02, which carries the late one
        ])
        windows = wait_for_windows(kafka_settings, unique_topics.window_counts,
                                   f"{DAY}T10:02Z", [worker], timeout=90)
        dead = read_dead(kafka_settings, unique_topics.dead_letter)
    finally:
        worker.stop()
    by_id = unique_by_id(windows, "window")
    assert by_id[f"{DAY}T10:00Z"].counts["approved"] == 1
    assert by_id[f"{DAY}T10:00Z"].counts["denied"] == 0
    assert by_id[f"{DAY}T10:01Z"].counts["failed"] == 1
    assert by_id[f"{DAY}T10:02Z"].late == 1
    assert [d.reason for d in dead] == ["late"]
    assert json.loads(dead[0].payload)["id"] == f"{DAY}T10:00:40Z-4"
    assert dead[0].topic == unique_topics.transactions and dead[0].offset == 3


def test_merge_resumes_from_its_state_not_its_group_offset(kafka_settings, txmon_env,
                                                          unique_topics, tmp_path):
    """The merge group's committed offset ahead of the merge state (here: a brand-new
    state, as when an operator resets or copies offsets): the merge goes by what its
    state applied, not by the commit, or minutes lose counts."""
    from confluent_kafka import Consumer, TopicPartition

    env = processor_env(txmon_env)
    subprocess.run([TXMON, "produce", "--start", f"{DAY}T09:00", "--speed", "max",
                    "--duration", "15m", "--rate", "20", "--seed", "5", "--no-progress"],
                   env=env, check=True, capture_output=True)
    last = f"{DAY}T09:14Z"
    first = Worker(env, tmp_path, "first").start()
    try:
        reference = wait_for_windows(kafka_settings, unique_topics.window_counts, last, [first])
    finally:
        first.stop()
    # A second deployment on the same partials, with its merge group committed far ahead.
    second_env = dict(env, TXMON_APP_ID=env["TXMON_APP_ID"] + "-second")
    for topic in ("WINDOW_COUNTS", "ALERTS", "PARTITION_STATE"):
        second_env[f"TXMON_TOPIC_{topic}"] = env[f"TXMON_TOPIC_{topic}"] + "-second"
    group = Consumer(kafka_settings.confluent(**{"group.id": second_env["TXMON_APP_ID"] + "-merge",
                                                 "enable.auto.commit": False}))
    ahead = end_offsets(kafka_settings, unique_topics.window_partials)[0] // 2
    group.commit(offsets=[TopicPartition(unique_topics.window_partials, 0, ahead)],
                 asynchronous=False)
    group.close()
    second = Worker(second_env, tmp_path, "second").start()
    try:
        again = wait_for_windows(kafka_settings, second_env["TXMON_TOPIC_WINDOW_COUNTS"], last,
                                 [second])
    finally:
        second.stop()
    want = {k: v.counts for k, v in unique_by_id(reference, "window").items() if k <= last}
    got = {k: v.counts for k, v in unique_by_id(again, "window").items() if k <= last}
    assert got == want
    assert "merging from partial [-2]" in second.log.read_text(), "from the beginning"
