"""Incidents folded from alert records: one rule for every reader of the alerts topic.

The exporter's metrics, the report, the Grafana annotations and `txmon evaluate` each
rebuilt incidents from records on their own, and drifted apart on what "severity" or
"statuses" of an incident meant; they share this fold instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from txmon.contracts.events import Alert, worse


@dataclass
class Incident:
    incident_id: str
    #: The group that opened it (routing); `joined` has every group, with when it joined.
    group: str
    #: The worst severity of its steps.
    severity: str
    #: Start of the earliest window of its records.
    start: datetime
    #: End of the window that resolved it; None while open.
    end: datetime | None
    statuses: set[str] = field(default_factory=set)
    joined: dict[str, datetime] = field(default_factory=dict)
    #: Score of the last record applied, and the largest seen.
    score: float = float("-inf")
    max_score: float = float("-inf")
    records: int = 0
    #: The records themselves, when the fold keeps them (`IncidentFold(keep_alerts=True)`).
    alerts: list[Alert] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.end is None

    def describe(self) -> str:
        last = self.alerts[-1] if self.alerts else None
        detail = ""
        if last is not None:
            parts = [f"{s} {last.observed.get(s, 0)} vs {last.expected.get(s, 0):.0f} expected"
                     for s in sorted(self.statuses)]
            detail = "; ".join(parts)
        state = "open" if self.open else "resolved"
        return (f"txmon incident {self.incident_id} ({self.group}, {self.severity}, {state}):"
                f" {detail}; max score {self.max_score:.3f}")


class IncidentFold:
    """Applies alert records one at a time, in arrival order, each id once: a restarted
    processor re-emits records with the same id, and they must not count twice."""

    def __init__(self, keep_alerts: bool = False):
        self.keep_alerts = keep_alerts
        self.incidents: dict[str, Incident] = {}
        self._seen: set[str] = set()

    def apply(self, alert: Alert) -> Incident | None:
        """The incident the record belongs to, updated; None for a record seen before."""
        if alert.id in self._seen:
            return None
        self._seen.add(alert.id)
        inc = self.incidents.get(alert.incident_id)
        if inc is None:
            inc = self.incidents[alert.incident_id] = Incident(
                alert.incident_id, alert.group, alert.severity, alert.window_start, None,
                joined={alert.group: alert.window_start})
        inc.records += 1
        if self.keep_alerts:
            inc.alerts.append(alert)
        inc.start = min(inc.start, alert.window_start)
        inc.statuses |= set(alert.statuses)
        for group in alert.groups:
            inc.joined.setdefault(group, alert.window_start)
        inc.score = alert.score
        inc.max_score = max(inc.max_score, alert.score)
        inc.severity = worse(inc.severity, alert.severity)
        if alert.event == "resolved":
            inc.end = alert.window_end
        return inc


def fold_incidents(alerts: Iterable[Alert], keep_alerts: bool = True) -> list[Incident]:
    """One Incident per incident id, ordered by start; records applied in event time
    (an incident's `open` before anything else of its first minute)."""
    fold = IncidentFold(keep_alerts)
    for alert in sorted(alerts, key=lambda a: (a.window_start, a.event != "open")):
        fold.apply(alert)
    return sorted(fold.incidents.values(), key=lambda i: i.start)
