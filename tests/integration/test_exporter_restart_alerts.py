"""No false resolves: the exporter restarts while a critical incident is open and paged;
Alertmanager tells `txmon notify` nothing more (no resolve, no second page), and
Prometheus keeps the same alert (same activeAt). The same restart with
`keep_firing_for: 0s` is the control: it does produce the false resolve, so the check
can fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.obs import (
    RULES,
    ExporterProcess,
    NotifyProcess,
    PromStack,
    alert_key,
    all_free_ports,
    make_alert,
    notifications,
    produce,
    short_rules,
    wait_for,
    window_key,
)

from txmon.contracts import STATUSES, WindowCount


def day_of_windows(start: datetime, n: int = 1440) -> list[WindowCount]:
    """A day of minutes on window-counts, so the restarted exporter has a topic to read
    before it is ready."""
    out = []
    for i in range(n):
        ws = start + timedelta(minutes=i)
        counts = {s: 0 for s in STATUSES} | {"approved": 100 + i % 7, "reversed": 2}
        out.append(WindowCount(id=ws.isoformat(), start=ws, end=ws + timedelta(minutes=1),
                               counts=counts, total=sum(counts.values())))
    return out


def evaluated_after(stack: PromStack, t: float) -> bool:
    """Prometheus has evaluated the txmon rules at a time later than `t`."""
    for group in stack.api("rules")["groups"]:
        if group["name"] == "txmon":
            last = datetime.fromisoformat(group["lastEvaluation"].replace("Z", "+00:00"))
            return last.timestamp() > t
    return False


def anomaly(stack: PromStack, incident: str) -> list[dict]:
    return [a for a in stack.alerts() if a["labels"].get("incident_id") == incident
            and a["labels"]["severity"] == "critical" and a["state"] == "firing"]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("keep_firing_for", ["2m", "0s"], ids=["as-shipped", "control"])
def test_exporter_restart_resolves_nothing(keep_firing_for, kafka_settings, unique_topics,
                                           txmon_env, tmp_path):
    shipped = keep_firing_for == "2m"
    rules = RULES if shipped else short_rules(
        tmp_path / "rules.yml", {"TransactionAnomaly": {"keep_firing_for": keep_firing_for}})
    ports = all_free_ports()
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    produce(kafka_settings, unique_topics.window_counts, day_of_windows(t0), key=window_key)
    produce(kafka_settings, unique_topics.alerts, [
        make_alert("inc-r", "open", "reversed", t0 + timedelta(hours=23),
                   summary="reversed 122/min against ~2 expected, since 23:00 UTC")],
            key=alert_key)
    notify = NotifyProcess(ports.notify)
    exporter = ExporterProcess(txmon_env, ports.exporter, log=tmp_path / "exporter.log")
    stack = None
    try:
        # Scrape and evaluate every second, resolves told within 2 s: a false resolve
        # would have every chance to reach txmon notify.
        stack = PromStack(tmp_path, ports, rule_files=[rules], with_alertmanager=True,
                          alertmanager_timings={"group_wait": "1s", "group_interval": "2s",
                                                "repeat_interval": "1h"})
        wait_for(lambda: notifications(notify, "inc-r"), 90, what="inc-r paged")
        active_at = anomaly(stack, "inc-r")[0]["activeAt"]

        exporter.stop()
        wait_for(lambda: stack.query('up{job="exporter"} == 0'), 30,
                 what="Prometheus failing to scrape the stopped exporter")
        # Down long enough by Prometheus' own clock for a resolve to be evaluated, sent
        # and told (group_interval 2 s) before the exporter is back.
        down = datetime.now(UTC).timestamp()
        wait_for(lambda: evaluated_after(stack, down + 4), 30,
                 what="rule evaluations while the exporter is down")
        exporter = ExporterProcess(txmon_env, ports.exporter, log=tmp_path / "exporter.log")
        exporter.wait_ready()
        back = datetime.now(UTC).timestamp()
        wait_for(lambda: stack.query(
            f'timestamp(txmon_incident_info{{incident_id="inc-r"}}) > {back}'), 30,
            what="the incident scraped from the restarted exporter")

        # A sentinel incident after the restart: by the time it is paged, anything
        # Alertmanager had to say about inc-r (resolved during the gap, told within
        # group_interval 2 s) has been said: its page takes >= 1 s scrape + 1 s
        # evaluation + 1 s group_wait from now.
        produce(kafka_settings, unique_topics.alerts, [
            make_alert("sentinel", "open", "denied", t0 + timedelta(hours=23, minutes=30))],
            key=alert_key)
        wait_for(lambda: notifications(notify, "sentinel"), 60, what="sentinel paged")
        told = [line for _, line in notifications(notify, "inc-r")]
        if shipped:
            assert told == ["[FIRING] TransactionAnomaly: 1 alert(s) (incident_id=inc-r)"], \
                notify.lines
            assert anomaly(stack, "inc-r")[0]["activeAt"] == active_at  # never re-fired
        else:
            assert "[RESOLVED] TransactionAnomaly: 1 alert(s) (incident_id=inc-r)" in told, \
                notify.lines
    finally:
        if stack:
            stack.stop()
        exporter.stop()
        notify.stop()
