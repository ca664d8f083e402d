"""The exporter's state machine, without Kafka: ids counted once, bad records counted,
incidents opened and resolved, lag series that come and go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from support.obs import make_alert, make_dead_letter, parse_metrics, value

from exporter.metrics import PipelineMetrics
from txmon.contracts import STATUSES, WindowCount, encode
from txmon.contracts import metrics as m

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def window(minute: int, **counts) -> WindowCount:
    start = T0 + timedelta(minutes=minute)
    full = {s: counts.get(s, 0) for s in STATUSES}
    return WindowCount(id=start.isoformat(), start=start, end=start + timedelta(minutes=1),
                       counts=full, total=sum(full.values()), late=counts.get("late", 0))


def scrape(pm: PipelineMetrics):
    return parse_metrics(generate_latest(pm.registry).decode())


def test_windows_counted_once_and_newest_wins():
    pm = PipelineMetrics(process_metrics=False, now=1000.0)
    s = scrape(pm)
    assert value(s, m.WINDOW_LAST_EMITTED) == 1000.0  # exporter start before any window
    assert value(s, m.TRANSACTIONS_TOTAL, status="failed") == 0
    w0, w1 = window(0, approved=100, failed=2), window(1, approved=90, denied=5, late=3)
    assert pm.apply_record("window-counts", encode(w0), 2000.0)
    assert pm.apply_record("window-counts", encode(w1), 2060.0)
    # A crash re-emits w0 (same id, same content): counted once, but proves liveness.
    assert not pm.apply_record("window-counts", encode(w0), 2100.0)
    s = scrape(pm)
    assert value(s, m.TRANSACTIONS_TOTAL, status="approved") == 190
    assert value(s, m.TRANSACTIONS_TOTAL, status="denied") == 5
    assert value(s, m.WINDOWS_TOTAL) == 2
    assert value(s, m.LATE_EVENTS_TOTAL) == 3
    assert value(s, m.WINDOW_TRANSACTIONS, status="approved") == 90  # newest minute
    assert value(s, m.WINDOW_TRANSACTIONS, status="failed") == 0
    assert value(s, m.WINDOW_NEWEST_END) == (T0 + timedelta(minutes=2)).timestamp()
    assert value(s, m.WINDOW_LAST_EMITTED) == 2100.0
    assert value(s, m.EXPORTER_DUPLICATE_RECORDS_TOTAL, topic="window-counts") == 1


def test_an_older_window_arriving_late_does_not_move_the_gauges_back():
    pm = PipelineMetrics(process_metrics=False)
    pm.apply_window(window(5, approved=50))
    pm.apply_window(window(3, approved=7))
    s = scrape(pm)
    assert value(s, m.WINDOW_TRANSACTIONS, status="approved") == 50
    assert value(s, m.TRANSACTIONS_TOTAL, status="approved") == 57


def test_bad_records_are_counted_not_fatal():
    pm = PipelineMetrics(process_metrics=False)
    assert not pm.apply_record("window-counts", b"\x00\xffgarbage")
    assert not pm.apply_record("alerts", b'{"id": 3}')
    assert not pm.apply_record("dead-letter", b"[]")
    assert not pm.apply_record("window-counts", None)  # tombstone: nothing to count
    s = scrape(pm)
    for topic in ("window-counts", "alerts", "dead-letter"):
        assert value(s, m.EXPORTER_BAD_RECORDS_TOTAL, topic=topic) == 1


def test_scores_from_windows_else_from_alerts():
    pm = PipelineMetrics(process_metrics=False)
    pm.apply_alert(make_alert("i1", "open", "denied", T0, score=0.9))
    s = scrape(pm)
    assert value(s, m.DETECTOR_SCORE) == 0.9 and value(s, m.DETECTOR_THRESHOLD) == 0.6
    w = window(1, approved=3)
    w.score, w.threshold = 0.2, 0.55
    pm.apply_window(w)
    pm.apply_alert(make_alert("i1", "update", "denied", T0 + timedelta(minutes=1), score=0.95))
    s = scrape(pm)
    assert value(s, m.DETECTOR_SCORE) == 0.2 and value(s, m.DETECTOR_THRESHOLD) == 0.55


def test_incidents_open_and_resolve_each_alert_once():
    pm = PipelineMetrics(process_metrics=False)
    a_open = make_alert("inc-d", "open", "denied", T0)
    a_upd = make_alert("inc-d", "update", "denied", T0 + timedelta(minutes=1), score=0.95)
    b_open = make_alert("inc-r", "open", "reversed", T0, severity="warning")
    for alert in (a_open, a_upd, b_open, a_open):  # a_open re-emitted
        pm.apply_record("alerts", encode(alert))
    s = scrape(pm)
    assert value(s, m.INCIDENTS_OPEN, group="denied", severity="critical") == 1
    assert value(s, m.INCIDENTS_OPEN, group="reversed", severity="warning") == 1
    assert value(s, m.INCIDENTS_TOTAL, group="denied", severity="critical") == 1
    assert value(s, m.ALERTS_TOTAL, event="open", group="denied", severity="critical") == 1
    assert value(s, m.ALERTS_TOTAL, event="update", group="denied", severity="critical") == 1
    labels = dict(incident_id="inc-d", group="denied", severity="critical", statuses="denied")
    assert value(s, m.INCIDENT_OPENED, **labels) == T0.timestamp()
    assert value(s, m.INCIDENT_SCORE, **labels) == 0.95
    assert value(s, m.INCIDENT_RESOLVED, **labels) is None
    assert set(pm.open_incidents()) == {"inc-d", "inc-r"}

    pm.apply_alert(make_alert("inc-d", "resolved", "denied", T0 + timedelta(minutes=5)))
    s = scrape(pm)
    assert value(s, m.INCIDENTS_OPEN, group="denied", severity="critical") == 0
    assert value(s, m.INCIDENT_RESOLVED, **labels) == (T0 + timedelta(minutes=6)).timestamp()
    assert set(pm.open_incidents()) == {"inc-r"}


def test_recent_incident_series_are_bounded():
    pm = PipelineMetrics(process_metrics=False, recent_incidents=3)
    for i in range(10):
        start = T0 + timedelta(minutes=10 * i)
        pm.apply_alert(make_alert(f"i{i}", "open", "failed", start))
        pm.apply_alert(make_alert(f"i{i}", "resolved", "failed", start + timedelta(minutes=3)))
    s = scrape(pm)
    ids = {dict(k[1])["incident_id"] for k in s if k[0] == m.INCIDENT_OPENED}
    assert ids == {"i7", "i8", "i9"}
    assert value(s, m.INCIDENTS_TOTAL, group="failed", severity="critical") == 10


def test_dead_letters_by_reason_and_lag_series():
    pm = PipelineMetrics(process_metrics=False)
    for reason in ("unknown_status", "unknown_status", "late"):
        pm.apply_record("dead-letter", encode(make_dead_letter(reason)))
    pm.set_lag("txmon-processor", "transactions", {0: 5, 1: 0, 2: 7})
    pm.set_lag("txmon-processor", "transactions", {0: 1, 1: 2})
    s = scrape(pm)
    assert value(s, m.DEAD_LETTERS_TOTAL, reason="unknown_status", source="processor") == 2
    assert value(s, m.DEAD_LETTERS_TOTAL, reason="late", source="processor") == 1
    lag = {dict(k[1])["partition"]: v for k, v in s.items() if k[0] == m.CONSUMER_LAG}
    assert lag == {"0": 1, "1": 2}


def test_every_exported_name_is_a_contract_name():
    pm = PipelineMetrics(process_metrics=False)
    pm.apply_window(window(0, approved=1))
    pm.apply_alert(make_alert("x", "open", "failed", T0))
    pm.apply_dead_letter(make_dead_letter())
    pm.set_lag("g", "t", {0: 1})
    pm.kafka_error("test")
    names = {family.name for family in pm.registry.collect()}
    # prometheus-client reports counters without their _total suffix.
    exported = {n if n in m.ALL else n + "_total" for n in names}
    assert exported <= set(m.ALL), exported - set(m.ALL)
    exporter_names = {v for v in m.ALL if not v.startswith("txmon_processor_")}
    assert exporter_names <= exported, exporter_names - exported


def info_series(s) -> dict[str, dict]:
    return {dict(k[1])["incident_id"]: dict(k[1]) for k, v in s.items()
            if k[0] == m.INCIDENT_INFO and v == 1}


def test_incident_info_carries_the_latest_words_of_open_incidents_only():
    pm = PipelineMetrics(process_metrics=False)
    first = make_alert("inc-e", "open", "reversed", T0, severity="warning",
                       statuses=["reversed"])
    first.groups, first.summary, first.since, first.duration_s = (
        ["reversed"], "reversed 120/min against ~20 expected, since 14:00 UTC", T0, 60)
    first.runbook_url = "https://runbook.example/txmon#reversed"
    later = make_alert("inc-e", "update", "reversed", T0 + timedelta(minutes=3),
                       statuses=["reversed", "approved"])
    later.groups, later.summary, later.since, later.duration_s = (
        ["reversed", "approved"], "reversed 122/min against ~2 expected, approved 62 "
        "against ~300, since 14:00 UTC", T0, 240)
    pm.apply_alert(first)
    s = scrape(pm)
    assert info_series(s)["inc-e"]["summary"].startswith("reversed 120/min")
    assert info_series(s)["inc-e"]["runbook_url"] == "https://runbook.example/txmon#reversed"
    assert value(s, m.INCIDENT_DURATION, incident_id="inc-e", group="reversed") == 60

    pm.apply_alert(later)
    s = scrape(pm)
    # Replaced, not added: one series, the latest words, the worst severity so far; the
    # opening group stays the routing label and every group is listed.
    assert list(info_series(s)) == ["inc-e"]
    info = info_series(s)["inc-e"]
    assert info["summary"] == later.summary and info["severity"] == "critical"
    assert info["group"] == "reversed" and info["groups"] == "reversed,approved"
    assert value(s, m.INCIDENT_DURATION, incident_id="inc-e", group="reversed") == 240
    assert value(s, m.INCIDENTS_OPEN, group="reversed", severity="critical") == 1

    # A step older than the latest (read late) does not bring old words back.
    pm.apply_alert(make_alert("inc-e", "update", "reversed", T0 + timedelta(minutes=1)))
    assert info_series(scrape(pm))["inc-e"]["summary"] == later.summary

    pm.apply_alert(make_alert("inc-e", "resolved", "reversed", T0 + timedelta(minutes=15),
                              severity="info"))
    s = scrape(pm)
    assert info_series(s) == {}
    assert value(s, m.INCIDENT_DURATION, incident_id="inc-e", group="reversed") is None


def test_records_without_words_get_the_exporters_own():
    """Alert records written before the summary existed: observed against expected and
    the incident's start, the group as the only group, the runbook section."""
    pm = PipelineMetrics(process_metrics=False)
    pm.apply_alert(make_alert("old", "open", "denied", T0))
    pm.apply_alert(make_alert("old", "update", "denied", T0 + timedelta(minutes=2)))
    info = info_series(scrape(pm))["old"]
    assert info["summary"] == "denied 120/min against ~20 expected, since 14:00 UTC"
    assert info["groups"] == "denied"
    assert info["runbook_url"] == "docs/runbook.md#transactionanomaly"
    assert value(scrape(pm), m.INCIDENT_DURATION, incident_id="old", group="denied") == 180


def test_nothing_from_the_topics_is_served_before_ready():
    """A restarted exporter half way through the alerts topic would show an open incident
    as gone: until caught up it serves its own health and ready 0, nothing else."""
    pm = PipelineMetrics(process_metrics=False, ready=False)
    pm.apply_alert(make_alert("inc", "open", "denied", T0))
    pm.apply_window(window(0, approved=1))
    pm.set_lag("g", "t", {0: 3})
    s = scrape(pm)
    assert value(s, m.EXPORTER_READY) == 0
    assert value(s, m.CONSUMER_LAG, group="g", topic="t", partition="0") == 3
    assert not [k for k in s if k[0] in (m.INCIDENTS_OPEN, m.INCIDENT_INFO, m.WINDOWS_TOTAL,
                                         m.TRANSACTIONS_TOTAL, m.WINDOW_LAST_EMITTED)]
    pm.mark_ready()
    s = scrape(pm)
    assert value(s, m.EXPORTER_READY) == 1
    assert value(s, m.INCIDENTS_OPEN, group="denied", severity="critical") == 1
    assert value(s, m.WINDOWS_TOTAL) == 1
