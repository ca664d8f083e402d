"""Incidents folded from alert records: what the report shades and Grafana annotates.

Pure: a list of Alert records (duplicates included) in, one Incident per incident id out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from txmon.contracts import Alert

_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Incident:
    incident_id: str
    group: str
    severity: str
    start: datetime
    end: datetime | None  # None while open
    statuses: set[str] = field(default_factory=set)
    max_score: float = float("-inf")
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


def fold_incidents(alerts: Iterable[Alert]) -> list[Incident]:
    """One Incident per incident id, alerts deduplicated by id, ordered by start."""
    seen: set[str] = set()
    incidents: dict[str, Incident] = {}
    for alert in sorted(alerts, key=lambda a: (a.window_start, a.event != "open")):
        if alert.id in seen:
            continue
        seen.add(alert.id)
        inc = incidents.get(alert.incident_id)
        if inc is None:
            inc = incidents[alert.incident_id] = Incident(
                alert.incident_id, alert.group, alert.severity, alert.window_start, None)
        inc.alerts.append(alert)
        inc.start = min(inc.start, alert.window_start)
        inc.statuses |= set(alert.statuses)
        inc.max_score = max(inc.max_score, alert.score)
        if _RANK.get(alert.severity, 0) > _RANK.get(inc.severity, 0):
            inc.severity = alert.severity
        if alert.event == "resolved":
            inc.end = alert.window_end
    return sorted(incidents.values(), key=lambda i: i.start)
