"""Notifications: `txmon notify` prints and forwards to Slack; real Prometheus → real
Alertmanager → `txmon notify` on loopback delivers the anomaly once, grouped."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from obs_support import (
    ExporterProcess,
    NotifyProcess,
    PromStack,
    RecordingServer,
    alert_key,
    free_port,
    make_alert,
    produce,
    short_rules,
    wait_for,
)

from exporter import monitoring
from exporter.notify import format_notification

PAYLOAD = {
    "version": "4", "status": "firing", "receiver": "txmon-notify",
    "groupLabels": {"alertname": "TransactionAnomaly"},
    "commonLabels": {"alertname": "TransactionAnomaly", "severity": "critical"},
    "alerts": [
        {"status": "firing", "startsAt": "2026-03-02T14:34:00Z",
         "labels": {"alertname": "TransactionAnomaly", "severity": "critical",
                    "group": "reversed"},
         "annotations": {"summary": "Transaction anomaly: reversed incident open",
                         "description": "1 critical incident(s) open",
                         "runbook_url": "docs/runbook.md#transactionanomaly"}},
        {"status": "firing", "startsAt": "2026-03-02T14:36:00Z",
         "labels": {"alertname": "TransactionAnomaly", "severity": "critical",
                    "group": "denied"},
         "annotations": {"summary": "Transaction anomaly: denied incident open"}},
    ],
}


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_format_is_readable():
    text = format_notification(PAYLOAD)
    lines = text.splitlines()
    assert lines[0] == "[FIRING] TransactionAnomaly: 2 alert(s)"
    assert "FIRING critical TransactionAnomaly [group=reversed] since 2026-03-02T14:34:00Z" \
        in lines[1]
    assert "runbook: docs/runbook.md#transactionanomaly" in text


def test_notify_prints_and_forwards_to_slack():
    slack = RecordingServer()
    notify = NotifyProcess(free_port(), env=dict(os.environ,
                                                 SLACK_WEBHOOK_URL=slack.url + "/services/T/B/X"))
    try:
        assert post(notify.url, json.dumps(PAYLOAD).encode()) == 200
        wait_for(lambda: len(slack.requests) == 1, 10, what="Slack forward")
        forwarded = slack.requests[0]
        assert forwarded["method"] == "POST" and forwarded["path"] == "/services/T/B/X"
        assert forwarded["headers"]["Content-Type"] == "application/json"
        assert forwarded["json"] == {"text": format_notification(PAYLOAD)}
        assert notify.headers() == ["[FIRING] TransactionAnomaly: 2 alert(s)"]
        # Not a notification: refused, nothing printed or forwarded.
        assert post(notify.url, b"not json") == 400
        assert post(notify.url, b"[1, 2]") == 400
        time.sleep(0.5)
        assert len(slack.requests) == 1 and len(notify.headers()) == 1
        assert notify.proc.poll() is None
    finally:
        notify.stop()
        slack.stop()


def test_notify_without_slack_only_prints():
    notify = NotifyProcess(free_port(), env={k: v for k, v in os.environ.items()
                                             if k != "SLACK_WEBHOOK_URL"})
    try:
        assert post(notify.url, json.dumps({**PAYLOAD, "status": "resolved"}).encode()) == 200
        wait_for(lambda: notify.headers(), 10, what="printed notification")
        assert notify.headers()[0].startswith("[RESOLVED] TransactionAnomaly")
    finally:
        notify.stop()


@pytest.mark.timeout(300)
def test_prometheus_alertmanager_notify_end_to_end(kafka_settings, unique_topics, txmon_env,
                                                   tmp_path):
    """Two incidents open at once → one TransactionAnomaly notification listing both."""
    ports = monitoring.Ports(prometheus=free_port(), alertmanager=free_port(),
                             exporter=free_port(), processor=free_port(), api=free_port(),
                             notify=free_port())
    rules = short_rules(tmp_path / "rules.yml", {"TransactionAnomaly": {"for": "2s"}})
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    produce(kafka_settings, unique_topics.alerts, [
        make_alert("rev-1", "open", "reversed", t0),
        make_alert("den-1", "open", "denied", t0 + timedelta(minutes=1)),
        make_alert("rev-1", "update", "reversed", t0 + timedelta(minutes=1)),
    ], key=alert_key)
    notify = NotifyProcess(ports.notify)
    exporter = ExporterProcess(txmon_env, ports.exporter, log=tmp_path / "exporter.log")
    stack = None
    try:
        stack = PromStack(tmp_path, ports, rule_files=[rules], with_alertmanager=True,
                          alertmanager_timings={"group_wait": "2s", "group_interval": "1m",
                                                "repeat_interval": "1h"})
        wait_for(lambda: notify.headers("[FIRING] TransactionAnomaly"), 90,
                 what="anomaly notification")
        time.sleep(8)  # more evaluations and Alertmanager flushes: nothing new may come
        anomaly = notify.headers("[FIRING] TransactionAnomaly")
        assert anomaly == ["[FIRING] TransactionAnomaly: 2 alert(s)"], notify.lines
        body = "\n".join(notify.lines)
        assert "[group=denied, monitor=txmon-local]" in body
        assert "[group=reversed, monitor=txmon-local]" in body
        assert "runbook: docs/runbook.md#transactionanomaly" in body
        firing = [a for a in stack.alerts() if a["labels"]["alertname"] == "TransactionAnomaly"]
        assert {a["labels"]["group"] for a in firing} == {"denied", "reversed"}
    finally:
        if stack:
            stack.stop()
        exporter.stop()
        notify.stop()
