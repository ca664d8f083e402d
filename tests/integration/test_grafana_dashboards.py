"""The provisioned dashboards against a real Prometheus scraping the real exporter fed with
a reference day: every panel's and annotation's PromQL returns data, every datasource uid
is provisioned, every metric is a contract name."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import date

import pytest
import yaml
from confluent_kafka import Producer
from support.obs import (
    REPO,
    RULES,
    ExporterProcess,
    PromStack,
    alert_key,
    free_port,
    make_alert,
    make_dead_letter,
    produce,
    reference_windows,
    value,
    wait_for,
    window_key,
)
from test_exporter_kafka import commit_processor_offsets

from devstack import monitoring
from txmon.contracts import STATUSES
from txmon.contracts import metrics as m

DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
BUILTIN_UIDS = {"-- Grafana --", "grafana"}
DAY = date(2026, 3, 2)


def provisioned_uids() -> set[str]:
    uids = set()
    for path in (REPO / "grafana" / "provisioning" / "datasources").glob("*.yml"):
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            uids.add(ds["uid"])
    return uids


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_queries(dash: dict) -> list[tuple[str, str, bool]]:
    """(where, expr, instant) of every panel target and Prometheus annotation."""
    out = []
    for panel in walk_panels(dash["panels"]):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"],
                        bool(target.get("instant"))))
    for ann in dash["annotations"]["list"]:
        if ann.get("expr"):
            out.append((f"annotation {ann['name']!r}", ann["expr"], False))
    return out


def substitute(expr: str, status: str) -> str:
    """Grafana's variables as Grafana would expand them for a 1 s scrape interval."""
    return (expr.replace("$status", status).replace("$__rate_interval", "10s")
            .replace("$__range", "5m").replace("$__interval", "1s"))


def test_dashboards_use_only_provisioned_datasources_and_contract_metrics():
    uids = provisioned_uids()
    assert uids == {"txmon-prometheus"}
    provider = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "dashboards" / "txmon.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        refs = []
        for panel in walk_panels(dash["panels"]):
            if panel["type"] == "row":
                continue
            refs.append((panel["title"], panel["datasource"]["uid"]))
            refs += [(panel["title"], t["datasource"]["uid"]) for t in panel["targets"]]
        refs += [(a["name"], a["datasource"]["uid"]) for a in dash["annotations"]["list"]]
        refs += [(v["name"], v["datasource"]["uid"]) for v in dash["templating"]["list"]
                 if "datasource" in v]
        for where, uid in refs:
            assert uid in uids or uid in BUILTIN_UIDS, (path.name, where, uid)
        assert any(v["name"] == "status" for v in dash["templating"]["list"])
        for where, expr, _ in dashboard_queries(dash):
            for metric in re.findall(r"\btxmon_[a-z_]+", expr):
                assert metric in m.ALL, (where, metric)


def test_every_dashboard_query_returns_data(kafka_settings, unique_topics, txmon_env,
                                            shared_data, tmp_path):
    t = unique_topics
    windows = reference_windows(shared_data / "transactions_1.csv", DAY)
    at = {f"{w.start:%H:%M}": w for w in windows}
    group = f"proc-{uuid.uuid4().hex[:6]}"
    producer = Producer(kafka_settings.confluent())
    for i in range(60):
        producer.produce(t.transactions, value=b"{}", partition=i % 3)
    producer.flush(10)
    commit_processor_offsets(kafka_settings, t.transactions, group, {0: 15, 1: 20, 2: 20})

    ports = monitoring.Ports(prometheus=free_port(), alertmanager=free_port(),
                             exporter=free_port(), processor=free_port(), api=free_port())
    exporter = ExporterProcess(txmon_env, ports.exporter, "--processor-group", group,
                               "--lag-interval", "1", log=tmp_path / "exporter.log")
    stack = None
    try:
        stack = PromStack(tmp_path, ports, rule_files=[RULES])
        # Replay the day into window-counts while Prometheus scrapes, in twelve slices;
        # the reversed/denied surge of the afternoon opens incidents on the way.
        alerts = {
            "14:33": [make_alert("rev-1", "open", "reversed", at["14:33"].start)],
            "14:35": [make_alert("den-1", "open", "denied", at["14:35"].start,
                                 severity="warning")],
            "15:34": [make_alert("rev-1", "update", "reversed", at["15:34"].start, score=0.97)],
            "17:21": [make_alert("den-1", "resolved", "denied", at["17:21"].start)],
        }
        for chunk in range(12):
            part = windows[chunk * 120:(chunk + 1) * 120]
            produce(kafka_settings, t.window_counts, part, key=window_key)
            produce(kafka_settings, t.alerts,
                    [a for w in part for a in alerts.get(f"{w.start:%H:%M}", [])], key=alert_key)
            if chunk % 4 == 0:
                produce(kafka_settings, t.dead_letter, [make_dead_letter("malformed_json"),
                                                        make_dead_letter("late")])
            time.sleep(1.0)
        wait_for(lambda: value(exporter.samples(), m.WINDOWS_TOTAL) == 1440, 60,
                 what="exporter read the whole day")
        # Enough scrapes after the last slice for rate() and increase() over 10 s.
        wait_for(lambda: stack.query(f"count_over_time({m.WINDOWS_TOTAL}[30s]) >= 12"), 60,
                 what="scrapes of the finished day")
        s = exporter.samples()
        assert value(s, m.TRANSACTIONS_TOTAL, status="approved") == 208_838
        assert value(s, m.INCIDENTS_OPEN, group="reversed", severity="critical") == 1

        now = time.time()
        labels = stack.api("label/status/values", **{"match[]": m.WINDOW_TRANSACTIONS})
        assert set(labels) == set(STATUSES)
        checked = 0
        for path in DASHBOARDS:
            for where, expr, instant in dashboard_queries(json.loads(path.read_text())):
                for status in (".*", "approved|denied"):
                    q = substitute(expr, status)
                    if instant:
                        result = stack.query(q, time=now)
                        values = [r["value"][1] for r in result]
                    else:
                        result = stack.query_range(q, now - 20, now, "1s")
                        values = [v[1] for r in result for v in r["values"]]
                    assert result, f"{path.name}: {where}: no data for {q}"
                    assert any(v not in ("NaN", "+Inf", "-Inf") for v in values), (where, q)
                    checked += 1
        assert checked >= 40
    finally:
        if stack:
            stack.stop()
        exporter.stop()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_json_shape(path):
    dash = json.loads(path.read_text())
    assert dash["uid"] and dash["title"]
    ids = [p["id"] for p in walk_panels(dash["panels"])]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in walk_panels(dash["panels"]))
    for needed in ("transactions per minute", "approvals", "detector score", "incidents",
                   "freshness", "lag", "dead letters", "late events"):
        assert needed in titles, needed
