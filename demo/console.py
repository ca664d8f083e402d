"""What the demo prints: one timestamped line per event, from several threads, and the
closing summary with the measured notification delay."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from demo.stack import HOST
from txmon.settings import ProcessorSettings


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


@dataclass
class Seen:
    """Lines a follower printed, with the monotonic time each arrived."""

    lines: list[tuple[float, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.lines)


def follow_lines(stream, emit, tag: str, seen: Seen, stop: threading.Event) -> None:
    for raw in iter(stream.readline, ""):
        line = raw.rstrip()
        if line:
            seen.lines.append((time.monotonic(), line))
            emit(tag, line)
        if stop.is_set():
            break


def tail_file(path: Path, emit, tag: str, seen: Seen, stop: threading.Event,
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
                seen.lines.append((time.monotonic(), line))
                emit(tag, line)


def minute_line(row: dict) -> str:
    from txmon.contracts import STATUSES

    counts = row["summary"]
    total = sum(counts.values())
    parts = "  ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES)
    return f"{row['minute']}Z  {total:>6} tx  {parts}" + ("  << ALERT" if row["alert"] else "")


def live_page(ports) -> str:
    """The operator's live view, served by `txmon api`: on every machine, Docker or not."""
    return f"live page         http://{HOST}:{ports.api}/live"


def print_urls(say, ports, monitoring: bool, names, home: Path) -> None:
    lines = [
        live_page(ports),
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
        "Grafana           with Docker: docker compose up -d (README, Docker Compose), "
        "then http://127.0.0.1:3000; the same panels are on the live page",
        f"alerts topic      txmon alerts --follow   (topic {names.alerts})",
        f"logs and pids     {home}",
    ]
    for line in lines:
        say("open", line)


@dataclass
class Outcome:
    """What the run saw of its incident, for the summary."""

    alerts: Seen
    notes: Seen
    incident_at: float = 0.0
    incident_started: bool = False
    interrupted: bool = False
    #: Seconds event time trails the wall clock (the backfill's length in real time).
    event_lag: float = 0.0


def close_to_notification(outcome: Outcome) -> float | None:
    """Seconds from the close of the window that opened the incident (its end plus the
    allowed lateness, shifted by the event lag) to the first TransactionAnomaly
    notification printed by txmon notify: the figure of
    docs/runbook.md#notification-latency (target p99 <= 20 s)."""
    opened = next((line for _, line in outcome.alerts.lines if " OPEN " in line), None)
    paged = next((t for t, line in outcome.notes.lines
                  if line.startswith("[FIRING] TransactionAnomaly")), None)
    if opened is None or paged is None:
        return None
    try:
        start = datetime.strptime(opened[:16], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    except ValueError:
        return None
    lateness = ProcessorSettings.from_env().lateness_s
    closed = start.timestamp() + 60 + lateness + outcome.event_lag
    return time.time() - (time.monotonic() - paged) - closed


def summary(say, home: Path, outcome: Outcome, *, monitoring: bool, started: float) -> None:
    alerts = outcome.alerts.lines
    if alerts:
        delay = alerts[0][0] - outcome.incident_at
        say("result", f"{len(alerts)} alert record(s) on the alerts topic; the first "
            f"{delay:.0f}s after the incident started")
    elif outcome.incident_started:
        say("result", "NO alert arrived for the injected incident: see "
            f"{home / 'processor.log'}")
    if monitoring:
        _notification_summary(say, home, outcome)
    say("result", f"demo {'interrupted' if outcome.interrupted else 'finished'} after "
        f"{time.monotonic() - started:.0f}s. The services keep running for you to explore; "
        "`make down` (txmon demo down) stops them.")
    say("result", "the demo stopped its traffic on purpose: the worker keeps closing "
        "minutes, now empty, and within about two of them pages an outage ('all traffic "
        "0/min against ~N expected'): see `txmon alerts` or the live page.")


def _notification_summary(say, home: Path, outcome: Outcome) -> None:
    close = close_to_notification(outcome)
    if outcome.notes:
        delay = outcome.notes.lines[0][0] - outcome.incident_at
        say("result", f"Alertmanager notified txmon notify {delay:.0f}s after the "
            "incident started"
            + (f", {close:.1f}s after the window that opened it closed (target "
               "p99 <= 20s for a critical incident)" if close is not None else ""))
    elif outcome.incident_started:
        say("result", "no Alertmanager notification yet (scrape and evaluation every "
            "5s, critical group_wait 2s): watch " + str(home / "notify.log"))
