"""`txmon demo up | status | down` (what `make demo` and `make down` run), shortened:
the session broker, this test's topics, free ports, a temporary state dir."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.monitoring import alertmanager_binary, prometheus_binary
from devstack.processes import free_ports, pid_alive, port_free
from txmon.contracts import minute_key

PORT_VARS = ("TXMON_API_PORT", "TXMON_PROCESSOR_METRICS_PORT", "TXMON_EXPORTER_PORT",
             "TXMON_NOTIFY_PORT", "TXMON_PROMETHEUS_PORT", "TXMON_ALERTMANAGER_PORT")


def txmon(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "txmon.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def demo_env(txmon_env: dict) -> dict:
    env = dict(txmon_env)
    env.update(zip(PORT_VARS, map(str, free_ports(len(PORT_VARS))), strict=True))
    env.update({
        "DEMO_SECONDS": "20",
        "DEMO_BACKFILL_MINUTES": "3",
        "DEMO_TRAIN_DAYS": "1",
        # Past the end of the short stream: no alert to wait for.
        "DEMO_INCIDENT": "denied:x4:1m@10m",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def pids(home: Path) -> dict[str, int]:
    out = {}
    for path in list(home.glob("*.pid")) + list(home.glob("monitoring/*.pid")):
        out[path.stem] = int(path.read_text())
    return out


def alive(pid: int) -> bool:
    """Still running. An orphan the demo stopped is a zombie until init reaps it, which
    on a loaded machine can trail `demo down` by a moment: exited is not running."""
    return pid_alive(pid)


def live_minute(out: str, before: datetime) -> str:
    """The minute, as the API shows it (`minute_key`), the live stream began in: the
    demo's log says only its time of day, and the stream began before `before`, maybe
    the day before."""
    hh, mm = map(int, re.search(r"^\[(\d\d):(\d\d):\d\d [^]]*\] produce\s+streaming in "
                                r"real", out, re.M).groups())
    began = before.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if began > before:
        began -= timedelta(days=1)
    return minute_key(began)


def test_the_live_minute_is_read_across_midnight():
    line = "[00:01:05 demo] produce   streaming in real time: ~20 tx/s"
    assert live_minute(line, datetime(2026, 12, 6, 0, 2, tzinfo=UTC)) == "2026-12-06T00:01"
    assert live_minute(line.replace("00:01", "23:59", 1),
                       datetime(2026, 12, 6, 0, 0, 30, tzinfo=UTC)) == "2026-12-05T23:59"


@pytest.mark.slow
def test_demo_up_streams_and_down_stops_everything(demo_env: dict, kafka_settings) -> None:
    home = Path(demo_env["TXMON_STATE_DIR"]) / "demo"
    ports = {var: int(demo_env[var]) for var in PORT_VARS}
    monitoring = bool(prometheus_binary() and alertmanager_binary())
    running: dict[str, int] = {}
    try:
        started = time.monotonic()
        up = txmon(demo_env, "demo", "up", timeout=300)
        took, up_ended = time.monotonic() - started, datetime.now(UTC)
        out = up.stdout + up.stderr
        assert up.returncode == 0, out
        for name in ("processor", "api", "exporter", "notify"):
            assert f"] {name:<8} started on port " in out, out
        assert "using the broker at " + kafka_settings.bootstrap in out
        # Window counts flowed: backfilled minutes closed and live minutes followed.
        assert "backfilled minute(s) closed" in out, out
        assert "demo finished" in out and "make down" in out, out
        # librdkafka speaks through Python logging, never raw `%3|...|FAIL|...` lines.
        assert not re.search(r"^%\d", out, re.M), out
        print(f"short demo: {took:.0f}s")

        # The services stay up for exploring, and say the same as the printed minutes.
        status = txmon(demo_env, "demo", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        # The minute(s) streamed live close too, once the worker's idle timeout passes
        # (the demo may have ended first on a loaded machine).
        live_from = live_minute(out, up_ended)
        deadline = time.monotonic() + 60
        while True:
            code, body = get(f"http://127.0.0.1:{ports['TXMON_API_PORT']}/history_counts")
            minutes = json.loads(body)
            if any(m["minute"] >= live_from for m in minutes) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert code == 200 and len(minutes) >= 4, minutes
        assert all(sum(m["summary"].values()) > 0 for m in minutes[:4])
        assert minutes[-1]["minute"] >= live_from, (live_from, minutes[-1])
        printed = re.findall(r"\] minute\s+.*?(\d{4}-\d\d-\d\dT\d\d:\d\d)Z", out)
        assert printed and set(printed) <= {m["minute"] for m in minutes}, out
        live = f"http://127.0.0.1:{ports['TXMON_API_PORT']}/live"
        assert re.search(r"\] open\s+live page\s+" + re.escape(live), out), out
        first_url = re.search(r"https?://\S+", out).group(0)
        assert first_url == live, f"the first URL printed is {first_url}, not the live page"
        code, body = get(live + "/data")
        assert code == 200 and len(json.loads(body)["minutes"]) >= 4
        code, metrics = get(f"http://127.0.0.1:{ports['TXMON_EXPORTER_PORT']}/metrics")
        assert code == 200 and "txmon_" in metrics
        if monitoring:
            assert "Prometheus        http://127.0.0.1:" in out
            code, _ = get(f"http://127.0.0.1:{ports['TXMON_PROMETHEUS_PORT']}/-/ready")
            assert code == 200

        again = txmon(demo_env, "demo", "up")
        assert again.returncode == 2 and "already running" in again.stderr

        running = pids(home)
        expected = {"processor", "api", "exporter", "notify"} | (
            {"prometheus", "alertmanager"} if monitoring else set())
        assert expected <= set(running)
    finally:
        down = txmon(demo_env, "demo", "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    for name, pid in running.items():
        assert not alive(pid), f"{name} (pid {pid}) survived `txmon demo down`"
    for var, port in ports.items():
        if var in ("TXMON_PROMETHEUS_PORT", "TXMON_ALERTMANAGER_PORT") and not monitoring:
            continue
        assert port_free(port), f"{var}={port} still bound after down"
    twice = txmon(demo_env, "demo", "down")
    assert twice.returncode == 0 and "was not running" in twice.stdout
    assert txmon(demo_env, "demo", "status").returncode == 3
    # An external broker is not the demo's to stop.
    from confluent_kafka.admin import AdminClient

    assert AdminClient(kafka_settings.confluent()).list_topics(timeout=10).topics


def test_demo_refuses_a_taken_port_before_starting_anything(demo_env: dict) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", int(demo_env["TXMON_API_PORT"])))
    holder.listen()
    try:
        result = txmon(demo_env, "demo", "up")
    finally:
        holder.close()
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert f"api {demo_env['TXMON_API_PORT']} (set TXMON_API_PORT)" in result.stderr
    home = Path(demo_env["TXMON_STATE_DIR"]) / "demo"
    assert not pids(home) if home.exists() else True


def test_down_without_a_demo_is_harmless(demo_env: dict) -> None:
    result = txmon(demo_env, "demo", "down")
    assert result.returncode == 0, result.stderr
    assert "was not running" in result.stdout

