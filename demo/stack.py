"""`txmon demo up | down | status`: the whole pipeline on one machine, in real time.

`make demo` runs `up`: a fresh broker, a model trained on simulated clean days, the
worker, the API, the exporter, the webhook receiver, Prometheus and Alertmanager where
installed, then simulated transactions stamped with the wall clock and an injected
incident, while it prints each closed minute, the alerts and the notifications. It ends
by itself and leaves the services running; `make down` runs `down`.

Why some choices:

- Fresh state every run. A broker left from an earlier run holds that run's windows and
  committed offsets; the worker would fill the hours in between with empty minutes (an
  outage, rightly) and Alertmanager would remember the last notification. So the demo
  keeps everything (broker data, worker state, Prometheus, Alertmanager, logs, pids)
  under $TXMON_STATE_DIR/demo and starts it empty; nothing else there is touched.
- A constant, visible volume at any hour: the simulator shapes traffic by UTC time of
  day (at 03:00 it sends 0.2 % of the peak rate), so the peak rate is chosen to give
  DEMO_TPS transactions/s now. The detector judges volume against today's level, so a
  busier day than the training days is not an incident.
- A backfill: the detector judges nothing before it has seen LEVEL_MIN_MINUTES minutes of
  today's traffic, so the last DEMO_BACKFILL_MINUTES minutes are produced at full speed
  (event time in the past) before the real-time stream starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from txmon.config import state_dir
from txmon.errors import UserError
from txmon.settings import DemoSettings, ProcessorSettings

HOST = "127.0.0.1"
EXIT_DOWN = 3
#: Wall-clock seconds after the stream ends for its last minute to close (allowed
#: lateness 10 s, then the idle timeout) and be printed.
CLOSE_GRACE_S = 25.0
#: How much longer to wait, at most, for an alert or notification still on its way.
PENDING_WAIT_S = 60.0
POLL_S = 2.0
SERVICES = ("processor", "api", "exporter", "notify")
#: Faust's log line once the worker has joined its group and recovered its tables.
WORKER_READY = "[^Worker]: Ready"


@dataclass(frozen=True)
class DemoConfig:
    """Everything `make demo` can be told, from DEMO_* variables or flags."""

    seconds: float = 210.0
    forever: bool = False
    tps: float = 20.0
    rate: float | None = None
    incident: str = "denied:x4:2m30s@30s"
    backfill_minutes: int = 30
    train_days: int = 1
    monitoring: bool = True
    seed: int = 7

    @classmethod
    def from_env(cls) -> DemoConfig:
        """DEMO_* parsed by the settings model: a malformed one is a one-line error."""
        return cls(**vars(DemoSettings.from_env()))


# Paths, ports, processes -------------------------------------------------------------


def demo_home() -> Path:
    return state_dir() / "demo"


def _ports():
    from exporter.monitoring import Ports

    return Ports.from_env()


def _txmon(*args: str) -> list[str]:
    return [sys.executable, "-m", "txmon.cli", *args]


def _service_commands(ports) -> dict[str, tuple[list[str], int, str]]:
    """name -> (command, port, readiness path)."""
    return {
        "processor": (_txmon("process", "--metrics-port", str(ports.processor)),
                      ports.processor, "/metrics"),
        "api": (_txmon("api", "--host", HOST, "--port", str(ports.api)), ports.api, "/healthz"),
        "exporter": (_txmon("export", "--host", HOST, "--port", str(ports.exporter)),
                     ports.exporter, "/metrics"),
        "notify": (_txmon("notify", "--host", HOST, "--port", str(ports.notify)),
                   ports.notify, "/healthz"),
    }


def _daemon(name: str, command: list[str], port: int, path: str, home: Path, env: dict):
    from exporter.monitoring import Daemon

    class GroupDaemon(Daemon):
        """Stops the whole process group: a service may have children of its own."""

        def ready(self) -> bool:
            return True if not self.port else super().ready()

        def stop(self, timeout: float = 20.0) -> bool:
            pid = self.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
            stopped = super().stop(timeout)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            return stopped

    return GroupDaemon(name, command, port, path, home, env)


def _all_daemons(home: Path, ports, env: dict | None = None) -> dict:
    env = env or {}
    out = {name: _daemon(name, cmd, port, path, home, env)
           for name, (cmd, port, path) in _service_commands(ports).items()}
    out["producer"] = _daemon("producer", [], 0, "", home, env)
    return out


def _broker(home: Path):
    from txmon.broker.server import LocalKafka

    return LocalKafka(data_dir=home / "kafka")


def _external_bootstrap() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def _state(home: Path) -> dict:
    try:
        return json.loads((home / "demo.json").read_text())
    except (OSError, ValueError):
        return {}


def _port_free(port: int) -> bool:
    from txmon.broker.server import port_free

    return port_free(port)


def _monitoring_installed() -> bool:
    from exporter.monitoring import alertmanager_binary, prometheus_binary

    return bool(prometheus_binary() and alertmanager_binary())


def _needed_ports(cfg: DemoConfig, ports, kafka) -> list[tuple[str, int, str]]:
    needed = [
        ("processor metrics", ports.processor, "TXMON_PROCESSOR_METRICS_PORT"),
        ("api", ports.api, "TXMON_API_PORT"),
        ("exporter", ports.exporter, "TXMON_EXPORTER_PORT"),
        ("notify", ports.notify, "TXMON_NOTIFY_PORT"),
    ]
    if cfg.monitoring and _monitoring_installed():
        needed += [("prometheus", ports.prometheus, "TXMON_PROMETHEUS_PORT"),
                   ("alertmanager", ports.alertmanager, "TXMON_ALERTMANAGER_PORT")]
    if kafka is not None:
        needed += [("kafka", kafka.port, "TXMON_KAFKA_PORT"),
                   ("kafka controller", kafka.controller_port, "TXMON_KAFKA_CONTROLLER_PORT")]
    return needed


def _http_json(url: str, timeout: float = 3.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class Printer:
    """One writer for the threads that report (alerts, notifications, minutes)."""

    def __init__(self, started: float):
        self.started = started
        self.lock = threading.Lock()

    def __call__(self, tag: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        with self.lock:
            print(f"[{stamp} +{elapsed:5.0f}s] {tag:<8} {text}", flush=True)


def _follow_lines(stream, emit, tag: str, seen: list, stop: threading.Event) -> None:
    for raw in iter(stream.readline, ""):
        line = raw.rstrip()
        if line:
            seen.append((time.monotonic(), line))
            emit(tag, line)
        if stop.is_set():
            break


def _tail_file(path: Path, emit, tag: str, seen: list, stop: threading.Event,
               skip: tuple[str, ...] = ()) -> None:
    while not path.exists() and not stop.is_set():
        time.sleep(0.5)
    if stop.is_set():
        return
    with open(path, errors="replace") as fh:
        while not stop.is_set():
            line = fh.readline()
            if not line:
                time.sleep(0.5)
                continue
            line = line.rstrip()
            if line and not line.startswith(skip):
                seen.append((time.monotonic(), line))
                emit(tag, line)


def _minute_line(row: dict) -> str:
    from txmon.contracts import STATUSES

    counts = row["summary"]
    total = sum(counts.values())
    parts = "  ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES)
    return f"{row['minute']}Z  {total:>6} tx  {parts}" + ("  << ALERT" if row["alert"] else "")


def _live_rate(cfg: DemoConfig) -> float:
    """The peak rate that gives cfg.tps transactions/s in the middle of the demo."""
    if cfg.rate:
        return cfg.rate
    from producer.shape import shape_at

    middle = datetime.now(UTC) + timedelta(seconds=min(cfg.seconds, 3600) / 2)
    seconds = middle.hour * 3600 + middle.minute * 60 + middle.second
    return round(min(max(cfg.tps / float(shape_at(seconds)), cfg.tps), 20_000.0), 1)


# up -----------------------------------------------------------------------------------


def up(cfg: DemoConfig) -> int:
    try:
        return _up(cfg)
    except UserError as exc:
        if demo_home().exists() and any(demo_home().glob("*.pid")):
            raise UserError(f"{exc} (`make down` stops what had started)") from None
        raise


def _up(cfg: DemoConfig) -> int:
    import logging

    from txmon.broker.server import tail

    started = time.monotonic()
    say = Printer(started)
    logging.getLogger("txmon.broker.server").setLevel(logging.WARNING)  # we say it ourselves
    home = demo_home()
    ports = _ports()
    external = _external_bootstrap()
    kafka = None if external else _broker(home)

    running = [n for n, d in _all_daemons(home, ports).items() if d.pid() is not None]
    if running or (kafka is not None and kafka.pid() is not None):
        raise UserError(f"the demo is already running ({', '.join(running) or 'kafka'}); "
                        "`make down` (txmon demo down) stops it")
    taken = [f"{what} {port} (set {var})" for what, port, var in _needed_ports(cfg, ports, kafka)
             if not _port_free(port)]
    if taken:
        raise UserError(f"port(s) already in use on {HOST}: {'; '.join(taken)}. "
                        "Stop what holds them or choose other ports.")

    # A fresh demo: nothing outside `home` is touched (see the module docstring).
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    model = home / "model.joblib"
    env = {
        **os.environ,
        "TXMON_MODEL_PATH": str(model),
        "TXMON_PROCESSOR_DATA_DIR": str(home / "processor"),
        "PYTHONUNBUFFERED": "1",
    }
    rate = _live_rate(cfg)
    state = {"started_at": datetime.now(UTC).isoformat(), "broker": "external" if external
             else "demo", "rate": rate, "incident": cfg.incident}

    # The model trains while the broker starts (the machine has two cores).
    say("train", f"fitting the detector on {cfg.train_days} simulated clean day(s) "
        f"(log {home / 'train.log'})")
    with open(home / "train.log", "wb") as log:
        train = subprocess.Popen(
            _txmon("train", "--simulate-days", str(cfg.train_days), "--seed", "1",
                   "--out", str(model)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        if kafka is not None:
            say("kafka", f"starting the broker on {kafka.bootstrap} (data {kafka.data_dir})")
            result = kafka.up()
            bootstrap = result.bootstrap
            say("kafka", f"up at {bootstrap} in {result.seconds:.1f}s (pid {result.pid})")
        else:
            bootstrap = external
            say("kafka", f"using the broker at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
        state["bootstrap"] = bootstrap
        (home / "demo.json").write_text(json.dumps(state, indent=2) + "\n")
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        from txmon.config import KafkaSettings
        from txmon.contracts import topics
        from txmon.kafka.admin import ensure_topics, pipeline_topics

        with _patched_env(env):
            ensure_topics(KafkaSettings.from_env(), pipeline_topics(topics()))
            names = topics()

        # The services start while the model trains: the worker loads it when it appears,
        # and nothing reaches the worker before the backfill, after training.
        daemons = _all_daemons(home, ports, env)
        for name in SERVICES:
            t0 = time.monotonic()
            outcome = daemons[name].start()
            say(name, f"{outcome} {daemons[name].url} in {time.monotonic() - t0:.1f}s "
                f"(log {daemons[name].logfile})")

        monitoring = cfg.monitoring and _monitoring_installed()
        if monitoring:
            from exporter import monitoring as mon

            with _patched_env(env):
                for line in mon.up(ports, home / "monitoring"):
                    say("monitor", line)
        elif cfg.monitoring:
            say("monitor", "Prometheus/Alertmanager not installed: skipped "
                "(bash scripts/system-deps.sh installs them)")
        state["monitoring"] = monitoring
        (home / "demo.json").write_text(json.dumps(state, indent=2) + "\n")
        code = train.wait()
    except BaseException:
        train.kill()
        raise
    if code != 0:
        raise UserError(f"txmon train failed ({code}): "
                        + " | ".join(tail(home / "train.log", 3)))
    _wait_worker_ready(daemons["processor"], say)
    fitted = [line for line in tail(home / "train.log", 20) if "threshold" in line]
    say("train", f"model ready after {time.monotonic() - started:.0f}s"
        + (f": {fitted[-1].strip()}" if fitted else ""))

    stop = threading.Event()
    alerts_seen: list = []
    notes_seen: list = []
    follower = subprocess.Popen(_txmon("alerts", "--follow"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                env=env, start_new_session=True)
    threading.Thread(target=_follow_lines, args=(follower.stdout, say, "ALERT", alerts_seen,
                                                 stop), daemon=True).start()
    threading.Thread(target=_tail_file, args=(daemons["notify"].logfile, say, "NOTIFY",
                                              notes_seen, stop, ("txmon notify: listening",)),
                     daemon=True).start()
    try:
        return _stream(cfg, say, home, env, ports, daemons, rate, names, monitoring,
                       alerts_seen, notes_seen, started)
    finally:
        stop.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(follower.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            follower.wait(timeout=10)


@contextlib.contextmanager
def _patched_env(env: dict) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stream(cfg, say, home, env, ports, daemons, rate, names, monitoring, alerts_seen,
            notes_seen, started) -> int:
    labels = home / "labels.jsonl"
    common = ["--rate", str(rate), "--no-progress", "--labels", str(labels)]
    # The live stream's clock starts where the backfill's ends, so no minute has a hole;
    # event time then trails the wall clock by the backfill's few seconds.
    clock = datetime.now(UTC).replace(microsecond=0)
    if cfg.backfill_minutes > 0:
        begin = clock - timedelta(minutes=cfg.backfill_minutes)
        say("produce", f"backfilling the last {cfg.backfill_minutes} minutes at full speed "
            "(the detector judges nothing before 10 minutes of today's traffic)")
        with open(home / "backfill.log", "wb") as log:
            code = subprocess.call(
                _txmon("produce", "--start", _iso(begin), "--speed", "max",
                       "--duration", f"{cfg.backfill_minutes}m",
                       "--seed", str(cfg.seed + 1), *common),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        if code != 0:
            raise UserError(f"backfill failed ({code}); see {home / 'backfill.log'}")
    spec, incident = aligned_incident(cfg.incident, clock)

    live = ["produce", "--start", _iso(clock), "--speed", "1", "--seed", str(cfg.seed),
            "--incident", spec, *common]
    if not cfg.forever:
        live += ["--duration", f"{cfg.seconds:g}s"]
    producer = daemons["producer"]
    producer.command = _txmon(*live)
    producer.start()
    live_start = clock
    live_t0 = time.monotonic()
    incident_at = live_t0 + incident.offset
    lag = (datetime.now(UTC) - clock).total_seconds()
    say("produce", f"streaming in real time: ~{cfg.tps:g} tx/s now (peak rate {rate:g}/s), "
        f"{'until stopped' if cfg.forever else f'for {cfg.seconds:g}s'}, event time "
        f"{lag:.0f}s behind the wall clock; incident {spec} starts at "
        f"{(live_start + timedelta(seconds=incident.offset)):%H:%M:%S}Z event time "
        f"(log {producer.logfile})")
    _print_urls(say, ports, monitoring, names, home)

    printed: set[str] = set()
    first_seen: dict[str, float] = {}
    live_minute = live_start.strftime("%Y-%m-%dT%H:%M")
    backfilled = 0
    incident_started = False
    end = None if cfg.forever else live_t0 + cfg.seconds + CLOSE_GRACE_S
    interrupted = waiting = False
    try:
        while True:
            now = time.monotonic()
            if not incident_started and now >= incident_at:
                incident_started = True
                say("produce", f"incident now: {spec} (labelled in {labels})")
            fresh = [r for r in _poll_minutes(ports) if r["minute"] not in printed]
            old = [r for r in fresh if r["minute"] < live_minute]
            if old:
                backfilled += len(old)
                printed.update(r["minute"] for r in old)
                say("minute", f"{backfilled} backfilled minute(s) closed, the latest: "
                    + _minute_line(old[-1]))
            for row in (r for r in fresh if r["minute"] >= live_minute):
                key = row["minute"]
                first_seen.setdefault(key, now)
                # A minute's alert record can trail its count by a moment.
                if now - first_seen[key] >= POLL_S or row is not fresh[-1]:
                    printed.add(key)
                    say("minute", _minute_line(row))
            if _exited(producer):
                if cfg.forever:
                    say("produce", f"the producer stopped; see {producer.logfile}")
                    break
                end = min(end, now + CLOSE_GRACE_S)
            if end is not None and now >= end:
                pending = incident_started and (
                    not alerts_seen or (monitoring and not notes_seen))
                if not pending or now >= end + PENDING_WAIT_S:
                    break
                if not waiting:
                    waiting = True
                    say("wait", f"the {'alert' if not alerts_seen else 'notification'} is on "
                        f"its way: waiting up to {PENDING_WAIT_S:.0f}s more")
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        say("produce", "interrupted: stopping the producer")
    producer.stop()
    _summary(say, home, ports, alerts_seen, notes_seen, incident_at, incident_started,
             monitoring, started, interrupted, event_lag=lag)
    return 0


def _wait_worker_ready(daemon, say, timeout: float = 90.0) -> None:
    """The worker's metrics answer before its Faust stage has joined its group; records
    sent before that can leave the merge stage stalled (seen: partials consumed up to
    the first few, then none), so the stream waits for Faust's own "Ready" line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if WORKER_READY in daemon.logfile.read_text(errors="replace"):
                return
        if daemon.pid() is None:
            raise UserError(f"the worker exited; see {daemon.logfile}")
        time.sleep(0.5)
    say("worker", f"no \"{WORKER_READY}\" in {daemon.logfile} after {timeout:.0f}s: "
        "streaming anyway")


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def aligned_incident(spec: str, clock: datetime):
    """The incident moved to the first minute boundary at or after its offset: its first
    minute is then wholly anomalous (a minute it only grazes says little), and it is
    detected when that minute closes."""
    from producer.incidents import parse_incident

    incident = parse_incident(spec)
    at = clock.timestamp() + incident.offset
    offset = int(-(-at // 60) * 60 - clock.timestamp())
    body = spec.rpartition("@")[0] if "@" in spec else spec
    spec = f"{body}@{offset}s"
    return spec, parse_incident(spec)


def _exited(daemon) -> bool:
    """The daemon's process is gone (reaping it if it is our child, or it would linger
    as a zombie that still answers kill(pid, 0))."""
    pid = daemon.pid()
    if pid is None:
        return True
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return reaped == pid


def _poll_minutes(ports) -> list[dict]:
    try:
        rows = _http_json(f"http://{HOST}:{ports.api}/history_counts?limit=120")
    except (OSError, ValueError, urllib.error.URLError):
        return []
    return rows if isinstance(rows, list) else []


def _print_urls(say, ports, monitoring, names, home) -> None:
    lines = [
        f"API docs          http://{HOST}:{ports.api}/docs",
        f"minute counts     http://{HOST}:{ports.api}/history_counts",
        f"alerts (JSON)     http://{HOST}:{ports.api}/alerts",
        f"exporter metrics  http://{HOST}:{ports.exporter}/metrics",
        f"worker metrics    http://{HOST}:{ports.processor}/metrics",
    ]
    if monitoring:
        lines += [
            f"Prometheus        http://{HOST}:{ports.prometheus}/alerts",
            f"Alertmanager      http://{HOST}:{ports.alertmanager}/#/alerts",
        ]
    lines += [
        "Grafana           runs only under Docker Compose (docker compose up): "
        "http://127.0.0.1:3000",
        f"alerts topic      txmon alerts --follow   (topic {names.alerts})",
        f"logs and pids     {home}",
    ]
    for line in lines:
        say("open", line)


def _close_to_notification(alerts_seen, notes_seen, event_lag: float) -> float | None:
    """Seconds from the close of the window that opened the incident (its end plus the
    allowed lateness; event time trails the wall clock by `event_lag`) to the first
    TransactionAnomaly notification printed by txmon notify: the figure of
    docs/runbook.md#notification-latency (target p99 <= 20 s)."""
    opened = next((line for _, line in alerts_seen if " OPEN " in line), None)
    paged = next((t for t, line in notes_seen
                  if line.startswith("[FIRING] TransactionAnomaly")), None)
    if opened is None or paged is None:
        return None
    try:
        start = datetime.strptime(opened[:16], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError:
        return None
    lateness = ProcessorSettings.from_env().lateness_s
    closed = start.timestamp() + 60 + lateness + event_lag
    return time.time() - (time.monotonic() - paged) - closed


def _summary(say, home, ports, alerts_seen, notes_seen, incident_at, incident_started,
             monitoring, started, interrupted, event_lag: float = 0.0) -> None:
    if alerts_seen:
        delay = alerts_seen[0][0] - incident_at
        say("result", f"{len(alerts_seen)} alert record(s) on the alerts topic; the first "
            f"{delay:.0f}s after the incident started")
    elif incident_started:
        say("result", "NO alert arrived for the injected incident: see "
            f"{home / 'processor.log'}")
    if monitoring:
        close = _close_to_notification(alerts_seen, notes_seen, event_lag)
        if notes_seen:
            delay = notes_seen[0][0] - incident_at
            say("result", f"Alertmanager notified txmon notify {delay:.0f}s after the "
                "incident started"
                + (f", {close:.1f}s after the window that opened it closed (target "
                   "p99 <= 20s for a critical incident)" if close is not None else ""))
        elif incident_started:
            say("result", "no Alertmanager notification yet (scrape and evaluation every "
                "5s, critical group_wait 2s): watch " + str(home / "notify.log"))
    say("result", f"demo {'interrupted' if interrupted else 'finished'} after "
        f"{time.monotonic() - started:.0f}s. The services keep running for you to explore; "
        "`make down` (txmon demo down) stops them.")


# down / status ----------------------------------------------------------------------------


def down() -> int:
    home = demo_home()
    ports = _ports()
    state = _state(home)
    daemons = _all_daemons(home, ports)
    for name in ("producer", *SERVICES):
        t0 = time.monotonic()
        stopped = daemons[name].stop()
        print(f"{name}: " + (f"stopped in {time.monotonic() - t0:.1f}s" if stopped
                             else "was not running"), flush=True)
    if (home / "monitoring").exists():
        from exporter import monitoring as mon

        for line in mon.down(ports, home / "monitoring"):
            print(line)
    if state.get("broker") != "external" and (home / "kafka").exists():
        kafka = _broker(home)
        if kafka.down():
            print(f"kafka: stopped; port {kafka.port} is free")
        else:
            print("kafka: was not running")
    busy = []
    deadline = time.monotonic() + 10.0
    for name, (_, port, _) in _service_commands(ports).items():
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _port_free(port):
            busy.append(f"{name} {port}")
    if busy:
        raise UserError(f"still in use after stopping the demo: {', '.join(busy)} "
                        "(held by something the demo did not start?)")
    return 0


def status() -> int:
    home = demo_home()
    ports = _ports()
    state = _state(home)
    all_up = True
    for name, daemon in _all_daemons(home, ports).items():
        line = daemon.status()
        if name == "producer":
            print(f"producer: {'streaming' if daemon.pid() else 'not streaming'}")
            continue
        all_up &= line.startswith("running")
        print(f"{name}: {line}")
    if state.get("monitoring"):
        from exporter import monitoring as mon

        lines, ok = mon.status(ports, home / "monitoring")
        all_up &= ok
        for line in lines:
            print(line)
    if state.get("broker") == "external":
        print(f"kafka: external broker {state.get('bootstrap')}")
    elif (home / "kafka").exists():
        st = _broker(home).status()
        all_up &= st.up
        print(f"kafka: {st.describe()}")
    else:
        print("kafka: the demo has not run")
        all_up = False
    return 0 if all_up else EXIT_DOWN


# CLI -----------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the whole pipeline with simulated traffic and an incident (make demo)",
        description="up: fresh broker, model, worker, API, exporter, notify, Prometheus and "
        "Alertmanager where installed, then real-time simulated traffic with an injected "
        "incident, printing minutes, alerts and notifications. Variables: DEMO_SECONDS "
        "(210), DEMO_FOREVER (0), DEMO_TPS (20), DEMO_RATE, DEMO_INCIDENT "
        "(denied:x4:2m30s@30s, moved to the next minute boundary), DEMO_BACKFILL_MINUTES "
        "(30), DEMO_TRAIN_DAYS (1), DEMO_MONITORING (1), DEMO_SEED (7).")
    actions = p.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    u = actions.add_parser("up", help="start everything and stream (ends by itself)")
    u.add_argument("--seconds", type=float, help="real-time streaming (DEMO_SECONDS, 210)")
    u.add_argument("--forever", action="store_true", help="keep streaming (DEMO_FOREVER=1)")
    u.add_argument("--incident", help="producer --incident spec (DEMO_INCIDENT)")
    u.add_argument("--tps", type=float, help="transactions/s at this hour (DEMO_TPS, 20)")
    u.set_defaults(func=run_up)
    d = actions.add_parser("down", help="stop everything the demo started (safe twice)")
    d.set_defaults(func=lambda args: down())
    s = actions.add_parser("status", help="what the demo runs (exit 0 all up, 3 not)")
    s.set_defaults(func=lambda args: status())


def run_up(args: argparse.Namespace) -> int:
    import dataclasses

    cfg = DemoConfig.from_env()
    overrides = {"seconds": args.seconds, "incident": args.incident, "tps": args.tps}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.forever:
        cfg = dataclasses.replace(cfg, forever=True)
    return up(cfg)
