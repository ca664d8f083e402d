"""Prometheus and Alertmanager configs as the real tools see them: promtool and amtool,
plus the conventions every rule must follow (for:, severity, annotations, runbook)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from support.obs import REPO, promtool, require_binary

from devstack import monitoring
from txmon.contracts import metrics as m

RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
REQUIRED_ALERTS = {"TransactionAnomaly", "PipelineStalled", "ConsumerLagHigh", "DeadLetterRate",
                   "ExporterDown"}


def rules():
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def run(cmd, cwd=REPO):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("config", ["prometheus/prometheus.yml",
                                    "prometheus/prometheus-compose.yml"])
def test_promtool_check_config(config):
    out = run([promtool(), "check", "config", config])
    assert "SUCCESS" in out


def test_rendered_local_config_is_valid(tmp_path):
    ports = monitoring.Ports(prometheus=19090, alertmanager=19093, exporter=19108)
    cfg = monitoring.render_prometheus_config(tmp_path / "p.yml", ports)
    run([promtool(), "check", "config", str(cfg)])
    doc = yaml.safe_load(cfg.read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in doc["scrape_configs"]}
    assert targets["exporter"] == ["127.0.0.1:19108"]
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:19093"]


def test_promtool_rule_unit_tests():
    out = run([promtool(), "test", "rules", "prometheus/tests/txmon_test.yml"])
    assert "SUCCESS" in out


def test_promtool_catches_a_wrong_expectation(tmp_path):
    """The rule tests can fail: a wrong expected duration is reported."""
    src = (REPO / "prometheus" / "tests" / "txmon_test.yml").read_text()
    bad = src.replace("no window closed for 4m 0s", "no window closed for 9m 0s").replace(
        "../rules/txmon.yml", str(REPO / "prometheus" / "rules" / "txmon.yml"))
    (tmp_path / "bad_test.yml").write_text(bad)
    proc = subprocess.run([promtool(), "test", "rules", str(tmp_path / "bad_test.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


def test_every_rule_follows_the_conventions():
    anchors = {"#" + re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
               for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)}
    seen = set()
    for rule in rules():
        name = rule["alert"]
        seen.add(name)
        assert rule.get("for"), f"{name}: no for:"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        notes = rule["annotations"]
        assert notes.get("summary") and notes.get("description"), name
        path, anchor = notes["runbook_url"].split("#")
        assert path == "docs/runbook.md" and "#" + anchor in anchors, (name, anchor)
        text = rule["expr"] + " ".join(notes.values())  # annotations query metrics too
        for metric in re.findall(r"\btxmon_[a-z_]+", text):
            assert metric in m.ALL, (name, metric)
    assert seen == REQUIRED_ALERTS


def test_anomaly_alert_is_one_per_incident_and_rides_out_restarts():
    """Identity {incident_id, group} (words in annotations, not labels), fired at once
    and kept through an exporter restart: docs/runbook.md#notification-latency."""
    anomaly = [r for r in rules() if r["alert"] == "TransactionAnomaly"]
    assert {r["labels"]["severity"] for r in anomaly} == {"critical", "warning"}
    for rule in anomaly:
        assert rule["expr"].startswith(f"max by (incident_id, group) ({m.INCIDENT_INFO}")
        assert rule["for"] == "0s" and rule["keep_firing_for"] == "2m"
        assert "$labels.incident_id" in rule["annotations"]["summary"]


@pytest.mark.parametrize("config", ["alertmanager/alertmanager.yml",
                                    "alertmanager/alertmanager-compose.yml"])
def test_amtool_check_config(config):
    amtool = require_binary(shutil.which("amtool"), "amtool")
    run([amtool, "check-config", config])


def test_alertmanager_routes_and_inhibits(tmp_path):
    """amtool's own routing answers: by severity, and the stall inhibits the anomaly."""
    amtool = require_binary(shutil.which("amtool"), "amtool")
    cfg = str(REPO / "alertmanager" / "alertmanager.yml")
    out = run([amtool, "config", "routes", "test", "--config.file", cfg, "--verify.receivers",
               "txmon-notify", "alertname=TransactionAnomaly", "severity=critical",
               "group=denied"])
    assert "txmon-notify" in out
    out = run([amtool, "config", "routes", "test", "--config.file", cfg, "--verify.receivers",
               "txmon-notify-quiet", "alertname=X", "severity=info"])
    doc = yaml.safe_load((REPO / "alertmanager" / "alertmanager.yml").read_text())
    inhibit = [(r["source_matchers"], r["target_matchers"]) for r in doc["inhibit_rules"]]
    assert (['alertname="PipelineStalled"'], ['alertname="TransactionAnomaly"']) in inhibit
    assert doc["route"]["group_by"] == ["alertname", "incident_id"]
    severities = {r["matchers"][0] for r in doc["route"]["routes"]}
    assert severities == {'severity="critical"', 'severity="warning"', 'severity="info"'}
    critical, warning = doc["route"]["routes"][0], doc["route"]["routes"][1]
    assert critical["matchers"] == ['severity="critical"'] and critical["group_wait"] == "2s"
    # The warning of a critical incident must be inhibited before its group would flush.
    assert int(warning["group_wait"].rstrip("s")) > int(critical["group_wait"].rstrip("s"))


@pytest.mark.parametrize("pair", [("prometheus/prometheus.yml", "alertmanager/alertmanager.yml"),
                                  ("prometheus/prometheus-compose.yml",
                                   "alertmanager/alertmanager-compose.yml")])
def test_local_and_compose_share_the_notification_timings(pair):
    """The latency budget of docs/runbook.md holds in both stacks: exporter scraped and
    rules evaluated every 5 s, critical group_wait 2 s."""
    prom, am = (yaml.safe_load((REPO / p).read_text()) for p in pair)
    exporter = next(j for j in prom["scrape_configs"] if j["job_name"] == "exporter")
    assert exporter["scrape_interval"] == "5s"
    assert prom["global"]["evaluation_interval"] == "5s"
    critical = next(r for r in am["route"]["routes"] if r["matchers"] == ['severity="critical"'])
    assert critical["group_wait"] == "2s"
