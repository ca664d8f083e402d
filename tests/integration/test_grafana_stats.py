"""The dashboard tells the truth: after a run with a known number of incidents, every
stat panel whose value the test can know shows it, as Grafana would compute it (range
query, last value, the panel's rounding) from a real Prometheus scraping the real
exporter. And the live page (GET /live in Chromium) shows the same numbers as the
dashboard for the same minute.

The run opens its incidents after Prometheus has scraped the exporter at least once:
the case where a labelled counter that first appeared at 1 had no increase() at all.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from support.live import ApiProcess, chromium_page
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
    value,
    wait_for,
    window_key,
)

from devstack import monitoring
from txmon.contracts import STATUSES, WindowCount
from txmon.contracts import metrics as m

DASHBOARD = REPO / "grafana" / "dashboards" / "txmon-overview.json"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTES = 30


def run_windows() -> list[WindowCount]:
    out = []
    for i in range(MINUTES):
        ws = START + timedelta(minutes=i)
        counts = {s: (i * (k + 2)) % 23 + (50 if s == "approved" else 0)
                  for k, s in enumerate(STATUSES)}
        out.append(WindowCount(id=ws.isoformat(), start=ws, end=ws + timedelta(minutes=1),
                               counts=counts, total=sum(counts.values()), score=0.2,
                               threshold=0.6))
    return out


def run_alerts() -> list:
    """Three incidents opened; one updated, one resolved: two still open."""
    at = [START + timedelta(minutes=i) for i in (10, 12, 15, 20, 25)]
    return [
        make_alert("inc-a", "open", "reversals", at[0], statuses=["reversed"]),
        make_alert("inc-b", "open", "denials", at[1], statuses=["denied"], severity="warning"),
        make_alert("inc-a", "update", "reversals", at[2], statuses=["reversed"], score=0.9),
        make_alert("inc-b", "resolved", "denials", at[3], statuses=["denied"],
                   severity="warning"),
        make_alert("inc-c", "open", "failures", at[4], statuses=["failed"]),
    ]


def stat_panels() -> dict[str, tuple[str, int | None]]:
    dash = json.loads(DASHBOARD.read_text())
    return {p["title"]: (p["targets"][0]["expr"], p["fieldConfig"]["defaults"].get("decimals"))
            for p in dash["panels"] if p["type"] == "stat"}


def grafana_stat(stack: PromStack, expr: str, decimals: int | None) -> float:
    """What the stat panel shows: a range query over the dashboard's 6 h, last value."""
    q = (expr.replace("$__range", "6h").replace("$__rate_interval", "10s")
         .replace('{status=~"$status"}', ""))
    now = time.time()
    result = stack.query_range(q, now - 30, now, "1s")
    assert len(result) == 1, (q, result)
    last = float(result[0]["values"][-1][1])
    return round(last, decimals) if decimals is not None else last


def test_stat_panels_and_live_page_agree_with_the_run(kafka_settings, unique_topics,
                                                      txmon_env, tmp_path):
    t = unique_topics
    ports = monitoring.Ports(prometheus=free_port(), alertmanager=free_port(),
                             exporter=free_port(), processor=free_port(), api=free_port())
    exporter = ExporterProcess(txmon_env, ports.exporter, log=tmp_path / "exporter.log")
    stack = api = None
    try:
        stack = PromStack(tmp_path, ports, rule_files=[RULES])
        wait_for(lambda: stack.query(f"count_over_time({m.WINDOWS_TOTAL}[1m]) >= 3"), 60,
                 what="scrapes of the exporter before any incident")
        windows, alerts = run_windows(), run_alerts()
        produce(kafka_settings, t.window_counts, windows, key=window_key)
        produce(kafka_settings, t.alerts, alerts, key=alert_key)
        produce(kafka_settings, t.dead_letter, [make_dead_letter("late")] * 2)
        wait_for(lambda: value(exporter.samples(), m.WINDOWS_TOTAL) == MINUTES, 60,
                 what="exporter read the run")
        seen = time.time()
        wait_for(lambda: stack.query(f"timestamp({m.WINDOWS_TOTAL}) > {seen + 3}"), 60,
                 what="scrapes after the run")

        stats = stat_panels()
        transactions = sum(w.total for w in windows)
        known = {"Incidents opened (range)": 3, "Incidents open": 2,
                 "Transactions counted": transactions, "Exporter: Kafka reachable": 1}
        shown = {title: grafana_stat(stack, *stats[title]) for title in known}
        assert shown == known

        [per_hour_expr] = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"]
                           if p["title"] == "Alert records per hour" for t in p["targets"]]
        per_hour = stack.query(f"({per_hour_expr}) > 0")
        records = {(r["metric"]["event"], r["metric"]["group"]): round(float(r["value"][1]))
                   for r in per_hour}
        assert records == {("open", "reversals"): 1, ("open", "denials"): 1,
                           ("update", "reversals"): 1, ("resolved", "denials"): 1,
                           ("open", "failures"): 1}

        api = ApiProcess(txmon_env, tmp_path / "api.log")
        with chromium_page() as page:
            page.goto(f"{api.url}/live")
            page.wait_for_selector(f"body[data-points='{MINUTES}']", timeout=20_000)
            page.wait_for_function(
                "document.querySelectorAll('#incidents tr.incident').length === 2")
            assert page.inner_text("#t-transactions") == f"{transactions:,}"
            assert int(page.inner_text("#t-incidents")) == shown["Incidents open"]
            assert int(page.inner_text("#t-dead")) == round(float(stack.query(
                f"sum({m.DEAD_LETTERS_TOTAL})")[0]["value"][1]))
            # The newest minute: the chart's last point against the dashboard's
            # 'Transactions per minute by status' panel.
            chart = page.evaluate("window.live.counts.data")
            grafana = {r["metric"]["status"]: float(r["value"][1])
                       for r in stack.query(m.WINDOW_TRANSACTIONS)}
            assert {s: chart[i][-1] for i, s in enumerate(STATUSES, start=1)} == grafana
    finally:
        if api:
            api.stop()
        if stack:
            stack.stop()
        exporter.stop()
