"""One measured run of the real worker(s) over N events, and the bare floor beside it.

How a processor run is timed (throughput, memory and scale-out use it):

- the worker's own counter `txmon_processor_events_total{outcome="counted"}` is scraped
  every 0.5 s from its metrics port: `t_first` is when it first moves (the first batch is
  counted: Python start-up, Faust start-up and the group join are excluded), `t_counted`
  when it reaches N;
- a consumer in this process watches the window-counts topic: `t_closed` is when the
  last minute's record arrives. Every earlier minute closes by the watermark as the data
  flows; the last one can only close by the clock (no newer event will come): after the
  idle timeout (TXMON_IDLE_TIMEOUT_SECONDS, 1 s here) wall-clock silence advances the
  watermark, which must still cover the gap from the newest event to the window's end
  plus the allowed lateness (10 s). The events are cut at a whole minute so that gap is
  small, and `clock_wait` = max(idle timeout, end + lateness - newest event) is
  subtracted: close-all time = t_closed - t_first - clock_wait. The tick (1 s) that
  notices the silence and the merge stage's latency stay in: the figure is conservative;
- every closed minute is compared with the per-minute, per-status counts of the events
  written: a fast run that counts wrong is reported as wrong.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
from common import (
    ROOT,
    TopicWatcher,
    Worker,
    bench_scenario,
    compare_windows,
    fresh_topics,
    minute_id,
    preload,
    settings_for,
    worker_env,
)
from tqdm import tqdm

from processor.counting import counting_fetch
from txmon.contracts import Transaction
from txmon.settings import ProcessorSettings

IDLE_TIMEOUT_S = 1.0
#: Scraping the worker's /metrics costs it CPU (about 10 % at 10 Hz on a loaded box).
SCRAPE_S = 0.5
LATENESS_MS = int(ProcessorSettings.from_env().lateness_s * 1000)
WINDOW_MS = 60_000
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"


def _assignments(worker: Worker) -> dict[int, int] | None:
    """The partitions of the worker's latest assignment, from its log."""
    text = worker.log.read_text(errors="replace") if worker.log.exists() else ""
    found = re.findall(r"assigned (\{[^}]*\})", text)
    if not found:
        return None
    return {int(k): 1 for k in re.findall(r"(\d+):", found[-1])}


class CounterSampler(threading.Thread):
    """Scrapes the workers' counted totals every SCRAPE_S from their start, in the
    background, so the first and last counts are seen even while this process is busy
    writing the events (start_first)."""

    def __init__(self, procs: list[Worker]):
        super().__init__(daemon=True, name="counter-sampler")
        self.procs = procs
        self.samples: list[tuple[float, float]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(SCRAPE_S):
            total = sum(c or 0 for c in (w.counted() for w in self.procs))
            self.samples.append((time.monotonic(), total))

    def total(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def first_at(self, at_least: float) -> float | None:
        return next((t for t, total in self.samples if total >= at_least), None)

    def last_before(self, at_least: float) -> float | None:
        """The last sample still short of `at_least`: the count began after it, so
        timing from it never overstates a rate, even when a small run is counted
        within one scrape interval."""
        return next((t for t, total in reversed(self.samples) if total < at_least), None)

    def stop(self) -> None:
        self.stop_event.set()
        self.join(5)


def _shared(procs: list[Worker], partitions: int) -> bool:
    """Every worker holds some partitions, and together exactly all of them."""
    got = [_assignments(w) for w in procs]
    return all(got) and sum(len(g) for g in got) == partitions and \
        len(set().union(*got)) == partitions


def _wait_settled(procs: list[Worker], quiet_s: float = 5.0, timeout: float = 180.0) -> float:
    """Seconds until every worker's Faust side (the merge stage's group) is ready and no
    rebalance was logged for `quiet_s`: a second worker joining rebalances that group
    too, and the merge stalls while it does."""
    start = time.monotonic()
    sizes: list[int] = []
    quiet_since = start
    while time.monotonic() - start < timeout:
        texts = [w.log.read_text(errors="replace") if w.log.exists() else "" for w in procs]
        ready = all("[^Worker]: Ready" in t for t in texts)
        marks = [len(re.findall(r"rebalanc|Revoking|Setting newly assigned", t)) for t in texts]
        if marks != sizes:
            sizes, quiet_since = marks, time.monotonic()
        if ready and time.monotonic() - quiet_since >= quiet_s:
            return time.monotonic() - start
        time.sleep(0.5)
    return time.monotonic() - start


def run_processor(bootstrap: str, n: int, workdir: Path, *, partitions: int = 3,
                  workers: int = 1, start_first: bool = False, profile: Path | None = None,
                  label: str = "processor", timeout: float = 900.0,
                  terminals: int = 0, guarantee: str | None = None) -> dict:
    """Run `workers` real `txmon process` over n events; see the module docstring.

    start_first: start the workers on the empty topic and write the events once every
    partition is assigned (so two workers share the work from the first event instead
    of rebalancing mid-run); otherwise the events are preloaded before the start.
    profile: record the first worker with py-spy (raw collapsed stacks) into this file.
    terminals: the events carry terminal ids from a fleet that size (0: none).
    guarantee: TXMON_PROCESSING_GUARANTEE for the workers (None: the default).
    """
    settings = settings_for(bootstrap)
    names = fresh_topics(settings, label, partitions)
    scenario = bench_scenario(n, terminals=terminals)
    env = worker_env(bootstrap, names, TXMON_IDLE_TIMEOUT_SECONDS=str(IDLE_TIMEOUT_S),
                     **({"TXMON_PROCESSING_GUARANTEE": guarantee} if guarantee else {}))
    load = None
    if not start_first:
        load = preload(settings, names.transactions, scenario, n)
    watcher = TopicWatcher(settings, names.window_counts)
    watcher.start()
    procs = [Worker(env, workdir, f"{label}-{i}") for i in range(workers)]
    started = time.monotonic()
    for w in procs:
        w.start()
    sampler = CounterSampler(procs)
    sampler.start()
    spy = None
    settled = None
    try:
        if start_first:
            deadline = time.monotonic() + 120
            while True:
                got = [_assignments(w) for w in procs]
                if all(got) and sum(len(g) for g in got) == partitions and \
                        len(set().union(*got)) == partitions:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("workers never shared the partitions:\n"
                                     + "\n".join(w.tail() for w in procs))
                for w in procs:
                    if not w.alive():
                        raise SystemExit(f"worker died:\n{w.tail()}")
                time.sleep(0.2)
            settled = _wait_settled(procs)
            load = preload(settings, names.transactions, scenario, n, desc="produce")
        expected, n = load["expected"], load["events"]
        last_minute = minute_id(max(expected))
        t_first = t_counted = t_closed = t_shared = None
        bar = tqdm(total=n, unit="ev", unit_scale=True, desc=f"{label:<10}", leave=False,
                   mininterval=1)
        shown = 0
        deadline = time.monotonic() + timeout
        while t_closed is None:
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(f"{label}: minute {last_minute} never closed\n"
                                 + "\n".join(w.tail() for w in procs))
            for w in procs:
                if not w.alive():
                    raise SystemExit(f"{label}: worker died:\n{w.tail()}")
            if t_shared is None and _shared(procs, partitions):
                t_shared = now
            if t_counted is None:
                total = sampler.total()
                if total > 0 and t_first is None:
                    t_first = now
                    if profile is not None:  # the counting only, not the start-up
                        spy = subprocess.Popen(
                            [str(PY_SPY), "record", "--pid", str(procs[0].pid), "--format",
                             "raw", "--rate", "100", "--nonblocking", "-o", str(profile)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if total >= n:
                    t_counted = now
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                bar.update(int(total) - shown)
                shown = int(total)
            if last_minute in {w for w in watcher.windows()}:
                t_closed = time.monotonic()
            time.sleep(0.1)
        bar.close()
        windows = watcher.windows()
        mem = [w.memory() for w in procs]
        assignments = [w.assigned() for w in procs]
    finally:
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        sampler.stop()
        for w in procs:
            w.stop()
        watcher.stop()
    wrong = compare_windows(windows, expected)
    # From the sampler: a count seen while the events were still being written counts.
    t_first = sampler.last_before(1) or sampler.first_at(1) or t_first
    t_counted = sampler.first_at(n) or t_counted
    counted_s = t_counted - t_first
    # Steady state: from the moment every worker holds its share of the partitions
    # (after the rebalance a second worker's arrival causes) to the last event.
    t_from = max(t_shared or t_first, t_first)
    before = [total for t, total in sampler.samples if t <= t_from]
    done_then = before[-1] if before else 0.0
    steady = (n - done_then) / (t_counted - t_from) if t_counted > t_from and \
        done_then < n else None
    # The last minute closes by the clock: once the worker has been idle for the idle
    # timeout, silence advances its watermark, which must still cover the gap from the
    # newest event to the window's end plus the allowed lateness.
    clock_wait = max(IDLE_TIMEOUT_S,
                     (max(expected) + WINDOW_MS + LATENESS_MS - load["max_ms"]) / 1000)
    close_s = max(t_closed - t_first - clock_wait, 1e-9)
    return {
        "settle_s": settled if start_first else None,
        "clock_wait_s": clock_wait,
        "events": n, "workers": workers, "partitions": partitions,
        "minutes": len(expected), "wrong_minutes": wrong,
        "counting_s": counted_s, "steady_rate": steady, "counted_before_shared": done_then,
        "counting_rate": n / counted_s if counted_s > 0 else None,
        "close_all_s": close_s, "close_all_rate": n / close_s,
        "startup_s": t_first - started,
        "peak_rss": [x.get("VmHWM", 0) for x in mem], "rss": [x.get("VmRSS", 0) for x in mem],
        "assignments": assignments,
    }


def _bare_loop(bootstrap: str, n: int, partitions: int, batch: int, count, label: str,
               config: dict | None = None) -> dict:
    """Consume n preloaded events with a bare confluent-kafka loop, `count(msgs, counts)`
    per batch; timed from the first batch received to the last event counted."""
    from confluent_kafka import TopicPartition

    from txmon.kafka.read import reader

    settings = settings_for(bootstrap)
    names = fresh_topics(settings, label, partitions)
    load = preload(settings, names.transactions, bench_scenario(n), n)
    n = load["events"]
    consumer = reader(settings, f"{names.transactions}-{label}", **(config or {}))
    consumer.assign([TopicPartition(names.transactions, p, 0) for p in range(partitions)])
    counts: Counter = Counter()
    seen = 0
    t0 = None
    bar = tqdm(total=n, unit="ev", unit_scale=True, desc=f"{label:<10}", leave=False,
               mininterval=1)
    try:
        while seen < n:
            msgs = consumer.consume(batch, timeout=1.0)
            if t0 is None and msgs:
                t0 = time.perf_counter()
            count(msgs, counts)
            seen += len(msgs)
            bar.update(len(msgs))
        elapsed = time.perf_counter() - t0
    finally:
        bar.close()
        consumer.close()
    ok = sum(counts.values()) == n
    return {"events": n, "seconds": elapsed, "rate": n / elapsed, "ok": ok, "batch": batch}


def floor(bootstrap: str, n: int, partitions: int = 3, batch: int = 5000) -> dict:
    """The struct floor: decode into the `Transaction` struct (datetime parsed and
    validated), count per epoch minute and status. What the processor did per event
    before its fast path, without watermarks, dead letters or state."""
    decode = msgspec.json.Decoder(Transaction).decode

    def count(msgs, counts: Counter) -> None:
        for msg in msgs:
            tx = decode(msg.value())
            counts[(int(tx.timestamp.timestamp()) // 60, tx.status)] += 1

    return _bare_loop(bootstrap, n, partitions, batch, count, "floor")


def lean_floor(bootstrap: str, n: int, partitions: int = 3, batch: int = 10_000,
               worker_fetch: bool = False) -> dict:
    """The lean loop, the yardstick the processor is measured against: `consume(10000)`,
    msgspec-decode to a dict, count per minute prefix of the timestamp string and
    status. No validation at all: the least Python can do per event on this machine.

    With librdkafka's defaults it mostly waits on fetches (its CPU time is a fraction of
    its wall time); `worker_fetch` gives it the worker's consumer settings (prefetch and
    fetch back-off), so that only the Python work per event differs from the worker's."""
    decode = msgspec.json.decode

    def count(msgs, counts: Counter) -> None:
        for msg in msgs:
            d = decode(msg.value())
            counts[(d["timestamp"][:16], d["status"])] += 1

    config = counting_fetch(ProcessorSettings.from_env()) if worker_fetch else None
    return _bare_loop(bootstrap, n, partitions, batch, count,
                      "lean-tuned" if worker_fetch else "lean", config)


def summarise_profile(path: Path, top: int = 12) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) from py-spy's raw collapsed stacks."""
    self_n: Counter = Counter()
    incl_n: Counter = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += k
        self_n[frames[-1]] += k
        for f in set(frames):
            incl_n[f] += k
    if not total:
        return []
    return [(f, 100 * c / total, 100 * incl_n[f] / total) for f, c in self_n.most_common(top)]
