"""Shared pieces of the fault tests: a preloaded reference day, per-run output topics,
a live count of the windows a worker has emitted, and exact comparisons that count
(lost, double-counted, duplicated, re-emitted) instead of stopping at the first error."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import pandas as pd

from txmon.contracts import STATUSES, Topics, WindowCount
from txmon.contracts.topics import ENV_PREFIX
from txmon.kafka.read import follow
from txmon.settings import KafkaSettings, TestSuite, shared_data_dir

DAY = "2026-03-02"
OUTPUTS = ("window_counts", "alerts", "dead_letter", "window_partials", "partition_state")


def pipeline_env(settings: KafkaSettings, names: Topics, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap
    for field in Topics.model_fields:
        env[ENV_PREFIX + field.upper()] = getattr(names, field)
    env.update(extra)
    return env


def fresh_outputs(names: Topics, tag: str) -> Topics:
    """Same transactions topic, new output topics: a run independent of every other."""
    return names.model_copy(update={f: f"{getattr(names, f)}-{tag}" for f in OUTPUTS})


def slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_topics(prefix: str) -> Topics:
    """Every topic of the pipeline under a name of this run's own."""
    run = slug(prefix)
    return Topics(**{f: f"{run}-{f.replace('_', '-')}" for f in Topics.model_fields})


def reference_data() -> Path:
    """The reference CSVs: skipped when absent, failed in CI (conftest's `shared_data`
    fixture, and module-scoped fixtures, call this)."""
    import pytest

    path = shared_data_dir()
    if not path.is_dir() or not any(path.glob("*.csv")):
        message = f"reference data not found at {path} (set TXMON_DATA_DIR)"
        if TestSuite.from_env().ci:
            pytest.fail(message)
        pytest.skip(message)
    return path


def pivot(path: Path, day: str = DAY) -> pd.DataFrame:
    """The CSV's per-minute, per-status counts with pandas alone, empty minutes as 0."""
    df = pd.read_csv(path)
    df["minute"] = pd.to_datetime(day + " " + df["time"].str.replace("h ", ":"), utc=True)
    table = df.pivot_table(index="minute", columns="status", values="F1", aggfunc="sum",
                           fill_value=0)
    minutes = pd.date_range(table.index.min(), table.index.max(), freq="min")
    return table.reindex(minutes, fill_value=0).reindex(columns=list(STATUSES), fill_value=0)


@dataclasses.dataclass(frozen=True)
class Slice:
    """Minutes `first`..`last` ("HHh MM") of a reference file, replayed at `speed`: a
    fault test needs records flowing when its fault lands, not the whole day, and every
    transaction a test replays is counted twice (disturbed and undisturbed) on a machine
    the whole suite shares."""

    source: str
    first: str
    last: str
    speed: str = ""

    def write(self, shared: Path, into: Path) -> Path:
        """The slice in the reference file's own format, under `into`."""
        rows = pd.read_csv(shared / self.source)
        path = into / f"{Path(self.source).stem}-{self.first[:2]}-{self.last[:2]}.csv"
        rows[(rows["time"] >= self.first) & (rows["time"] <= self.last)].to_csv(path, index=False)
        return path

    def __str__(self) -> str:
        at = f" at --speed {self.speed}" if self.speed else ""
        return f"{self.source} {self.first}-{self.last}{at}"


#: The afternoon with the day's incidents (failed and denied from 16h14): an hour of
#: warm-up, then minutes that alert. Four hours in 48 s of wall time: the fault lands
#: while records flow, at a quarter of the whole day's work.
AFTERNOON = Slice("transactions_2.csv", "15h 00", "18h 59", speed="300")


@dataclasses.dataclass
class Tally:
    """How a run's records compare with the truth."""

    expected: int = 0  # transactions (or records) that should be there
    lost: int = 0
    double_counted: int = 0
    missing_ids: int = 0  # windows/alerts absent
    extra_ids: int = 0  # windows/alerts that should not exist
    conflicting: int = 0  # one id emitted with two different contents
    reemitted: int = 0  # one id emitted again with identical content (harmless)
    examples: list = dataclasses.field(default_factory=list, repr=False)

    def __str__(self) -> str:
        base = repr(self)
        return base + (f"; e.g. {'; '.join(self.examples[:4])}" if self.examples else "")

    @property
    def duplicated(self) -> int:
        return self.extra_ids + self.conflicting

    def clean(self) -> bool:
        return not (self.lost or self.double_counted or self.missing_ids or self.duplicated)


def by_id(records) -> tuple[dict, int, int]:
    """(records by id, re-emissions with the same content, re-emissions that differ)."""
    out, same, differ = {}, 0, 0
    for r in records:
        if r.id in out:
            if msgspec.to_builtins(out[r.id]) == msgspec.to_builtins(r):
                same += 1
            else:
                differ += 1
        out[r.id] = r
    return out, same, differ


def tally_windows(windows: list[WindowCount], truth: pd.DataFrame) -> Tally:
    """Every transaction of the truth in its minute and status: count what is missing and
    what is there twice; every minute once."""
    got, same, differ = by_id(windows)
    t = Tally(expected=int(truth.to_numpy().sum()), reemitted=same, conflicting=differ)
    first, last = truth.index[0], truth.index[-1]
    seen = set()
    for w in got.values():
        start = pd.Timestamp(w.start).tz_convert("UTC")
        if start < first or start > last:
            continue
        seen.add(start)
        want = truth.loc[start]
        for s in STATUSES:
            diff = w.counts.get(s, 0) - int(want[s])
            t.lost += max(0, -diff)
            t.double_counted += max(0, diff)
    for start in truth.index:
        if start not in seen:
            t.missing_ids += 1
            t.lost += int(truth.loc[start].sum())
    return t


def tally_records(got_records, want_records) -> Tally:
    """Records against a reference run's, by id and content (alerts, windows)."""
    got, same, differ = by_id(got_records)
    want, _, _ = by_id(want_records)
    t = Tally(expected=len(want), reemitted=same, conflicting=differ)
    t.missing_ids = len(want.keys() - got.keys())
    t.extra_ids = len(got.keys() - want.keys())
    for i in sorted(got.keys() & want.keys()):
        a, b = msgspec.to_builtins(got[i]), msgspec.to_builtins(want[i])
        if a != b:
            t.conflicting += 1
            fields = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
            t.examples.append(f"{i}: {str(fields)[:300]} (got, undisturbed)")
    t.lost = t.missing_ids
    return t


class WindowWatch(threading.Thread):
    """Counts the distinct window ids on a topic as they arrive, so a kill can be aimed at
    a point in the stream without re-reading the topic each time."""

    def __init__(self, settings: KafkaSettings, topic: str):
        super().__init__(daemon=True)
        self.settings, self.topic = settings, topic
        self.ids: set[str] = set()
        self.arrivals: list[float] = []  # monotonic time of each new id
        self.records = 0
        self.stop_event = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        # The worker creates its output topics at start: follow waits for them.
        decoder = msgspec.json.Decoder(WindowCount)
        for batch in follow(self.settings, [self.topic], "watch", stop=self.stop_event):
            for msg in batch:
                if msg.value() is None:
                    continue
                with self.changed:
                    window_id = decoder.decode(msg.value()).id
                    if window_id not in self.ids:
                        self.ids.add(window_id)
                        self.arrivals.append(time.monotonic())
                    self.records += 1
                    self.changed.notify_all()

    def wait_for(self, count: int, timeout: float, alive=lambda: True) -> int:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.ids) < count:
                assert time.monotonic() < deadline, f"only {len(self.ids)} windows of {count}"
                assert alive(), "worker died"
                self.changed.wait(0.2)
            return len(self.ids)

    def count(self) -> int:
        with self.changed:
            return len(self.ids)

    def longest_pause(self, since: float) -> float:
        """The longest wait for a new window from `since` on: how long the output
        stalled while a fault was being recovered from."""
        with self.changed:
            times = [since, *(t for t in self.arrivals if t > since)]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(10)


def counter_summary(counter: Counter) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))


@dataclasses.dataclass
class ReplayOutcome:
    """A replay disturbed by a fault, compared with the CSV and an undisturbed worker."""

    produced: dict
    want: dict
    counts: Tally
    windows: Tally
    alerts: Tally
    dead: list
    fault_s: float
    #: Longest pause in the disturbed worker's window output after the fault began.
    recover_s: float = 0.0

    def clean(self) -> bool:
        return (self.produced == self.want and self.counts.clean() and self.windows.clean()
                and self.alerts.clean() and not self.dead)

    def figures(self) -> dict[str, int]:
        """The reliability table's columns for this run (support.reliability.record)."""
        return {
            "records": self.counts.expected, "windows": self.windows.expected,
            "alerts": self.alerts.expected,
            "lost": self.counts.lost + self.windows.lost + self.alerts.lost,
            "double_counted": self.counts.double_counted,
            "duplicated": self.windows.duplicated + self.alerts.duplicated,
            "reemitted": self.windows.reemitted + self.alerts.reemitted,
            "recover_s": round(self.recover_s, 1),
        }

    def record(self, test: str, *, order: int, fault: str, started: float, notes: str,
               passed: str = "equal to the CSV and to an undisturbed run") -> None:
        """This run's row of docs/reliability.md: one trial, one fault."""
        from support.reliability import record

        record(test, order=order, fault=fault, trials=1, crashes=1, **self.figures(),
               outcome=passed if self.clean() else "FAILED: differs",
               seconds=round(time.monotonic() - started), notes=notes)

    def check(self) -> None:
        assert self.produced == self.want, "the replay's own totals differ from the file"
        assert self.counts.clean(), self.counts
        assert self.windows.clean(), f"windows differ from an undisturbed run: {self.windows}"
        assert self.alerts.clean(), f"alerts differ from an undisturbed run: {self.alerts}"
        # Each minute and alert is committed once, with the merge state that made it.
        assert self.windows.reemitted == self.alerts.reemitted == 0, (
            f"re-emitted: windows {self.windows}, alerts {self.alerts}")
        assert not self.dead, f"{len(self.dead)} dead letters, e.g. {self.dead[0]}"


def replay_through(fault, settings: KafkaSettings, names: Topics, source: Path, tmp_path: Path,
                   *, speed: str = "600", after_windows: int = 10,
                   worker_env: dict | None = None, workers: int = 1,
                   app_id: str | None = None) -> ReplayOutcome:
    """Replay `source` into `workers` running workers of one group, call
    `fault(workers, start)` once they have closed `after_windows` windows (the replay still
    sending; `start(name)` starts one more worker of the group), let everything finish,
    then run an undisturbed worker over the same transactions and compare: counts with
    the CSV, windows and alerts with the undisturbed run. `app_id`: the disturbed
    group's, when the test must know its Faust topics in advance."""
    import json
    import subprocess

    from support.processor import (
        TXMON,
        Worker,
        processor_env,
        read_alerts,
        read_dead,
        read_windows,
        wait_ready,
    )

    truth = pivot(source)
    env = pipeline_env(settings, names)
    extra = worker_env or {}
    group = processor_env(env, TXMON_APP_ID=app_id or slug("victim"), **extra)
    running = [Worker(group, tmp_path, f"victim-{i}").start() for i in range(workers)]
    # Started alongside, the replay could end before the fault it is there to carry
    # (CI @98a03dd: three 60 s replays finished while their workers still started).
    wait_ready(running)

    def start(name: str) -> Worker:
        running.append(Worker(group, tmp_path, name).start())
        return running[-1]

    def worker_alive() -> bool:
        return any(w.alive() for w in running)
    report = tmp_path / "replay.json"
    with open(tmp_path / "replay.log", "wb") as log:
        feeder = subprocess.Popen([TXMON, "replay", str(source), "--speed", speed,
                                   "--no-progress", "--report", str(report)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
    calm = None
    watch = WindowWatch(settings, names.window_counts)
    watch.start()
    try:
        _wait_for(watch, after_windows, running[0], 300)
        assert feeder.poll() is None, "the replay ended before the fault"
        t = time.monotonic()
        fault(list(running), start)
        fault_s = time.monotonic() - t
        assert feeder.wait(300) == 0, (tmp_path / "replay.log").read_text()[-2000:]
        assert worker_alive(), "every worker died:\n" + "\n".join(w.tail() for w in running)
        calm_names = fresh_outputs(names, "calm")
        calm = Worker(processor_env(pipeline_env(settings, calm_names),
                                    TXMON_APP_ID=slug("calm"), **extra), tmp_path, "calm").start()
        _wait_for(watch, len(truth), running[-1], 600)
        recover_s = watch.longest_pause(t)
        _wait_windows(settings, calm_names.window_counts, len(truth), calm, 600)
        time.sleep(2)
        windows = read_windows(settings, names.window_counts)
        alerts = read_alerts(settings, names.alerts)
        dead = read_dead(settings, names.dead_letter)
        calm_windows = read_windows(settings, calm_names.window_counts)
        calm_alerts = read_alerts(settings, calm_names.alerts)
    finally:
        watch.stop()
        feeder.kill()
        for w in running:
            w.stop()
        if calm is not None:
            calm.stop()
    last = max(truth.index)
    in_day = [w for w in windows if pd.Timestamp(w.start) <= last]
    calm_in_day = [w for w in calm_windows if pd.Timestamp(w.start) <= last]
    end = max(w.start for w in calm_in_day)
    return ReplayOutcome(
        produced={s: n for s, n in json.loads(report.read_text())["totals"].items() if n},
        want={s: int(v) for s, v in truth.sum().items() if v},
        counts=tally_windows(windows, truth), windows=tally_records(in_day, calm_in_day),
        alerts=tally_records([a for a in alerts if a.window_start <= end],
                             [a for a in calm_alerts if a.window_start <= end]),
        dead=dead, fault_s=fault_s, recover_s=recover_s)


def _wait_windows(settings: KafkaSettings, topic: str, count: int, worker, timeout: float):
    watch = WindowWatch(settings, topic)
    watch.start()
    try:
        _wait_for(watch, count, worker, timeout)
    finally:
        watch.stop()


def _wait_for(watch: WindowWatch, count: int, worker, timeout: float) -> None:
    try:
        watch.wait_for(count, timeout, worker.alive)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.tail()}") from None
