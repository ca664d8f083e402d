"""Turns anomalous minutes into incidents: one `open`, `update`s, one `resolved`.

An operator wants one notification per incident, not one a minute. Consecutive
anomalous minutes of the same status group are one incident; it resolves after
`resolve_after` normal minutes in a row. Ids are derived from the group and the minute
the incident opened, so a replay or a restart that re-runs the same minutes produces
the same alerts with the same ids, never a second incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.detector import FAULT_Z, Verdict
from processor.features import GROUPS
from processor.windows import WINDOW_MS, minute_id, to_datetime
from txmon.contracts import STATUSES, Alert

CRITICAL_Z = 3 * FAULT_Z


@dataclass
class OpenIncident:
    incident_id: str
    opened_ms: int
    normal_streak: int = 0
    windows: int = 1


@dataclass
class IncidentTracker:
    resolve_after: int = 3
    open: dict[str, OpenIncident] = field(default_factory=dict)

    def step(
        self, start_ms: int, counts: list[int], verdict: Verdict, model_version: str
    ) -> list[Alert]:
        alerts = []
        for group in GROUPS:
            incident = self.open.get(group)
            if group in verdict.groups:
                if incident is None:
                    incident = OpenIncident(f"{group}-{minute_id(start_ms)}", start_ms)
                    self.open[group] = incident
                    event = "open"
                else:
                    incident.windows += 1
                    incident.normal_streak = 0
                    event = "update"
            elif incident is not None:
                incident.normal_streak += 1
                if incident.normal_streak < self.resolve_after:
                    continue
                del self.open[group]
                event = "resolved"
            else:
                continue
            alerts.append(_alert(incident, group, event, start_ms, counts, verdict, model_version))
        return alerts


def _alert(
    incident: OpenIncident,
    group: str,
    event: str,
    start_ms: int,
    counts: list[int],
    verdict: Verdict,
    model_version: str,
) -> Alert:
    statuses = [s for s in verdict.statuses if s in GROUPS[group]] or list(GROUPS[group])
    zs = [verdict.z.get("approved_count" if s == "approved" else s, 0.0) for s in statuses]
    if group == "outage":
        zs = [max(verdict.z["approved_share"], verdict.z["approved_count"])]
    severity = "critical" if group == "outage" or max(zs, default=0) >= CRITICAL_Z else "warning"
    if event == "resolved":
        severity = "info"
    observed = {s: counts[i] for i, s in enumerate(STATUSES)}
    return Alert(
        id=f"{incident.incident_id}/{event}/{minute_id(start_ms)}",
        incident_id=incident.incident_id,
        event=event,
        group=group,
        window_start=to_datetime(start_ms),
        window_end=to_datetime(start_ms + WINDOW_MS),
        statuses=statuses,
        observed=observed,
        expected={s: round(v, 2) for s, v in verdict.expected.items()},
        score=round(verdict.score, 4),
        threshold=round(verdict.threshold, 4),
        severity=severity,
        model_version=model_version,
    )
