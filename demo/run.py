"""`txmon demo up`: the whole pipeline on one machine, in real time, as a few steps.

`make demo` runs it: a fresh broker, a model trained on simulated clean days, the worker,
the API, the exporter, the webhook receiver, Prometheus and Alertmanager where
installed, then simulated transactions stamped with the wall clock and an injected
incident, while it prints each closed minute, the alerts and the notifications. It ends
by itself and leaves the services running; `make down` runs `down` (demo/stack.py).

Why some choices:

- Fresh state every run. A broker left from an earlier run holds that run's windows and
  committed offsets; the worker would fill the hours in between with empty minutes (an
  outage, rightly) and Alertmanager would remember the last notification. So the demo
  starts its home directory empty; nothing else is touched.
- A constant, visible volume at any hour: the simulator shapes traffic by UTC time of
  day (at 03:00 it sends 0.2 % of the peak rate), so the peak rate is chosen to give
  DEMO_TPS transactions/s now. The detector judges volume against today's level, so a
  busier day than the training days is not an incident.
- A backfill: the detector judges nothing before it has seen LEVEL_MIN_MINUTES minutes of
  today's traffic, so the last DEMO_BACKFILL_MINUTES minutes are produced at full speed
  (event time in the past) before the real-time stream starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from demo.console import (
    Outcome,
    Printer,
    Seen,
    follow_lines,
    live_page,
    minute_line,
    print_urls,
    summary,
    tail_file,
)
from demo.stack import (
    HOST,
    SERVICES,
    all_daemons,
    broker,
    demo_home,
    demo_ports,
    external_bootstrap,
    monitoring_installed,
    needed_ports,
    txmon_command,
)
from devstack.processes import port_free
from txmon.errors import UserError
from txmon.settings import DemoSettings

#: Wall-clock seconds after the stream ends for its last minute to close (allowed
#: lateness 10 s, then the idle timeout) and be printed.
CLOSE_GRACE_S = 25.0
#: How much longer to wait, at most, for an alert or notification still on its way.
PENDING_WAIT_S = 60.0
POLL_S = 2.0
#: Faust's log line once the worker has joined its group and recovered its tables.
WORKER_READY = "[^Worker]: Ready"


def up(cfg: DemoSettings) -> int:
    try:
        return DemoRun(cfg).run()
    except UserError as exc:
        if demo_home().exists() and any(demo_home().glob("*.pid")):
            raise UserError(f"{exc} (`make down` stops what had started)") from None
        raise


class DemoRun:
    """One `demo up`: each step a method, in the order `run` calls them."""

    def __init__(self, cfg: DemoSettings):
        self.cfg = cfg
        self.started = time.monotonic()
        self.say = Printer(self.started)
        self.home = demo_home()
        self.ports = demo_ports()
        self.external = external_bootstrap()
        self.kafka = None if self.external else broker(self.home)
        self.model = self.home / "model.joblib"
        self.env: dict[str, str] = {}
        self.state: dict = {}
        self.daemons: dict = {}
        self.names = None
        self.monitoring = False
        self.rate = 0.0
        self.outcome = Outcome(alerts=Seen(), notes=Seen())

    def run(self) -> int:
        logging.getLogger("devstack.kafka.server").setLevel(logging.WARNING)  # we say it
        self.check_nothing_running()
        self.fresh_home()
        self.start_stack()
        with self.following_alerts():
            return self.stream()

    # --- before anything starts ---

    def check_nothing_running(self) -> None:
        running = [n for n, d in all_daemons(self.home, self.ports).items()
                   if d.pid() is not None]
        if running or (self.kafka is not None and self.kafka.pid() is not None):
            raise UserError(f"the demo is already running ({', '.join(running) or 'kafka'}); "
                            "`make down` (txmon demo down) stops it")
        taken = [f"{what} {port} (set {var})"
                 for what, port, var in needed_ports(self.cfg, self.ports, self.kafka)
                 if not port_free(port)]
        if taken:
            raise UserError(f"port(s) already in use on {HOST}: {'; '.join(taken)}. "
                            "Stop what holds them or choose other ports.")

    def fresh_home(self) -> None:
        """Nothing outside the demo's home is touched (see the module docstring)."""
        if self.home.exists():
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True)
        self.env = {
            **os.environ,
            "TXMON_MODEL_PATH": str(self.model),
            "TXMON_PROCESSOR_DATA_DIR": str(self.home / "processor"),
            "PYTHONUNBUFFERED": "1",
        }
        self.rate = live_rate(self.cfg)
        self.state = {"started_at": datetime.now(UTC).isoformat(),
                      "broker": "external" if self.external else "demo",
                      "rate": self.rate, "incident": self.cfg.incident}

    # --- the stack ---

    def start_stack(self) -> None:
        """The model trains while the broker and services start (the machine has two
        cores): the worker loads it when it appears, and nothing reaches the worker
        before the backfill, after training."""
        train = self.start_training()
        try:
            self.start_broker()
            self.start_services()
            self.start_monitoring()
            code = train.wait()
        except BaseException:
            train.kill()
            raise
        self.model_ready(code)

    def start_training(self) -> subprocess.Popen:
        log_path = self.home / "train.log"
        self.say("train", f"fitting the detector on {self.cfg.train_days} simulated clean "
                 f"day(s) (log {log_path})")
        with open(log_path, "wb") as log:
            return subprocess.Popen(
                txmon_command("train", "--simulate-days", str(self.cfg.train_days),
                              "--seed", "1", "--out", str(self.model)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)

    def start_broker(self) -> None:
        if self.kafka is not None:
            self.say("kafka", f"starting the broker on {self.kafka.bootstrap} "
                     f"(data {self.kafka.data_dir})")
            result = self.kafka.up()
            bootstrap = result.bootstrap
            self.say("kafka", f"up at {bootstrap} in {result.seconds:.1f}s (pid {result.pid})")
        else:
            bootstrap = self.external
            self.say("kafka", f"using the broker at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
        self.state["bootstrap"] = bootstrap
        self.save_state()
        self.env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        from txmon.contracts import topics
        from txmon.kafka.admin import ensure_topics, pipeline_topics
        from txmon.settings import KafkaSettings

        with patched_env(self.env):
            ensure_topics(KafkaSettings.from_env(), pipeline_topics(topics()))
            self.names = topics()

    def start_services(self) -> None:
        self.daemons = all_daemons(self.home, self.ports, self.env)
        for name in SERVICES:
            t0 = time.monotonic()
            daemon = self.daemons[name]
            outcome = daemon.start()
            self.say(name, f"{outcome} on port {daemon.port} in "
                     f"{time.monotonic() - t0:.1f}s (log {daemon.logfile})")
            if name == "api":  # the first URL the operator sees
                self.say("open", live_page(self.ports) + "  (follows the run as it happens)")

    def start_monitoring(self) -> None:
        self.monitoring = self.cfg.monitoring and monitoring_installed()
        if self.monitoring:
            from devstack import monitoring as mon

            with patched_env(self.env):
                for line in mon.up(self.ports, self.home / "monitoring"):
                    self.say("monitor", line)
        elif self.cfg.monitoring:
            self.say("monitor", "Prometheus/Alertmanager not installed: skipped "
                     "(bash scripts/system-deps.sh installs them)")
        self.state["monitoring"] = self.monitoring
        self.save_state()

    def model_ready(self, code: int) -> None:
        from devstack.kafka.server import tail

        log_path = self.home / "train.log"
        if code != 0:
            raise UserError(f"txmon train failed ({code}): " + " | ".join(tail(log_path, 3)))
        wait_worker_ready(self.daemons["processor"], self.say)
        fitted = [line for line in tail(log_path, 20) if "threshold" in line]
        self.say("train", f"model ready after {time.monotonic() - self.started:.0f}s"
                 + (f": {fitted[-1].strip()}" if fitted else ""))

    def save_state(self) -> None:
        (self.home / "demo.json").write_text(json.dumps(self.state, indent=2) + "\n")

    @contextlib.contextmanager
    def following_alerts(self) -> Iterator[None]:
        """`txmon alerts --follow` and the notify log, printed as they come."""
        stop = threading.Event()
        follower = subprocess.Popen(
            txmon_command("alerts", "--follow"), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=self.env,
            start_new_session=True)
        threading.Thread(target=follow_lines, daemon=True, args=(
            follower.stdout, self.say, "ALERT", self.outcome.alerts, stop)).start()
        threading.Thread(target=tail_file, daemon=True, args=(
            self.daemons["notify"].logfile, self.say, "NOTIFY", self.outcome.notes, stop,
            ("txmon notify: listening",))).start()
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(follower.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                follower.wait(timeout=10)

    # --- the traffic ---

    def stream(self) -> int:
        """The live stream's clock starts where the backfill's ends, so no minute has a
        hole; event time then trails the wall clock by the backfill's few seconds."""
        clock = datetime.now(UTC).replace(microsecond=0)
        self.backfill(clock)
        spec, incident = aligned_incident(self.cfg.incident, clock)
        producer = self.start_live(clock, spec)
        self.outcome.incident_at = time.monotonic() + incident.offset
        self.outcome.event_lag = lag = (datetime.now(UTC) - clock).total_seconds()
        cfg = self.cfg
        self.say("produce", f"streaming in real time: ~{cfg.tps:g} tx/s now (peak rate "
                 f"{self.rate:g}/s), {'until stopped' if cfg.forever else f'for {cfg.seconds:g}s'}"
                 f", event time {lag:.0f}s behind the wall clock; incident {spec} starts at "
                 f"{(clock + timedelta(seconds=incident.offset)):%H:%M:%S}Z event time "
                 f"(log {producer.logfile})")
        print_urls(self.say, self.ports, self.monitoring, self.names, self.home)
        try:
            self.watch(producer, clock, spec)
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            self.say("produce", "interrupted: stopping the producer")
        producer.stop()
        summary(self.say, self.home, self.outcome, monitoring=self.monitoring,
                started=self.started)
        return 0

    def producer_args(self) -> list[str]:
        return ["--rate", str(self.rate), "--no-progress",
                "--labels", str(self.home / "labels.jsonl")]

    def backfill(self, clock: datetime) -> None:
        minutes = self.cfg.backfill_minutes
        if minutes <= 0:
            return
        self.say("produce", f"backfilling the last {minutes} minutes at full speed "
                 "(the detector judges nothing before 10 minutes of today's traffic)")
        log_path = self.home / "backfill.log"
        with open(log_path, "wb") as log:
            code = subprocess.call(
                txmon_command("produce", "--start", _iso(clock - timedelta(minutes=minutes)),
                              "--speed", "max", "--duration", f"{minutes}m",
                              "--seed", str(self.cfg.seed + 1), *self.producer_args()),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        if code != 0:
            raise UserError(f"backfill failed ({code}); see {log_path}")

    def start_live(self, clock: datetime, spec: str):
        live = ["produce", "--start", _iso(clock), "--speed", "1", "--seed", str(self.cfg.seed),
                "--incident", spec, *self.producer_args()]
        if not self.cfg.forever:
            live += ["--duration", f"{self.cfg.seconds:g}s"]
        producer = self.daemons["producer"]
        producer.command = txmon_command(*live)
        producer.start()
        return producer

    def watch(self, producer, clock: datetime, spec: str) -> None:
        """Prints minutes as they close until the stream has ended and its last minute,
        alert and notification had their time to arrive."""
        minutes = MinuteFeed(self.say, clock.strftime("%Y-%m-%dT%H:%M"))
        end = None if self.cfg.forever else time.monotonic() + self.cfg.seconds + CLOSE_GRACE_S
        waiting = False
        while True:
            now = time.monotonic()
            if not self.outcome.incident_started and now >= self.outcome.incident_at:
                self.outcome.incident_started = True
                self.say("produce", f"incident now: {spec} "
                         f"(labelled in {self.home / 'labels.jsonl'})")
            minutes.show(poll_minutes(self.ports), now)
            if producer.pid() is None:  # exited (a zombie counts as gone)
                if self.cfg.forever:
                    self.say("produce", f"the producer stopped; see {producer.logfile}")
                    return
                end = min(end, now + CLOSE_GRACE_S)
            if end is not None and now >= end:
                if not self.pending() or now >= end + PENDING_WAIT_S:
                    return
                if not waiting:
                    waiting = True
                    what = "alert" if not self.outcome.alerts else "notification"
                    self.say("wait", f"the {what} is on its way: waiting up to "
                             f"{PENDING_WAIT_S:.0f}s more")
            time.sleep(POLL_S)

    def pending(self) -> bool:
        """The incident started and its alert, or its notification, has not arrived."""
        seen = self.outcome
        return seen.incident_started and (
            not seen.alerts or (self.monitoring and not seen.notes))


class MinuteFeed:
    """Closed minutes from the API, each printed once: the backfill's summed in one line,
    live ones each on its own."""

    def __init__(self, say, live_minute: str):
        self.say = say
        self.live_minute = live_minute
        self.printed: set[str] = set()
        self.first_seen: dict[str, float] = {}
        self.backfilled = 0

    def show(self, rows: list[dict], now: float) -> None:
        fresh = [r for r in rows if r["minute"] not in self.printed]
        old = [r for r in fresh if r["minute"] < self.live_minute]
        if old:
            self.backfilled += len(old)
            self.printed.update(r["minute"] for r in old)
            self.say("minute", f"{self.backfilled} backfilled minute(s) closed, the latest: "
                     + minute_line(old[-1]))
        for row in (r for r in fresh if r["minute"] >= self.live_minute):
            key = row["minute"]
            self.first_seen.setdefault(key, now)
            # A minute's alert record can trail its count by a moment.
            if now - self.first_seen[key] >= POLL_S or row is not fresh[-1]:
                self.printed.add(key)
                self.say("minute", minute_line(row))


def live_rate(cfg: DemoSettings) -> float:
    """The peak rate that gives cfg.tps transactions/s in the middle of the demo."""
    if cfg.rate:
        return cfg.rate
    from producer.shape import shape_at

    middle = datetime.now(UTC) + timedelta(seconds=min(cfg.seconds, 3600) / 2)
    seconds = middle.hour * 3600 + middle.minute * 60 + middle.second
    return round(min(max(cfg.tps / float(shape_at(seconds)), cfg.tps), 20_000.0), 1)


def wait_worker_ready(daemon, say, timeout: float = 90.0) -> None:
    """The worker's metrics answer before its Faust stage has joined its group, and
    records sent before that can stall the merge stage, so the stream waits for Faust's
    own "Ready" line (docs/decisions/0002)."""
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


def poll_minutes(ports) -> list[dict]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{ports.api}/history_counts?limit=120",
                                    timeout=3.0) as response:
            rows = json.loads(response.read())
    except (OSError, ValueError, urllib.error.URLError):
        return []
    return rows if isinstance(rows, list) else []


@contextlib.contextmanager
def patched_env(env: dict) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")
