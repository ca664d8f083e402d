"""Incidents from verdicts: confirmation, hysteresis, sparse updates, stable ids."""

from __future__ import annotations

import msgspec

from processor.detector import Verdict
from processor.incidents import UPDATE_EVERY, IncidentTracker

T0 = 1_772_409_600_000
COUNTS = [100, 10, 0, 1, 0, 0, 0]


def verdict(z_denied: float = 0.0, z_approved: float = 0.0, anomalous_groups=()) -> Verdict:
    z = {"failed": 0.0, "denied": z_denied, "reversed": 0.0, "backend_reversed": 0.0,
         "approved_share": z_approved, "approved_count": z_approved, "approved": z_approved}
    statuses = tuple({"denials": "denied", "outage": "approved"}[g] for g in anomalous_groups)
    return Verdict(score=1.2 if anomalous_groups else 0.5, threshold=1.0,
                   anomalous=bool(anomalous_groups), groups=tuple(anomalous_groups),
                   statuses=statuses, expected={"denied": 10.0, "approved": 100.0}, z=z)


def run(tracker: IncidentTracker, seq: list[Verdict]):
    out = []
    for i, v in enumerate(seq):
        out += tracker.step(T0 + i * 60_000, COUNTS, v, "m1")
    return out


def test_strong_minute_opens_at_once_weak_needs_confirmation():
    strong = run(IncidentTracker(), [verdict(), verdict(9.0, anomalous_groups=["denials"])])
    assert [a.event for a in strong] == ["open"]
    weak = IncidentTracker()
    assert run(weak, [verdict(4.5, anomalous_groups=["denials"]), verdict()]) == []
    alerts = run(IncidentTracker(), [verdict(4.5, anomalous_groups=["denials"])] * 2)
    assert [a.event for a in alerts] == ["open"]
    assert alerts[0].incident_id == "denials-2026-03-02T00:00Z"  # first anomalous minute
    assert alerts[0].window_start.minute == 1


def test_outage_always_needs_two_minutes():
    one = run(IncidentTracker(), [verdict(z_approved=30.0, anomalous_groups=["outage"]),
                                  verdict()])
    assert one == []
    two = run(IncidentTracker(), [verdict(z_approved=30.0, anomalous_groups=["outage"])] * 2)
    assert [(a.event, a.severity) for a in two] == [("open", "critical")]


def test_one_incident_sparse_updates_and_resolution_with_hysteresis():
    bad = verdict(9.0, anomalous_groups=["denials"])
    worse = verdict(20.0, anomalous_groups=["denials"])
    middling = verdict(3.0)  # between CLEAR_Z and FAULT_Z: neither confirms nor clears
    seq = [bad] * 5 + [worse] + [bad] * 20 + [middling] * 4 + [verdict()] * 3 + [bad]
    alerts = run(IncidentTracker(resolve_after=3), seq)
    events = [a.event for a in alerts]
    assert events[0] == "open" and events.count("open") == 2
    assert events.count("resolved") == 1
    updates = [a for a in alerts if a.event == "update"]
    # One for the escalation to critical, then reminders every UPDATE_EVERY minutes.
    assert updates[0].severity == "critical" and updates[0].window_start.minute == 5
    assert len(updates) == 1 + (26 - 5 - 1) // UPDATE_EVERY
    resolved = next(a for a in alerts if a.event == "resolved")
    assert resolved.window_start.minute == 32 and resolved.severity == "info"
    assert len({a.incident_id for a in alerts}) == 2
    assert len({a.id for a in alerts}) == len(alerts)


def test_replay_gives_identical_alerts_and_state_roundtrips():
    seq = [verdict(9.0, anomalous_groups=["denials"])] * 3 + [verdict()] * 4
    first = run(IncidentTracker(), seq)
    tracker = IncidentTracker()
    part = run(tracker, seq[:2])
    restored = msgspec.json.decode(msgspec.json.encode(tracker), type=IncidentTracker)
    rest = []
    for i, v in enumerate(seq[2:], start=2):
        rest += restored.step(T0 + i * 60_000, COUNTS, v, "m1")
    assert [a.id for a in first] == [a.id for a in part + rest]
    assert first == part + rest


def test_empty_minutes_of_a_rare_status_do_not_resolve_its_incident():
    """A minute without events has no evidence of its own, but the sustained evidence
    still standing from the minutes before keeps it from counting as a normal one."""
    bad = verdict(9.0, anomalous_groups=["denials"])
    quiet_but_standing = _held(4.5)
    alerts = run(IncidentTracker(resolve_after=3), [bad] + [quiet_but_standing] * 4 + [bad])
    assert [a.event for a in alerts] == ["open"]
    alerts = run(IncidentTracker(resolve_after=3), [bad] + [verdict()] * 3)
    assert [a.event for a in alerts] == ["open", "resolved"]


def _held(z_denied: float) -> Verdict:
    v = verdict()
    return Verdict(score=v.score, threshold=v.threshold, anomalous=False, groups=(),
                   statuses=(), expected=v.expected, z=v.z,
                   held={**v.z, "denied": z_denied})


def test_evidence_confirms_what_the_forest_started():
    """A rare status's incident: the forest flags a minute, the next has no events (its
    sustained evidence still stands), the one after has too few events to isolate but
    significant evidence: the incident opens there, with the first minute's id."""
    flagged = verdict(4.5, anomalous_groups=["denials"])
    too_few_to_isolate = verdict(4.5)
    alerts = run(IncidentTracker(), [flagged, _held(3.0), too_few_to_isolate])
    assert [a.event for a in alerts] == ["open"]
    assert alerts[0].window_start.minute == 2
    assert alerts[0].incident_id == "denials-2026-03-02T00:00Z"
    # Evidence alone never starts one, and what was started ends when the evidence does.
    assert run(IncidentTracker(), [too_few_to_isolate] * 3) == []
    assert run(IncidentTracker(), [flagged, verdict(), too_few_to_isolate]) == []
    assert run(IncidentTracker(), [flagged, _held(1.0), too_few_to_isolate]) == []
