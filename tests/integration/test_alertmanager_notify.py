"""Notifications: `txmon notify` prints and forwards to Slack; real Prometheus → real
Alertmanager → `txmon notify` on loopback: one page per incident, with its summary."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from support.obs import (
    RULES,
    ExporterProcess,
    NotifyProcess,
    PromStack,
    RecordingServer,
    alert_key,
    free_port,
    make_alert,
    produce,
    wait_for,
)

from devstack import monitoring
from exporter.notify import format_notification

SUMMARY = ("reversed 122/min against ~2 expected, approved 62 against ~300, "
           "since 14:33 UTC")
PAYLOAD = {
    "version": "4", "status": "firing", "receiver": "txmon-notify",
    "groupLabels": {"alertname": "TransactionAnomaly", "incident_id": "rev-1"},
    "commonLabels": {"alertname": "TransactionAnomaly", "severity": "critical"},
    "alerts": [
        {"status": "firing", "startsAt": "2026-03-02T14:34:10Z",
         "labels": {"alertname": "TransactionAnomaly", "severity": "critical",
                    "group": "reversed", "incident_id": "rev-1"},
         "annotations": {"summary": SUMMARY,
                         "description": "critical incident rev-1 (groups: reversed,approved),"
                                        " open for 4m 0s as of its latest closed minute.",
                         "runbook_url": "docs/runbook.md#transactionanomaly"}},
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
    """What an operator acts on, in order: what and how bad, the summary line, severity
    and duration, the runbook."""
    text = format_notification(PAYLOAD)
    lines = text.splitlines()
    assert lines[0] == "[FIRING] TransactionAnomaly: 1 alert(s) (incident_id=rev-1)"
    assert lines[1] == ("  - FIRING critical TransactionAnomaly [group=reversed, "
                        "incident_id=rev-1] since 2026-03-02T14:34:10Z")
    assert lines[2] == f"    {SUMMARY}"
    assert "open for 4m 0s" in lines[3]
    assert lines[4] == "    runbook: docs/runbook.md#transactionanomaly"


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
        assert notify.headers() == ["[FIRING] TransactionAnomaly: 1 alert(s) (incident_id=rev-1)"]
        assert f"    {SUMMARY}" in notify.lines
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


def am_alerts(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=5) as r:
        return json.loads(r.read())


def anomaly_notes(notify: NotifyProcess, incident: str) -> list[str]:
    return [h for h in notify.headers("[") if f"(incident_id={incident})" in h]


@pytest.mark.timeout(300)
def test_prometheus_alertmanager_notify_end_to_end(kafka_settings, unique_topics, txmon_env,
                                                   tmp_path):
    """Two incidents open at once: one page each, with the incident's latest summary; the
    critical one's warning alert is inhibited (one page, not two)."""
    ports = monitoring.Ports(prometheus=free_port(), alertmanager=free_port(),
                             exporter=free_port(), processor=free_port(), api=free_port(),
                             notify=free_port())
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    produce(kafka_settings, unique_topics.alerts, [
        make_alert("rev-1", "open", "reversed", t0, summary="reversed 40/min against ~2 "
                   "expected, since 14:33 UTC", since=t0, duration_s=60),
        make_alert("den-1", "open", "denied", t0 + timedelta(minutes=1), severity="warning"),
        make_alert("rev-1", "update", "reversed", t0 + timedelta(minutes=1),
                   statuses=["reversed", "approved"], groups=["reversed", "approved"],
                   summary=SUMMARY, since=t0, duration_s=120,
                   runbook_url="docs/runbook.md#transactionanomaly"),
    ], key=alert_key)
    notify = NotifyProcess(ports.notify)
    exporter = ExporterProcess(txmon_env, ports.exporter, log=tmp_path / "exporter.log")
    stack = None
    try:
        stack = PromStack(tmp_path, ports, rule_files=[RULES], with_alertmanager=True,
                          alertmanager_timings={"group_wait": "2s", "group_interval": "1m",
                                                "repeat_interval": "1h"})
        wait_for(lambda: anomaly_notes(notify, "rev-1") and anomaly_notes(notify, "den-1"),
                 90, what="a notification per incident")

        def rev_warning_inhibited():
            return any(a["labels"].get("incident_id") == "rev-1"
                       and a["labels"]["severity"] == "warning"
                       and a["status"]["state"] == "suppressed"
                       and a["status"]["inhibitedBy"] for a in am_alerts(ports.alertmanager))

        wait_for(rev_warning_inhibited, 30, what="rev-1's warning inhibited by its critical")
        assert anomaly_notes(notify, "rev-1") == [
            "[FIRING] TransactionAnomaly: 1 alert(s) (incident_id=rev-1)"], notify.lines
        assert anomaly_notes(notify, "den-1") == [
            "[FIRING] TransactionAnomaly: 1 alert(s) (incident_id=den-1)"], notify.lines
        body = "\n".join(notify.lines)
        assert ("FIRING critical TransactionAnomaly [group=reversed, incident_id=rev-1, "
                "monitor=txmon-local]") in body
        assert f"    {SUMMARY}" in body  # the latest words, not the opening ones
        assert "critical incident rev-1 (groups: reversed,approved), open for 2m 0s" in body
        assert "    denied 120/min against ~20 expected, since " in body  # older record
        assert "runbook: docs/runbook.md#transactionanomaly" in body
        firing = [a for a in stack.alerts() if a["labels"]["alertname"] == "TransactionAnomaly"]
        assert {(a["labels"]["incident_id"], a["labels"]["severity"]) for a in firing} == {
            ("rev-1", "critical"), ("rev-1", "warning"), ("den-1", "warning")}
    finally:
        if stack:
            stack.stop()
        exporter.stop()
        notify.stop()


def test_txmon_alerts_shows_the_same_words():
    """`txmon alerts` prints the summary the page carries, how long so far, the runbook;
    a record from before the summary existed still reads as observed against usual."""
    from api.follow import render

    t0 = datetime(2026, 3, 2, 14, 33, tzinfo=UTC)
    line = render(make_alert("rev-1", "update", "reversed", t0, summary=SUMMARY, since=t0,
                             duration_s=240, runbook_url="docs/runbook.md#transactionanomaly"))
    assert SUMMARY in line and "for 4m00s" in line and "[rev-1]" in line
    assert line.endswith("docs/runbook.md#transactionanomaly")
    assert "reversed 120 (usual 20)" in render(make_alert("old", "open", "reversed", t0))
