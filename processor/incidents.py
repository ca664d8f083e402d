"""Turns anomalous minutes into incidents: one `open`, few `update`s, one `resolved`.

An operator wants one notification per incident, not one a minute, and none for a
single noisy minute. So, per status group:

- open on strong evidence at once (z ≥ OPEN_Z: a one-minute fluke that large is far
  rarer than the false-alarm budget), or on CONFIRM_WINDOWS anomalous minutes in a row;
  an outage always needs CONFIRM_WINDOWS: it is judged against today's volume level,
  itself an estimate, and real traffic has one-minute dips in approvals (a client's
  retry, a batch boundary) that no operator wants paged for; a minute the forest did
  not flag still confirms what it started when its evidence reaches FAULT_Z with events
  of its own, and minutes between keep it pending while their standing evidence is
  CLEAR_Z or more: a rare status's onset (one failure a minute against 0.03) has empty
  minutes and one-event minutes that no forest isolates, and would otherwise open late;
- while open, `update` only when the incident gets worse (severity rises, another
  status joins) or, as a reminder, every UPDATE_EVERY minutes it lasts;
- resolve after `resolve_after` minutes in a row whose evidence is below CLEAR_Z
  (hysteresis: a minute between CLEAR_Z and FAULT_Z neither confirms nor clears).

Ids are derived from the group and the first anomalous minute, so a replay or a restart
that re-runs the same minutes produces the same alerts with the same ids, never a
second incident. The state is plain dataclasses (the worker serialises it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.detector import FAULT_Z, Verdict, group_z
from processor.features import GROUPS
from processor.windows import WINDOW_MS, minute_id, to_datetime
from txmon.contracts import STATUSES, Alert

OPEN_Z = 1.5 * FAULT_Z
CRITICAL_Z = 3 * FAULT_Z
CLEAR_Z = 2.0
CONFIRM_WINDOWS = 2
ALWAYS_CONFIRM = ("outage",)
UPDATE_EVERY = 15
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class OpenIncident:
    incident_id: str
    opened_ms: int
    normal_streak: int = 0
    windows: int = 1
    severity: str = "warning"
    statuses: list[str] = field(default_factory=list)
    last_alert_ms: int = 0


@dataclass
class Pending:
    """Anomalous minutes in a row not yet strong enough to open an incident."""

    first_ms: int
    last_ms: int
    windows: int = 1


@dataclass
class IncidentTracker:
    resolve_after: int = 3
    open: dict[str, OpenIncident] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)

    def step(
        self, start_ms: int, counts: list[int], verdict: Verdict, model_version: str
    ) -> list[Alert]:
        alerts = []
        evidence = group_z(verdict.z)
        held = evidence if verdict.held is None else group_z(verdict.held)
        for group in GROUPS:
            incident = self.open.get(group)
            flagged = group in verdict.groups
            if incident is None:
                pending = self.pending.get(group)
                if pending is not None and pending.last_ms != start_ms - WINDOW_MS:
                    pending = None
                confirms = flagged or (pending is not None and evidence[group] >= FAULT_Z)
                if not confirms:
                    # The forest started it; the evidence still stands (a rare status's
                    # minute without events, one with too few to isolate): keep waiting.
                    if pending is not None and held[group] >= CLEAR_Z:
                        pending.last_ms = start_ms
                    else:
                        self.pending.pop(group, None)
                    continue
                if pending is not None:
                    pending.windows += 1
                    pending.last_ms = start_ms
                else:
                    pending = Pending(start_ms, start_ms)
                    self.pending[group] = pending
                strong = (flagged and evidence[group] >= OPEN_Z
                          and group not in ALWAYS_CONFIRM)
                if not strong and pending.windows < CONFIRM_WINDOWS:
                    continue
                del self.pending[group]
                incident = OpenIncident(f"{group}-{minute_id(pending.first_ms)}", start_ms,
                                        windows=pending.windows)
                self.open[group] = incident
                event = "open"
            elif flagged or held[group] >= CLEAR_Z:
                incident.normal_streak = 0
                incident.windows += flagged
                if not flagged:
                    continue
                severity = _severity(group, evidence[group])
                statuses = _statuses(group, verdict)
                worse = (SEVERITY_RANK[severity] > SEVERITY_RANK[incident.severity]
                         or not set(statuses) <= set(incident.statuses))
                due = start_ms - incident.last_alert_ms >= UPDATE_EVERY * WINDOW_MS
                if not (worse or due):
                    continue
                event = "update"
            else:
                incident.normal_streak += 1
                if incident.normal_streak < self.resolve_after:
                    continue
                del self.open[group]
                event = "resolved"
            alert = _alert(incident, group, event, start_ms, counts, verdict, evidence[group],
                           model_version)
            if event != "resolved":
                incident.severity = max(incident.severity, alert.severity,
                                        key=SEVERITY_RANK.__getitem__)
                incident.statuses = sorted(set(incident.statuses) | set(alert.statuses))
                incident.last_alert_ms = start_ms
            alerts.append(alert)
        return alerts


def _severity(group: str, z: float) -> str:
    return "critical" if group == "outage" or z >= CRITICAL_Z else "warning"


def _statuses(group: str, verdict: Verdict) -> list[str]:
    return [s for s in verdict.statuses if s in GROUPS[group]] or list(GROUPS[group])


def _alert(
    incident: OpenIncident,
    group: str,
    event: str,
    start_ms: int,
    counts: list[int],
    verdict: Verdict,
    z: float,
    model_version: str,
) -> Alert:
    if event == "resolved":
        statuses, severity = incident.statuses or list(GROUPS[group]), "info"
    else:
        statuses, severity = _statuses(group, verdict), _severity(group, z)
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
