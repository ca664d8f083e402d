"""Running the real worker (`txmon process`) in tests, and reading what it produced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec

from support.kafka import consume_all
from txmon.contracts import Alert, DeadLetter, WindowCount
from txmon.settings import KafkaSettings

TXMON = str(Path(sys.executable).with_name("txmon"))


def processor_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    """Test timings: a short idle timeout so the last minute closes quickly."""
    env = dict(base)
    env.setdefault("TXMON_APP_ID", f"txmon-test-{uuid.uuid4().hex[:8]}")
    env.setdefault("TXMON_IDLE_TIMEOUT_SECONDS", "3")
    env.setdefault("TXMON_MODEL_PATH", "/nonexistent/model.joblib")
    env.update(extra)
    return env


class Worker:
    """One `txmon process` subprocess with its own data dir and log (the benchmarks'
    Worker adds its metrics and memory). `metrics_port` 0: no metrics server."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str = "worker",
                 metrics_port: int = 0):
        self.metrics_port = metrics_port
        self.env = dict(env)
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env["TXMON_PROCESSOR_DATA_DIR"] = str(self.dir / "data")
        self.log = self.dir / "worker.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_from = 0  # where the latest start's lines begin: the log spans restarts

    def start(self) -> Worker:
        self.starts += 1
        self.log_from = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [TXMON, "process", "--metrics-port", str(self.metrics_port)], env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def logged(self) -> str:
        """Its log since its latest start."""
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as f:
            f.seek(self.log_from)
            return f.read().decode(errors="replace")

    def wait_logged(self, text: str, timeout: float = 120.0) -> None:
        """Until its latest start logged `text`, failing with the log if it dies or the
        time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.logged():
            assert self.alive() and time.monotonic() < deadline, self.tail()
            time.sleep(0.2)

    def wait_assigned(self, timeout: float = 120.0) -> None:
        """Until its counting consumer owns partitions (its log says `assigned {...}`)."""
        self.wait_logged("INFO] assigned {", timeout)

    def merging(self) -> bool:
        """Whether its merge stage owns the partials partition (it logs where it resumes)."""
        return "merging from partial" in self.logged()


def wait_ready(workers: list[Worker], timeout: float = 120.0) -> None:
    """Until every worker counts and one of them merges: on a loaded machine a worker's
    start can outlast a fast replay, whose records then all wait for it."""
    for w in workers:
        w.wait_assigned(timeout)
    deadline = time.monotonic() + timeout
    while not any(w.merging() for w in workers):
        assert any(w.alive() for w in workers) and time.monotonic() < deadline, (
            "no worker merges:\n" + "\n".join(w.tail() for w in workers))
        time.sleep(0.2)

    def tail(self, n: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def read_windows(settings: KafkaSettings, topic: str) -> list[WindowCount]:
    return [msgspec.json.decode(r.value, type=WindowCount) for r in consume_all(settings, topic)]


def read_alerts(settings: KafkaSettings, topic: str) -> list[Alert]:
    return [msgspec.json.decode(r.value, type=Alert) for r in consume_all(settings, topic)]


def read_dead(settings: KafkaSettings, topic: str) -> list[DeadLetter]:
    return [msgspec.json.decode(r.value, type=DeadLetter) for r in consume_all(settings, topic)]


def wait_for_windows(settings: KafkaSettings, topic: str, last_id: str, workers: list[Worker],
                     timeout: float = 180.0) -> list[WindowCount]:
    """Window records until the minute `last_id` is among them (or fail with the logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        windows = read_windows(settings, topic)
        if any(w.id == last_id for w in windows):
            return windows
        for w in workers:
            assert w.alive() or w.proc is None, f"worker died:\n{w.tail()}"
        time.sleep(1.0)
    logs = "\n---\n".join(w.tail() for w in workers)
    raise AssertionError(f"minute {last_id} never closed; {len(windows)} windows\n{logs}")


def unique_by_id(records, what: str) -> dict:
    """Records by id; a re-emitted record (same id) must be identical, or it is a bug."""
    out = {}
    for r in records:
        if r.id in out:
            assert msgspec.to_builtins(out[r.id]) == msgspec.to_builtins(r), (
                f"{what} {r.id} re-emitted with different content")
        out[r.id] = r
    return out


def duplicates(records) -> int:
    return sum(n - 1 for n in Counter(r.id for r in records).values())
