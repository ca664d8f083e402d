"""`txmon alerts` against the broker: the alerts there are now, each once (a re-emission
is the same alert), and with --follow the new ones as they come."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from support.obs import TXMON, alert_key, make_alert, produce

from api.follow import render

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def history():
    return [make_alert("rev-1", "open", "reversed", T0, summary="reversed 90/min"),
            make_alert("rev-1", "update", "reversed", T0 + timedelta(minutes=1)),
            make_alert("den-1", "open", "denied", T0 + timedelta(minutes=2),
                       severity="warning")]


def test_alerts_lists_each_alert_once(kafka_settings, unique_topics, txmon_env):
    alerts = history()
    produce(kafka_settings, unique_topics.alerts, alerts + alerts[:1], key=alert_key)
    produce(kafka_settings, unique_topics.alerts, [b"garbage"], key=lambda r: "bad")
    plain = subprocess.run([TXMON, "alerts"], env=txmon_env, capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[:3] == [render(a) for a in alerts]
    assert len(lines) == 4 and lines[3].startswith("(undecodable record at offset 4:")
    raw = subprocess.run([TXMON, "alerts", "--json"], env=txmon_env, capture_output=True,
                         text=True, timeout=120)
    assert [json.loads(line)["id"] for line in raw.stdout.splitlines()
            if line.startswith("{")] == [a.id for a in alerts]


def lines_of(proc: subprocess.Popen, errors: list[str]) -> queue.Queue[str]:
    """The process's output lines, as they come; its stderr read into `errors` as it
    comes too: an undrained pipe fills, and the process then blocks writing its logs
    and cannot exit."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    def drain() -> None:
        errors.extend(proc.stderr)

    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=drain, daemon=True).start()
    return lines


def first_new(kafka_settings, topic: str, lines: queue.Queue[str]) -> str | None:
    """The first line printed while a new alert is written each second (the follower
    starts at the end it finds, whenever that is)."""
    deadline, n = time.monotonic() + 90, 0
    while time.monotonic() < deadline:
        new = make_alert(f"new-{n}", "open", "failed", T0 + timedelta(hours=1, minutes=n))
        produce(kafka_settings, topic, [new], key=alert_key)
        n += 1
        try:
            return lines.get(timeout=1.0)
        except queue.Empty:
            continue
    return None


@contextmanager
def ctrl_c_reaches_children():
    """A child inherits an ignored SIGINT, and Python then installs no KeyboardInterrupt:
    under a suite started in the background by a script (`make test &`: the shell
    ignores SIGINT for it) the follower was deaf to Ctrl-C, unless an earlier test in
    the same worker happened to set a handler. A handler set here is reset to the
    default in the child, as a terminal gives it."""
    before = signal.getsignal(signal.SIGINT)
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("from_start", [False, True])
def test_alerts_follow_prints_new_alerts(kafka_settings, unique_topics, txmon_env,
                                         from_start):
    old = history()
    produce(kafka_settings, unique_topics.alerts, old, key=alert_key)
    with ctrl_c_reaches_children():
        proc = subprocess.Popen([TXMON, "alerts", "--follow"] + ["--from-start"] * from_start,
                                env=txmon_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        errors: list[str] = []
        lines = lines_of(proc, errors)
        if from_start:
            assert [lines.get(timeout=60) for _ in old] == [render(a) for a in old]
        printed = first_new(kafka_settings, unique_topics.alerts, lines)
        assert printed is not None, proc.poll()
        assert "[new-" in printed, printed  # nothing old without --from-start
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"exit {code} after SIGINT; stderr: {''.join(errors)[-3000:]}"
    finally:
        proc.kill()
        proc.wait()
