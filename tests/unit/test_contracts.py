"""The shared contracts: minute names, counts on the wire, severities, the incident fold,
and the group names the alerting rules and dashboards rely on."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import yaml

from txmon.contracts import (
    GROUP_OF,
    GROUPS,
    SEVERITIES,
    STATUSES,
    Alert,
    DeadLetterReason,
    MinuteCounts,
    WindowPartial,
    decode_transaction,
    encode,
    minute_id,
    minute_key,
    worse,
)
from txmon.contracts.events import MAX_TRANSACTION_BYTES, InvalidTransaction
from txmon.contracts.incidents import IncidentFold, fold_incidents
from txmon.contracts.minutes import MINUTE_MS, to_datetime, to_ms

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 7, 12, 13, 45, tzinfo=UTC)


def test_minute_names_in_records_and_in_the_api():
    assert minute_id(to_ms(T0)) == "2025-07-12T13:45Z"
    assert minute_key(T0) == "2025-07-12T13:45"
    assert to_datetime(to_ms(T0) + MINUTE_MS) == T0 + timedelta(minutes=1)


def test_counts_on_the_wire_keep_their_late_slot():
    wire = list(range(len(STATUSES))) + [5]
    partial = msgspec.json.decode(
        encode(WindowPartial(partition=0, closed_until=0, windows={0: wire})),
        type=WindowPartial)
    counts = MinuteCounts.of(partial.windows[0])
    assert counts.statuses == wire[:-1] and counts.late == 5
    # Stored before the counts were named, or status counts alone: no late slot.
    assert MinuteCounts.of(wire[:-1]) == MinuteCounts(wire[:-1], 0)


def test_severities_are_ordered():
    assert SEVERITIES == ("info", "warning", "critical")
    assert worse("warning", "critical") == "critical"
    assert worse("critical", "info") == "critical"
    assert worse("warning", "warning") == "warning"


def _alert(iid: str, event: str, minute: int, **kw) -> Alert:
    start = T0 + timedelta(minutes=minute)
    fields = {"group": "reversals", "statuses": ["reversed"], "severity": "warning",
              "score": 1.5, "groups": ["reversals"]} | kw
    return Alert(id=f"{iid}/{event}/{minute}", incident_id=iid, event=event,
                 window_start=start, window_end=start + timedelta(minutes=1),
                 observed={}, expected={}, threshold=1.0, model_version="m", **fields)


def test_incident_fold():
    alerts = [
        _alert("a", "update", 2, severity="critical", statuses=["reversed", "approved"],
               groups=["reversals", "outage"], score=3.0),
        _alert("a", "open", 0),
        _alert("a", "open", 0),  # re-emitted after a restart
        _alert("a", "resolved", 9, severity="info", score=0.4,
               statuses=["reversed", "approved"], groups=["reversals", "outage"]),
        _alert("b", "open", 20, group="denials", statuses=["denied"], groups=["denials"]),
    ]
    a, b = fold_incidents(alerts)
    assert (a.incident_id, a.group, a.severity, a.start) == ("a", "reversals", "critical", T0)
    assert a.end == T0 + timedelta(minutes=10) and not a.open
    assert a.statuses == {"reversed", "approved"} and a.records == 3
    assert a.joined == {"reversals": T0, "outage": T0 + timedelta(minutes=2)}
    assert (a.score, a.max_score) == (0.4, 3.0)
    assert b.open and b.severity == "warning"

    fold = IncidentFold()
    assert fold.apply(alerts[1]) is not None and fold.apply(alerts[2]) is None


def test_groups_cover_the_paged_statuses_once():
    members = [s for g in GROUPS.values() for s in g]
    assert len(members) == len(set(members)) and set(members) <= set(STATUSES)
    assert all(GROUPS[GROUP_OF[s]] and s in GROUPS[GROUP_OF[s]] for s in members)


def _group_values(text: str) -> set[str]:
    """Literal values of `group` / `groups` label matchers and labels in a rule file or
    dashboard (the consumer-lag series' `group` is a Kafka consumer group: not ours)."""
    values = set()
    for selector in re.findall(r"(txmon_(?:incident|alerts|incidents)\w*)\{([^}]*)\}", text):
        for name, value in re.findall(r'\b(groups?)=~?"([^"]*)"', selector[1]):
            values |= set(value.split(",") if name == "groups" else value.split("|"))
    return values


def test_rules_and_dashboards_use_the_contract_group_names():
    rules = [*REPO.glob("prometheus/rules/*.yml"), *REPO.glob("prometheus/tests/*.yml")]
    dashboards = list(REPO.glob("grafana/dashboards/*.json"))
    assert rules and dashboards
    found = set()
    for path in rules:
        found |= _group_values(path.read_text())
    for path in dashboards:
        found |= _group_values(json.dumps(json.load(path.open())).replace('\\"', '"'))
    # promtool's expected alerts: the TransactionAnomaly rules keep the group label.
    for path in REPO.glob("prometheus/tests/*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                found |= {a["exp_labels"]["group"] for a in case.get("exp_alerts", [])
                          if a["exp_labels"]["alertname"].startswith("TransactionAnomaly")}
    assert found, "no group label found: the test reads the files wrong"
    assert found <= set(GROUPS), found - set(GROUPS)


def test_a_record_nested_past_the_decoders_depth_is_a_dead_letter_not_a_crash():
    """msgspec raises RecursionError past its depth limit, even inside a field it skips:
    stage 1 would die on the record and the API answer a 500."""
    nested = b"[" * 2000 + b"]" * 2000
    record = (b'{"x":' + nested + b',"id":"a","status":"approved",'
              b'"timestamp":"2026-01-01T00:00:00Z"}')
    assert len(record) < MAX_TRANSACTION_BYTES
    try:
        decode_transaction(record)
    except InvalidTransaction as exc:
        assert exc.reason == DeadLetterReason.MALFORMED_JSON and "nested" in exc.detail
    else:
        raise AssertionError("decoded a record nested past the limit")
