"""`txmon monitoring up|down|status`: Debian's binaries started directly, on loopback,
with the repo's configs; up twice gives one of each, down frees the ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from support.obs import TXMON, free_port, http_get, require_binary, wait_for

from devstack import monitoring


@pytest.fixture
def mon_env(tmp_path):
    require_binary(monitoring.prometheus_binary(), "prometheus")
    require_binary(monitoring.alertmanager_binary(), "prometheus-alertmanager")
    env = dict(os.environ, TXMON_STATE_DIR=str(tmp_path / "state"),
               TXMON_PROMETHEUS_PORT=str(free_port()), TXMON_ALERTMANAGER_PORT=str(free_port()),
               TXMON_EXPORTER_PORT=str(free_port()), TXMON_NOTIFY_PORT=str(free_port()))
    yield env
    subprocess.run([TXMON, "monitoring", "down"], env=env, capture_output=True, timeout=60)


def txmon(env, *args):
    return subprocess.run([TXMON, *args], env=env, capture_output=True, text=True, timeout=120)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_up_status_down(mon_env, tmp_path):
    prom, am = int(mon_env["TXMON_PROMETHEUS_PORT"]), int(mon_env["TXMON_ALERTMANAGER_PORT"])
    up = txmon(mon_env, "monitoring", "up")
    assert up.returncode == 0, up.stderr
    assert f"prometheus: started http://127.0.0.1:{prom}" in up.stdout
    assert f"alertmanager: started http://127.0.0.1:{am}" in up.stdout
    pids = {p.name: p.read_text() for p in (tmp_path / "state" / "monitoring").glob("*.pid")}
    assert set(pids) == {"prometheus.pid", "alertmanager.pid"}

    again = txmon(mon_env, "monitoring", "up")
    assert again.returncode == 0 and again.stdout.count("already running") == 2
    assert pids == {p.name: p.read_text()
                    for p in (tmp_path / "state" / "monitoring").glob("*.pid")}

    status = txmon(mon_env, "monitoring", "status")
    assert status.returncode == 0 and status.stdout.count("ready") == 2, status.stdout

    # Prometheus runs the repo's rules and knows its Alertmanager and exporter.
    rules = json.loads(http_get(f"http://127.0.0.1:{prom}/api/v1/rules"))["data"]["groups"]
    names = {r["name"] for g in rules for r in g["rules"]}
    assert {"TransactionAnomaly", "PipelineStalled", "ExporterDown"} <= names
    wait_for(lambda: json.loads(http_get(f"http://127.0.0.1:{prom}/api/v1/alertmanagers"))[
        "data"]["activeAlertmanagers"], 30, what="alertmanager discovered")

    def exporter_targets():
        data = json.loads(http_get(f"http://127.0.0.1:{prom}/api/v1/targets"))["data"]
        return [t for t in data["activeTargets"] if t["labels"]["job"] == "exporter"]

    exporter = wait_for(exporter_targets, 30, what="scrape targets")
    assert exporter[0]["scrapeUrl"] == (
        f"http://127.0.0.1:{mon_env['TXMON_EXPORTER_PORT']}/metrics")
    # Alertmanager's HA gossip is off: nothing listens on 0.0.0.0:9094 for us.
    am_status = json.loads(http_get(f"http://127.0.0.1:{am}/api/v2/status"))
    assert am_status["cluster"]["status"] == "disabled"

    down = txmon(mon_env, "monitoring", "down")
    assert down.returncode == 0 and down.stdout.count(": stopped") == 2, down.stdout
    assert not listening(prom) and not listening(am)
    status = txmon(mon_env, "monitoring", "status")
    assert status.returncode == 3 and status.stdout.count("stopped") == 2


def test_port_in_use_is_one_clear_line(mon_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", int(mon_env["TXMON_ALERTMANAGER_PORT"])))
        sock.listen()
        up = txmon(mon_env, "monitoring", "up")
    assert up.returncode == 2
    assert up.stderr.strip() == (f"txmon monitoring: error: alertmanager: port "
                                 f"{mon_env['TXMON_ALERTMANAGER_PORT']} on 127.0.0.1 is "
                                 "already in use")
