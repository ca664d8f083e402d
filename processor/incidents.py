"""Turns anomalous minutes into incidents as an operator lives them: one per episode.

An operator wants one page per episode, not one a minute, none for a single noisy
minute, and never a "resolved" followed by the same trouble two minutes later. So:

- A status group is *confirmed* on strong evidence at once (z ≥ OPEN_Z: a one-minute
  fluke that large is far rarer than the false-alarm budget), or on CONFIRM_WINDOWS
  anomalous minutes in a row. An outage always needs CONFIRM_WINDOWS: it is judged
  against today's volume level, itself an estimate, and real traffic has one-minute dips
  in approvals that no operator wants paged for. A minute the forest did not flag still
  confirms what it started when its evidence reaches FAULT_Z with events of its own, and
  minutes between keep it pending while their standing evidence is CLEAR_Z or more: a
  rare status's onset (one failure a minute against 0.03) has empty minutes and
  one-event minutes that no forest isolates.
- The first confirmed group opens the incident. Groups confirmed while it is open
  *join* it (an `update`): reversals, denials and an approvals collapse in the same
  afternoon are one episode with one cause to find, so one page that lists every status
  with what was observed against what was expected. At most one incident is open.
- It stays open until its statuses have been normal for `recovery_window` closed
  minutes in a row (Datadog's `recovery_window`, Prometheus' `keep_firing_for`): a bursty
  episode has normal-looking minutes, and a re-trigger inside the window is an `update`
  of the same incident, never a new `open`. Normal means not flagged and with standing
  evidence under CLEAR_Z (hysteresis: a minute between CLEAR_Z and FAULT_Z is not news,
  but not recovery either). So `resolved` comes exactly `recovery_window` minutes after
  the last abnormal one.
- A minute with (almost) no traffic is not normal for anyone: while all traffic is
  missing (the volume evidence of the outage group stands at CLEAR_Z or more), no
  group of an open incident counts towards its recovery. Denials that stop because
  everything stopped have not recovered.
- While open, `update` only when the incident gets worse (severity rises, a status or
  group joins) or, as a reminder, every UPDATE_EVERY minutes it lasts.

Ids are derived from the opening group and its first anomalous minute, so a replay or a
restart that re-runs the same minutes produces the same alerts with the same ids, never
a second incident. The state is plain dataclasses (the worker serialises it); the
policy is configuration, passed in, so a changed setting applies to a restored state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from processor.detector import FAULT_Z, Verdict, group_z
from processor.windows import WINDOW_MS
from txmon.contracts import GROUPS, STATUSES, Alert, worse
from txmon.contracts.events import severity_rank
from txmon.contracts.minutes import DAY_MS, minute_id, to_datetime
from txmon.settings import ProcessorSettings, default

OPEN_Z = 1.5 * FAULT_Z
CRITICAL_Z = 3 * FAULT_Z
CLEAR_Z = 2.0
CONFIRM_WINDOWS = 2
ALWAYS_CONFIRM = ("outage",)
UPDATE_EVERY = 15
#: Terminals a page names at most.
TOP_SLICES = 3


@dataclass(frozen=True)
class Policy:
    """How incidents end and where their runbook is: settings, not state."""

    recovery_window: int = default(ProcessorSettings, "recovery_window")
    runbook_url: str = default(ProcessorSettings, "runbook_url")


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class _Minute:
    """The closed minute a step judges, and what an alert about it carries."""

    start_ms: int
    counts: list[int]
    verdict: Verdict
    model_version: str
    policy: Policy


@dataclass
class OpenIncident:
    incident_id: str
    group: str
    since_ms: int
    last_anomalous_ms: int
    groups: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    normal_streak: int = 0
    severity: str = "warning"
    last_alert_ms: int = 0


@dataclass
class Pending:
    """Anomalous minutes in a row not yet strong enough to confirm a group."""

    first_ms: int
    last_ms: int
    windows: int = 1


@dataclass
class IncidentTracker:
    incident: OpenIncident | None = None
    pending: dict[str, Pending] = field(default_factory=dict)

    def step(self, start_ms: int, counts: list[int], verdict: Verdict, model_version: str,
             policy: Policy = DEFAULT_POLICY) -> list[Alert]:
        return self.advance(start_ms, counts, verdict, model_version, policy)[0]

    def advance(self, start_ms: int, counts: list[int], verdict: Verdict, model_version: str,
                policy: Policy = DEFAULT_POLICY) -> tuple[list[Alert], tuple[str, ...]]:
        """`step`, with the minute's `abnormal_groups`, which the caller reports too."""
        abnormal = abnormal_groups(verdict)
        if self.incident is not None and absent(verdict):
            abnormal = tuple(g for g in GROUPS if g in abnormal or g in self.incident.groups)
        minute = _Minute(start_ms, counts, verdict, model_version, policy)
        return self._step(minute, abnormal), abnormal

    def _step(self, minute: _Minute, abnormal: tuple[str, ...]) -> list[Alert]:
        start_ms, verdict, policy = minute.start_ms, minute.verdict, minute.policy
        evidence = group_z(verdict.z)
        held = evidence if verdict.held is None else group_z(verdict.held)
        assessed = None
        inc = self.incident
        members = () if inc is None else inc.groups
        confirmed = {g: p for g in GROUPS if g not in members
                     and (p := self._confirm(g, start_ms, verdict, evidence, held))}
        if inc is None:
            if not confirmed:
                return []
            inc = self.incident = _new_incident(confirmed, evidence, start_ms)
            event = "open"
        elif confirmed or set(abnormal) & set(inc.groups):
            inc.normal_streak = 0
            inc.last_anomalous_ms = start_ms
            if not (confirmed or set(verdict.groups) & set(inc.groups)):
                return []  # standing evidence only: not normal, not news either
            joined = [g for g in GROUPS if g in confirmed]
            inc.groups += joined
            assessed = _assess(inc, verdict, evidence)
            due = start_ms - inc.last_alert_ms >= UPDATE_EVERY * WINDOW_MS
            if not (joined or _worse(inc, *assessed) or due):
                return []
            event = "update"
        else:
            inc.normal_streak += 1
            if inc.normal_streak < policy.recovery_window:
                return []
            self.incident = None
            event = "resolved"
        if event != "resolved":
            inc.statuses, severity = assessed or _assess(inc, verdict, evidence)
            inc.severity = worse(inc.severity, severity)
            inc.last_alert_ms = start_ms
        return [_alert(inc, event, minute)]

    def _confirm(self, group: str, start_ms: int, verdict: Verdict, evidence: dict,
                 held: dict) -> Pending | None:
        """The group's pending run, once this minute confirms it (then forgotten)."""
        flagged = group in verdict.groups
        pending = self.pending.get(group)
        if pending is not None and pending.last_ms != start_ms - WINDOW_MS:
            pending = None
        if not (flagged or (pending is not None and evidence[group] >= FAULT_Z)):
            # The forest started it; the evidence still stands (a rare status's minute
            # without events, one with too few to isolate): keep waiting.
            if pending is not None and held[group] >= CLEAR_Z:
                pending.last_ms = start_ms
            else:
                self.pending.pop(group, None)
            return None
        if pending is None:
            pending = self.pending[group] = Pending(start_ms, start_ms)
        else:
            pending.windows += 1
            pending.last_ms = start_ms
        strong = flagged and evidence[group] >= OPEN_Z and group not in ALWAYS_CONFIRM
        if not strong and pending.windows < CONFIRM_WINDOWS:
            return None

        return self.pending.pop(group)


def abnormal_groups(verdict: Verdict) -> tuple[str, ...]:
    """Groups not normal in this minute: flagged, or with evidence of CLEAR_Z or more
    still standing (hysteresis: a minute between CLEAR_Z and FAULT_Z neither confirms
    nor counts towards recovery)."""
    held = group_z(verdict.held if verdict.held is not None else verdict.z)
    return tuple(g for g in GROUPS if g in verdict.groups or held[g] >= CLEAR_Z)


def absent(verdict: Verdict) -> bool:
    """Is all traffic missing in this minute (see the module docstring)?"""
    held = verdict.held if verdict.held is not None else verdict.z
    return held.get("volume", 0.0) >= CLEAR_Z


def _new_incident(confirmed: dict[str, Pending], evidence: dict, start_ms: int) -> OpenIncident:
    """Named for the group whose trouble started first (the strongest on a tie)."""
    group = min(confirmed, key=lambda g: (confirmed[g].first_ms, -evidence[g]))
    since = confirmed[group].first_ms
    groups = [group] + [g for g in GROUPS if g in confirmed and g != group]
    return OpenIncident(f"{group}-{minute_id(since)}", group, since, start_ms, groups)


def _flagged_severity(group: str, z: float) -> str:
    return "critical" if group == "outage" or z >= CRITICAL_Z else "warning"


def _severity(inc: OpenIncident, verdict: Verdict, evidence: dict) -> str:
    flagged = [g for g in inc.groups if g in verdict.groups] or inc.groups[:1]
    return max((_flagged_severity(g, evidence[g]) for g in flagged), key=severity_rank)


def _assess(inc: OpenIncident, verdict: Verdict, evidence: dict) -> tuple[list[str], str]:
    """The incident's statuses and this minute's severity, with its groups as they are."""
    return _merge_statuses(inc, verdict), _severity(inc, verdict, evidence)


def _worse(inc: OpenIncident, statuses: list[str], severity: str) -> bool:
    rises = severity_rank(severity) > severity_rank(inc.severity)
    return rises or not set(statuses) <= set(inc.statuses)


def _merge_statuses(inc: OpenIncident, verdict: Verdict) -> list[str]:
    """Statuses at fault so far, in the order of the incident's groups; a group that
    joined without a status of its own flagged (evidence confirmed it) lists all of its."""
    out = []
    for g in inc.groups:
        mine = [s for s in GROUPS[g] if s in inc.statuses or s in verdict.statuses]
        out += mine or list(GROUPS[g])
    return out


def summarize(inc: OpenIncident, event: str, observed: dict[str, int],
              expected: dict[str, float], now_ms: int,
              lead: Sequence[tuple[str, int, float]] = ()) -> str:
    """One line an operator can act on, the same in every channel. `lead`: (what,
    observed, expected) named before the statuses: all traffic when its silence is at
    fault, a quiet source partition, silent terminals (`_lead`). Which terminals a rise
    comes from follows it (`_blame`)."""
    statuses, since_ms = inc.statuses, inc.since_ms
    since = _clock(since_ms, now_ms)
    if event == "resolved":
        normal = _clock(inc.last_anomalous_ms + WINDOW_MS, now_ms)
        return (f"resolved: {', '.join(statuses)} normal since {normal}; lasted "
                f"{_duration(now_ms - since_ms)} from {since}")
    named = [*lead, *((s, observed.get(s, 0), expected.get(s, 0.0)) for s in statuses)]
    parts = [f"{s} {o}{'/min' if i == 0 else ''} against "
             f"~{_num(e)}{' expected' if i == 0 else ''}"
             for i, (s, o, e) in enumerate(named)]
    return f"{', '.join(parts)}, since {since}"


def _clock(ms: int, now_ms: int) -> str:
    same_day = ms // DAY_MS == (now_ms - 1) // DAY_MS
    return to_datetime(ms).strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def _duration(ms: int) -> str:
    minutes = ms // WINDOW_MS
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes} min"


def _num(x: float) -> str:
    if x >= 10:
        return f"{x:.0f}"
    return f"{x:.1f}".removesuffix(".0") if x >= 1 else f"{x:.2g}"


def _lead(minute: _Minute) -> list[tuple[str, int, float]]:
    """What the summary names before the statuses: quiet sources, missing traffic."""
    verdict = minute.verdict
    lead = [(f"partition {q.partition}", q.observed, q.expected) for q in verdict.sources]
    silent = [s for s in (verdict.terminals.silent if verdict.terminals else ())
              if s.z >= FAULT_Z][:TOP_SLICES]
    if silent and "slice_silence" in verdict.causes:
        lead.append((f"terminals {', '.join(s.terminal for s in silent)}",
                     sum(s.observed for s in silent), sum(s.expected for s in silent)))
    if "volume" in verdict.causes:
        lead.append(("all traffic", sum(minute.counts), verdict.expected_total))
    return lead


def named_terminals(inc: OpenIncident, verdict: Verdict) -> dict[str, list[str]]:
    """Per group of the incident, the terminals this minute names: for a rise, those
    with the most extra events (`slices.blame`); for an outage, the silent ones."""
    t = verdict.terminals
    if t is None:
        return {}
    out = {}
    for g in inc.groups:
        if g == "outage":
            named = [s.terminal for s in t.silent if s.z >= FAULT_Z][:TOP_SLICES]
        else:
            named = [s.terminal for s in t.blame[g].top] if g in t.blame else []
        if named:
            out[g] = named
    return out


def _blame(inc: OpenIncident, minute: _Minute) -> list[str]:
    """"71 % of the extra failures from 3 terminals: T-0412, T-0977, T-1203"."""
    verdict = minute.verdict
    t = verdict.terminals
    out = []
    for g in inc.groups:
        b = t.blame.get(g) if t is not None else None
        if b is not None and (g in verdict.groups or f"slice_{g}" in verdict.causes):
            extra = sum(minute.counts[STATUSES.index(s)] - verdict.expected.get(s, 0.0)
                        for s in GROUPS[g])
            out.append(f"{b.share(extra):.0%} of the extra {g} from {len(b.top)} terminal"
                       f"{'s' if len(b.top) > 1 else ''}: "
                       f"{', '.join(s.terminal for s in b.top)}".replace("%", " %", 1))
    return out


def _alert(inc: OpenIncident, event: str, minute: _Minute) -> Alert:
    start_ms, verdict = minute.start_ms, minute.verdict
    end_ms = start_ms + WINDOW_MS
    observed = dict(zip(STATUSES, minute.counts, strict=True))
    expected = {s: round(v, 2) for s, v in verdict.expected.items()}
    return Alert(
        id=f"{inc.incident_id}/{event}/{minute_id(start_ms)}",
        incident_id=inc.incident_id,
        event=event,
        group=inc.group,
        groups=list(inc.groups),
        window_start=to_datetime(start_ms),
        window_end=to_datetime(end_ms),
        statuses=list(inc.statuses),
        observed=observed,
        expected=expected,
        score=round(verdict.score, 4),
        threshold=round(verdict.threshold, 4),
        severity="info" if event == "resolved" else inc.severity,
        model_version=minute.model_version,
        summary="; ".join([summarize(inc, event, observed, expected, end_ms, _lead(minute)),
                           *([] if event == "resolved" else _blame(inc, minute))]),
        since=to_datetime(inc.since_ms),
        duration_s=(end_ms - inc.since_ms) // 1000,
        runbook_url=minute.policy.runbook_url,
        causes=[] if event == "resolved" else list(verdict.causes),
        terminals={} if event == "resolved" else named_terminals(inc, verdict),
    )

