"""`txmon monitoring up|down|status`: Debian's Prometheus and Alertmanager, run directly.

No systemd, no Docker: the binaries are started as our own processes bound to 127.0.0.1,
with the repo's configs rendered for the ports in force and their data under
state_dir()/monitoring. The tests start them through the same functions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devstack.processes import pid_alive, port_free, read_pid, terminate, write_pid
from txmon.errors import UserError
from txmon.settings import (
    ApiSettings,
    ExporterSettings,
    MonitoringSettings,
    NotifySettings,
    ProcessorSettings,
    default,
    state_dir,
)

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
RULES_DIR = REPO / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Ports:
    prometheus: int = default(MonitoringSettings, "prometheus_port")
    alertmanager: int = default(MonitoringSettings, "alertmanager_port")
    exporter: int = default(ExporterSettings, "port")
    processor: int = default(ProcessorSettings, "metrics_port")
    api: int = default(ApiSettings, "port")
    notify: int = default(NotifySettings, "port")

    @classmethod
    def from_env(cls) -> Ports:
        monitoring = MonitoringSettings.from_env()
        return cls(
            prometheus=monitoring.prometheus_port,
            alertmanager=monitoring.alertmanager_port,
            exporter=ExporterSettings.from_env().port,
            processor=ProcessorSettings.from_env().metrics_port,
            api=ApiSettings.from_env().port,
            notify=NotifySettings.from_env().port,
        )


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def alertmanager_binary() -> str | None:
    # Debian names it prometheus-alertmanager; upstream tarballs say alertmanager.
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def render_prometheus_config(
    dest: Path,
    ports: Ports,
    *,
    source: Path = PROMETHEUS_CONFIG,
    rule_files: list[Path] | None = None,
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> Path:
    """Write a copy of `source` whose targets use `ports` and whose rule files are absolute
    (the copy lives elsewhere); jobs keep their names, so rules and dashboards still match."""
    cfg = yaml.safe_load(source.read_text())
    job_ports = {"exporter": ports.exporter, "processor": ports.processor, "api": ports.api,
                 "prometheus": ports.prometheus}
    for job in cfg.get("scrape_configs", []):
        port = job_ports.get(job["job_name"])
        if port is not None:
            job["static_configs"] = [{"targets": [f"{HOST}:{port}"]}]
        if scrape_interval:
            job["scrape_interval"] = scrape_interval
    for am in cfg.get("alerting", {}).get("alertmanagers", []):
        am["static_configs"] = [{"targets": [f"{HOST}:{ports.alertmanager}"]}]
    if rule_files is None:
        rule_files = sorted(RULES_DIR.glob("*.yml"))
    cfg["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    glob = cfg.setdefault("global", {})
    if scrape_interval:
        glob["scrape_interval"] = scrape_interval
    if evaluation_interval:
        glob["evaluation_interval"] = evaluation_interval
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def render_alertmanager_config(
    dest: Path,
    ports: Ports,
    *,
    source: Path = ALERTMANAGER_CONFIG,
    timings: dict[str, str] | None = None,
) -> Path:
    """Write a copy of `source` whose webhooks point at `txmon notify` on `ports.notify`;
    `timings` (group_wait, group_interval, repeat_interval) override every route's."""
    cfg = yaml.safe_load(source.read_text())
    for receiver in cfg.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://{HOST}:{ports.notify}/"
    if timings:
        routes = [cfg["route"], *cfg["route"].get("routes", [])]
        for route in routes:
            for key, value in timings.items():
                if key in route or route is cfg["route"]:
                    route[key] = value
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


@dataclass
class Daemon:
    """One server process we start ourselves: pid file, log file, readiness URL."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    #: Stop its whole process group: a service may have children of its own.
    group: bool = False

    @property
    def pidfile(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pid(self) -> int | None:
        """The recorded pid while it runs (an exited process, zombie or not, is None)."""
        pid = read_pid(self.pidfile)
        return pid if pid is not None and pid_alive(pid) else None

    def ready(self) -> bool:
        return http_ok(self.url + self.ready_path)

    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Start it unless it already runs; returns "started" or "already running"."""
        if self.pid() is not None:
            return "already running"
        if not port_free(self.port, HOST):
            raise UserError(f"{self.name}: port {self.port} on {HOST} is already in use")
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **self.env},
            )
        write_pid(self.pidfile, proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink(missing_ok=True)
                tail = self.logfile.read_text(errors="replace").strip().splitlines()[-3:]
                raise UserError(f"{self.name} exited with {proc.returncode}: "
                                + " | ".join(tail))
            if self.ready():
                return "started"
            time.sleep(0.2)
        self.stop()
        raise UserError(f"{self.name} not ready within {timeout:.0f}s (see {self.logfile})")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        terminate(pid, timeout, group=self.group)
        self.pidfile.unlink(missing_ok=True)
        return True

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"running (pid {pid}, {'ready' if self.ready() else 'not ready'}) {self.url}"


def prometheus_daemon(home: Path, config: Path, port: int) -> Daemon:
    binary = prometheus_binary()
    if binary is None:
        raise UserError("prometheus is not installed (bash scripts/system-deps.sh)")
    return Daemon(
        "prometheus",
        [binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'prometheus-data'}",
         f"--web.listen-address={HOST}:{port}", "--web.enable-lifecycle",
         "--storage.tsdb.retention.time=15d"],
        port, "/-/ready", home,
    )


def alertmanager_daemon(home: Path, config: Path, port: int) -> Daemon:
    binary = alertmanager_binary()
    if binary is None:
        raise UserError("alertmanager is not installed (bash scripts/system-deps.sh)")
    return Daemon(
        "alertmanager",
        [binary, f"--config.file={config}", f"--storage.path={home / 'alertmanager-data'}",
         f"--web.listen-address={HOST}:{port}",
         # An empty cluster address turns off HA gossip, which would bind 0.0.0.0:9094.
         "--cluster.listen-address="],
        port, "/-/ready", home,
    )


def monitoring_home() -> Path:
    return state_dir() / "monitoring"


def _daemons(ports: Ports, home: Path) -> list[Daemon]:
    return [
        alertmanager_daemon(home, home / "alertmanager.yml", ports.alertmanager),
        prometheus_daemon(home, home / "prometheus.yml", ports.prometheus),
    ]


def up(ports: Ports | None = None, home: Path | None = None) -> list[str]:
    ports = ports or Ports.from_env()
    home = home or monitoring_home()
    render_alertmanager_config(home / "alertmanager.yml", ports)
    render_prometheus_config(home / "prometheus.yml", ports)
    lines = []
    for daemon in _daemons(ports, home):
        lines.append(f"{daemon.name}: {daemon.start()} {daemon.url}")
    lines.append(f"exporter metrics expected at http://{HOST}:{ports.exporter}/metrics; "
                 f"notifications to txmon notify on http://{HOST}:{ports.notify}/")
    return lines


def down(ports: Ports | None = None, home: Path | None = None) -> list[str]:
    ports = ports or Ports.from_env()
    home = home or monitoring_home()
    lines = []
    for daemon in reversed(_daemons_lenient(ports, home)):
        lines.append(f"{daemon.name}: {'stopped' if daemon.stop() else 'was not running'}")
    return lines


def status(ports: Ports | None = None, home: Path | None = None) -> tuple[list[str], bool]:
    ports = ports or Ports.from_env()
    home = home or monitoring_home()
    lines, all_up = [], True
    for daemon in _daemons_lenient(ports, home):
        state = daemon.status()
        all_up &= state.startswith("running")
        lines.append(f"{daemon.name}: {state}")
    return lines, all_up


def _daemons_lenient(ports: Ports, home: Path) -> list[Daemon]:
    """The daemons by pid file, even when the binaries have since been uninstalled."""
    return [
        Daemon("alertmanager", [], ports.alertmanager, "/-/ready", home),
        Daemon("prometheus", [], ports.prometheus, "/-/ready", home),
    ]
