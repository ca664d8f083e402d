"""What the benchmarks share: a broker, fresh topics, preloading, running `txmon process`,
watching its output, reading its metrics and memory, and the results format.

Every benchmark runs against a real broker (KAFKA_BOOTSTRAP_SERVERS, else a private
LocalKafka on free ports, see bench/produce.py) and the real `txmon` subprocesses, on
topics and a consumer group of its own, so runs never see each other's data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import msgspec
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # support.processor: one worker subprocess helper
sys.path.insert(0, str(BENCH))

from produce import Broker  # noqa: E402,F401  (re-exported: one broker helper for all)
from support import processor as processor_support  # noqa: E402

from producer.publish import Publisher  # noqa: E402
from producer.simulate import Scenario, generate  # noqa: E402
from txmon.contracts import STATUSES, Topics, WindowCount  # noqa: E402
from txmon.contracts import metrics as m  # noqa: E402
from txmon.contracts.topics import ENV_PREFIX  # noqa: E402
from txmon.kafka.admin import ensure_topics, pipeline_topics  # noqa: E402
from txmon.settings import KafkaSettings  # noqa: E402

TXMON = str(Path(sys.executable).with_name("txmon"))
WINDOW_MS = 60_000
#: How long a background reader may take to close on a loaded machine.
STOP_WAIT_S = 60


def settings_for(bootstrap: str) -> KafkaSettings:
    return KafkaSettings.from_env().model_copy(update={"bootstrap": bootstrap})


def fresh_topics(settings: KafkaSettings, prefix: str, partitions: int = 3) -> Topics:
    """The pipeline's topics under names of their own, transactions with `partitions`."""
    slug = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    names = Topics(**{f: f"{slug}-{f.replace('_', '-')}" for f in Topics.model_fields})
    specs = pipeline_topics(names)
    specs[0] = dataclasses.replace(specs[0], partitions=partitions)
    assert specs[0].name == names.transactions
    ensure_topics(settings, specs)
    return names


def worker_env(bootstrap: str, names: Topics, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    for f in Topics.model_fields:
        env[ENV_PREFIX + f.upper()] = getattr(names, f)
    env["TXMON_APP_ID"] = names.transactions.removesuffix("-transactions")
    env.setdefault("TXMON_MODEL_PATH", "/nonexistent/model.joblib")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    from devstack.processes import free_port as fp

    return fp()


class Worker(processor_support.Worker):
    """The tests' worker subprocess, with a metrics port to read its count from, and its
    memory."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str = "worker"):
        super().__init__(env, workdir, name, metrics_port=free_port())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def counted(self) -> float | None:
        """txmon_processor_events_total{outcome="counted"}, None until it answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        match = re.search(r'^' + m.PROCESSOR_EVENTS_TOTAL + r'\{outcome="counted"\} (\S+)$',
                          text, re.M)
        return float(match.group(1)) if match else 0.0

    def memory(self) -> dict[str, int]:
        """VmHWM (peak RSS) and VmRSS of the worker process, in bytes."""
        out = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) * 1024
        except OSError:
            pass
        return out

    def assigned(self) -> int:
        """How many times the worker's counting stage was handed partitions."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return len(re.findall(r"processor\.counting.*assigned|assigned \{", text))


class Workdir:
    """A temporary directory for worker logs, kept (and named) if the run fails."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="txmon-bench-"))
        return self.path

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print(f"logs kept in {self.path}", file=sys.stderr)


def bench_scenario(n: int, minutes: int = 30, seed: int = 1, terminals: int = 0) -> Scenario:
    """n events over about `minutes` of event time, in a past day's busy afternoon;
    with `terminals`, the same events, each from one of a fleet that size."""
    from datetime import UTC, datetime

    from producer.shape import shape_at
    from producer.terminals import TerminalPopulation

    start = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    level = float(shape_at(np.array([start.timestamp() + minutes * 30]))[0])
    return Scenario(start, rate=n / (minutes * 60) / level * 1.2, seed=seed,
                    terminals=TerminalPopulation(terminals) if terminals else None)


def preload(settings: KafkaSettings, topic: str, scenario: Scenario, n: int,
            desc: str = "preload", whole_minutes: bool = True) -> dict:
    """Write the scenario's first n events, cut at the last whole minute when asked (so
    the last window ends just after the last event); returns their counts per minute
    and status ("expected"), how many were written ("events") and the newest event
    time ("max_ms")."""
    batches = list(generate(scenario, n))
    if whole_minutes and batches:
        cut = int(batches[-1].ts_ms[-1]) // WINDOW_MS * WINDOW_MS
        trimmed = []
        for b in batches:
            keep = int(np.searchsorted(b.ts_ms, cut))
            if keep:
                trimmed.append(b.head(keep))
            if keep < len(b):
                break
        batches = trimmed or batches
    total = sum(len(b) for b in batches)
    expected: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(len(STATUSES), np.int64))
    publisher = Publisher(settings, topic)
    bar = tqdm(total=total, unit="ev", unit_scale=True, desc=f"{desc:<10}", leave=False,
               mininterval=1)
    for batch in batches:
        minutes = batch.ts_ms // WINDOW_MS * WINDOW_MS
        for minute in np.unique(minutes):
            sel = minutes == minute
            expected[int(minute)] += np.bincount(batch.status[sel], minlength=len(STATUSES))
        keys, values = batch.encode()
        publisher.send(keys, values)
        bar.update(len(batch))
    failed = publisher.close(120)
    bar.close()
    if failed or publisher.sent != total:
        raise SystemExit(f"preload: sent {publisher.sent} of {total}, {failed} failed")
    return {"expected": {k: v.tolist() for k, v in sorted(expected.items())},
            "events": total, "max_ms": int(batches[-1].ts_ms[-1])}


def minute_id(ms: int) -> str:
    from txmon.contracts.minutes import minute_id as mid

    return mid(ms)


class TopicWatcher(threading.Thread):
    """Reads a topic from its start in the background; keeps each record with its
    Kafka timestamp and the time it arrived here."""

    def __init__(self, settings: KafkaSettings, topic: str):
        super().__init__(daemon=True, name=f"watch-{topic}")
        self.settings, self.topic = settings, topic
        self.records: list[tuple[bytes, float, float]] = []  # value, record ts (s), seen at
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        from txmon.kafka.read import follow

        for batch in follow(self.settings, [self.topic], "bench-watch", stop=self.stop_event,
                            **{"fetch.wait.max.ms": 50}):
            seen = time.time()
            with self.lock:
                self.records += [(msg.value(), msg.timestamp()[1] / 1000, seen)
                                 for msg in batch if msg.value() is not None]

    def snapshot(self) -> list[tuple[bytes, float, float]]:
        with self.lock:
            return list(self.records)

    def windows(self) -> dict[str, tuple[WindowCount, float, float]]:
        out = {}
        for value, ts, seen in self.snapshot():
            w = msgspec.json.decode(value, type=WindowCount)
            out.setdefault(w.id, (w, ts, seen))
        return out

    def stop(self) -> None:
        """Until the reader is closed: a librdkafka client that a daemon thread still
        holds when the interpreter exits can crash it."""
        self.stop_event.set()
        self.join(STOP_WAIT_S)
        if self.is_alive():
            raise RuntimeError(f"the reader of {self.topic} did not stop in {STOP_WAIT_S} s")


def compare_windows(windows: dict[str, tuple[WindowCount, float, float]],
                    expected: dict[int, list[int]]) -> int:
    """How many expected minutes are missing from or differ in the window counts."""
    wrong = 0
    for minute, counts in expected.items():
        got = windows.get(minute_id(minute))
        if got is None or [got[0].counts.get(s, 0) for s in STATUSES] != counts:
            wrong += 1
    return wrong


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "memory": mem,
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(), "kernel": platform.release()}


def row(bench: str, metric: str, value: float, unit: str, baseline: str | None = None,
        baseline_value: float | None = None, target: str = "", met: bool | None = None,
        note: str = "") -> dict:
    ratio = (value / baseline_value) if baseline_value and value is not None else None
    return {"bench": bench, "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio,
            "target": target, "met": met, "note": note}


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_rows(rows: list[dict]) -> None:
    print(f"\n{'benchmark':<14}{'metric':<38}{'value':>16}{'baseline':>16}{'ratio':>8}"
          f"  {'target':<24}met")
    for r in rows:
        ratio = f"{r['ratio']:.0%}" if r["ratio"] is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        print(f"{r['bench']:<14}{r['metric']:<38}{fmt(r['value'], r['unit']):>16}"
              f"{fmt(r['baseline_value'], r['unit']):>16}{ratio:>8}  {r['target']:<24}{met}")
        if r["note"]:
            print(f"{'':<14}  {r['note']}")


def write_json(path: Path | None, rows: list[dict], extra: dict | None = None) -> None:
    if path is not None:
        path.write_text(json.dumps({"rows": rows, "machine": machine(), **(extra or {})},
                                   indent=1) + "\n")
