"""Helpers for the observability tests: real exporter, real Prometheus and Alertmanager
processes on free loopback ports, synthetic pipeline records from the contracts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from devstack import monitoring
from txmon.contracts import STATUSES, Alert, DeadLetter, DeadLetterReason, WindowCount, encode
from txmon.kafka.produce import PIPELINE, Sender, producer_config
from txmon.settings import KafkaSettings, TestSuite

REPO = Path(__file__).resolve().parents[2]
TXMON = str(Path(sys.executable).with_name("txmon"))
RULES = REPO / "prometheus" / "rules" / "txmon.yml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_binary(found: str | None, name: str) -> str:
    """Skip when a system binary is missing, but never in CI, which installs it."""
    if found:
        return found
    message = f"{name} not installed (bash scripts/system-deps.sh)"
    if TestSuite.from_env().ci:
        pytest.fail(message)
    pytest.skip(message)


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


# --- records ---------------------------------------------------------------------------------

def reference_windows(path: Path, day: date) -> list[WindowCount]:
    """One WindowCount per minute of `day`, zeros included, as the processor emits them,
    counted through the project's own replay parser."""
    from producer.replay import read_counts

    counts: dict[datetime, dict[str, int]] = defaultdict(dict)
    for minute, status, count in read_counts(path, day):
        counts[minute][status] = counts[minute].get(status, 0) + count
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out = []
    for i in range(1440):
        ws = start + timedelta(minutes=i)
        c = {s: counts.get(ws, {}).get(s, 0) for s in STATUSES}
        out.append(WindowCount(id=ws.isoformat(), start=ws, end=ws + timedelta(minutes=1),
                               counts=c, total=sum(c.values())))
    return out


def make_alert(incident: str, event: str, group: str, start: datetime, *, score: float = 0.8,
               severity: str = "critical", statuses: list[str] | None = None,
               **words) -> Alert:
    """An alert record as the processor writes it; `words` are the newer fields (groups,
    summary, since, duration_s, runbook_url), absent as in records written before them."""
    statuses = statuses or [group]
    return Alert(
        id=f"{incident}:{event}:{start.isoformat()}", incident_id=incident, event=event,
        group=group, window_start=start, window_end=start + timedelta(minutes=1),
        statuses=statuses, observed={s: 120 for s in statuses},
        expected={s: 20.0 for s in statuses}, score=score, threshold=0.6,
        severity=severity, model_version="test", **words)


def make_dead_letter(reason: str = "unknown_status") -> DeadLetter:
    return DeadLetter(reason=DeadLetterReason(reason), detail="test", source="processor",
                      topic="transactions", partition=0, offset=1,
                      payload_b64=DeadLetter.wrap(b'{"status":"nope"}'))


def produce(settings: KafkaSettings, topic: str, records, key=lambda r: None) -> None:
    """Encode structs (or pass raw bytes) to `topic`, all delivered or DeliveryFailed."""
    sender = Sender(producer_config(settings, PIPELINE))
    for record in records:
        value = record if isinstance(record, bytes) else encode(record)
        k = key(record)
        sender.produce(topic, value, k.encode() if isinstance(k, str) else k)
    sender.settle(30)


def window_key(wc) -> str:
    return wc.id


def alert_key(alert) -> str:
    return alert.id


# --- exporter --------------------------------------------------------------------------------

class ExporterProcess:
    """`txmon export` as a subprocess on a free port."""

    def __init__(self, env: dict[str, str], port: int | None = None, *extra: str,
                 log: Path | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.ready_url = f"http://127.0.0.1:{self.port}/ready"
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [TXMON, "export", "--port", str(self.port), *extra], env=env,
            stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._up, 30, what="exporter /metrics")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}")
        try:
            http_get(self.url, timeout=1)
            return True
        except OSError:
            return False

    def ready(self) -> bool:
        """/ready answers 200: the topics are read up to their end offsets at start."""
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited with {self.proc.returncode}")
        try:
            return http_get(self.ready_url, timeout=1) == b"ready\n"
        except OSError:  # 503 (HTTPError) while catching up, or not listening yet
            return False

    def wait_ready(self, timeout: float = 60) -> dict[tuple[str, tuple], float]:
        """Wait for readiness; then /metrics is whole: returns its samples."""
        wait_for(self.ready, timeout, what="exporter /ready")
        return self.samples()

    def samples(self) -> dict[tuple[str, tuple], float]:
        return parse_metrics(http_get(self.url).decode())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# --- Prometheus and Alertmanager -------------------------------------------------------------

def short_rules(dest: Path, overrides: dict[str, dict]) -> Path:
    """A copy of the real rule file with per-alert changes: {"PipelineStalled":
    {"for": "5s", "keep_firing_for": "0s", "replace": ("> 120", "> 6")}}. Untouched
    alerts keep their values."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            change = overrides.get(rule.get("alert"))
            if not change:
                continue
            for key in ("for", "keep_firing_for"):
                if key in change:
                    rule[key] = change[key]
            for old, new in change.get("replace", []):
                assert old in rule["expr"], (rule["alert"], old)
                rule["expr"] = rule["expr"].replace(old, new)
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


class PromStack:
    """Real Prometheus (and optionally Alertmanager) with configs rendered from the repo's
    own files, on free ports, data in `home`."""

    def __init__(self, home: Path, ports: monitoring.Ports, *, rule_files: list[Path],
                 interval: str = "1s", alertmanager_timings: dict | None = None,
                 with_alertmanager: bool = False):
        require_binary(monitoring.prometheus_binary(), "prometheus")
        self.home, self.ports = home, ports
        self.daemons = []
        if with_alertmanager:
            require_binary(monitoring.alertmanager_binary(), "prometheus-alertmanager")
            am_cfg = monitoring.render_alertmanager_config(home / "alertmanager.yml", ports,
                                                           timings=alertmanager_timings)
            self.daemons.append(monitoring.alertmanager_daemon(home, am_cfg, ports.alertmanager))
        prom_cfg = monitoring.render_prometheus_config(
            home / "prometheus.yml", ports, rule_files=rule_files, scrape_interval=interval,
            evaluation_interval=interval)
        self.daemons.append(monitoring.prometheus_daemon(home, prom_cfg, ports.prometheus))
        try:
            for daemon in self.daemons:
                daemon.start()
        except Exception:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{ports.prometheus}"

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        body = json.loads(http_get(f"{self.url}/api/v1/{path}?{query}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, **params) -> list:
        return self.api("query", query=expr, **params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()


def promtool() -> str:
    return require_binary(shutil.which("promtool"), "promtool")


# --- loopback HTTP recorders -----------------------------------------------------------------

class RecordingServer:
    """An HTTP server on loopback that records every request and answers from `routes`:
    {(method, path-prefix): (status, json-body or callable(request) -> (status, body))}."""

    def __init__(self, routes: dict | None = None):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        self.routes = routes or {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": self.path,
                           "headers": dict(self.headers), "body": raw,
                           "json": json.loads(raw) if raw else None}
                recorder.requests.append(request)
                status, body = 200, {}
                for (method, prefix), answer in recorder.routes.items():
                    if method == self.command and self.path.startswith(prefix):
                        status, body = answer(request) if callable(answer) else answer
                        break
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class NotifyProcess:
    """`txmon notify` as a subprocess; its stdout lines collected by a reader thread."""

    def __init__(self, port: int, env: dict | None = None):
        import threading

        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.lines: list[str] = []
        #: (wall-clock time the line was read, line): when a notification was delivered.
        self.stamped: list[tuple[float, str]] = []
        self.proc = subprocess.Popen([TXMON, "notify", "--port", str(port)],
                                     env=env or dict(os.environ), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_for(lambda: any("listening" in line for line in self.lines), 20,
                 what="txmon notify listening")

    def _read(self):
        for line in self.proc.stdout:
            self.stamped.append((time.time(), line.rstrip("\n")))
            self.lines.append(line.rstrip("\n"))

    def headers(self, prefix: str = "[") -> list[str]:
        return [line for line in list(self.lines) if line.startswith(prefix)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def all_free_ports() -> monitoring.Ports:
    return monitoring.Ports(prometheus=free_port(), alertmanager=free_port(),
                            exporter=free_port(), processor=free_port(), api=free_port(),
                            notify=free_port())


def notifications(notify: NotifyProcess, incident: str) -> list[tuple[float, str]]:
    """(time read, header) of each notification `txmon notify` printed for `incident`
    (Alertmanager groups by incident, so its header names it)."""
    return [(t, line) for t, line in list(notify.stamped)
            if line.startswith("[") and f"(incident_id={incident})" in line]
