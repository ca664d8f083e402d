"""Pure parts of issue 14: the exporter's series that start at 0, and the live page's
open-incidents list built from alert records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from support.obs import make_alert, parse_metrics, value

from api.live import open_incidents
from exporter.metrics import PipelineMetrics
from txmon.contracts import ALERT_EVENTS as EVENTS
from txmon.contracts import GROUPS, SEVERITIES
from txmon.contracts import metrics as m

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def test_counters_that_panels_increase_start_at_zero_for_every_known_label():
    pm = PipelineMetrics(process_metrics=False, now=0.0)
    s = parse_metrics(generate_latest(pm.registry).decode())
    for group in GROUPS:
        for severity in SEVERITIES:
            assert value(s, m.INCIDENTS_TOTAL, group=group, severity=severity) == 0
            assert value(s, m.INCIDENTS_OPEN, group=group, severity=severity) == 0
            for event in EVENTS:
                assert value(s, m.ALERTS_TOTAL, event=event, group=group,
                             severity=severity) == 0
    assert value(s, m.DEAD_LETTERS_TOTAL, reason="late", source="processor") == 0
    assert value(s, m.DEAD_LETTERS_TOTAL, reason="bad_row", source="replay") == 0


def test_open_incidents_keep_the_latest_words_and_the_worst_severity():
    later = T0 + timedelta(minutes=3)
    alerts = [
        make_alert("a", "open", "denials", T0, severity="warning", summary="first", since=T0),
        make_alert("a", "update", "denials", later, severity="info", summary="latest",
                   since=T0),
        make_alert("b", "open", "failures", T0),
        make_alert("b", "resolved", "failures", later),
    ]
    [row] = open_incidents(alerts)
    assert row["incident_id"] == "a" and row["summary"] == "latest"
    assert row["severity"] == "warning" and row["since"] == T0.isoformat()
    assert row["observed"] == {"denials": 120}
