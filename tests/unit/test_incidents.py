"""Incidents from verdicts: one per episode, groups joining, a recovery window, sparse
updates, stable ids and a summary a person can act on."""

from __future__ import annotations

import msgspec

from processor.detector import Verdict
from processor.incidents import (
    DEFAULT_POLICY,
    UPDATE_EVERY,
    IncidentTracker,
    OpenIncident,
    Policy,
    summarize,
)

T0 = 1_772_409_600_000  # 2026-03-02 00:00 UTC
COUNTS = [100, 10, 0, 1, 0, 0, 0]
STATUS_OF = {"denials": "denied", "outage": "approved", "reversals": "reversed",
             "failures": "failed"}


def verdict(z_denied: float = 0.0, z_approved: float = 0.0, anomalous_groups=(),
            z_reversed: float = 0.0) -> Verdict:
    z = {"failed": 0.0, "denied": z_denied, "reversed": z_reversed, "backend_reversed": 0.0,
         "approved_share": z_approved, "approved_count": z_approved, "approved": z_approved,
         "volume": 0.0}
    statuses = tuple(STATUS_OF[g] for g in anomalous_groups)
    return Verdict(score=1.2 if anomalous_groups else 0.5, threshold=1.0,
                   anomalous=bool(anomalous_groups), groups=tuple(anomalous_groups),
                   statuses=statuses, expected={"denied": 10.0, "approved": 100.0,
                                                "reversed": 0.4}, z=z, held=dict(z))


def run(tracker: IncidentTracker, seq: list[Verdict], policy: Policy = DEFAULT_POLICY,
        counts=COUNTS):
    out = []
    for i, v in enumerate(seq):
        out += tracker.step(T0 + i * 60_000, counts, v, "m1", policy)
    return out


BAD = verdict(9.0, anomalous_groups=["denials"])
QUIET = verdict()


def test_strong_minute_opens_at_once_weak_needs_confirmation():
    strong = run(IncidentTracker(), [QUIET, BAD])
    assert [a.event for a in strong] == ["open"]
    weak = IncidentTracker()
    assert run(weak, [verdict(4.5, anomalous_groups=["denials"]), QUIET]) == []
    alerts = run(IncidentTracker(), [verdict(4.5, anomalous_groups=["denials"])] * 2)
    assert [a.event for a in alerts] == ["open"]
    assert alerts[0].incident_id == "denials-2026-03-02T00:00Z"  # first anomalous minute
    assert alerts[0].window_start.minute == 1
    assert alerts[0].since.minute == 0 and alerts[0].duration_s == 120


def test_an_incident_does_not_resolve_while_all_traffic_is_missing():
    """Denials that stop because everything stopped have not recovered."""
    silent = verdict()
    silent.held["volume"] = silent.z["volume"] = 3.0  # below FAULT_Z: no outage of its own
    tracker = IncidentTracker()
    alerts = run(tracker, [BAD] + [silent] * 30, counts=[0] * 7)
    assert [a.event for a in alerts] == ["open"]
    assert tracker.incident is not None
    after = [a.event for a in run(tracker, [QUIET] * DEFAULT_POLICY.recovery_window)]
    assert after[-1:] == ["resolved"]


def test_silence_names_all_traffic():
    silent = verdict(z_approved=40.0, anomalous_groups=["outage"])
    silent = Verdict(**{**silent.__dict__, "causes": ("volume",), "expected_total": 1200.0})
    alerts = run(IncidentTracker(), [silent] * 2, counts=[0] * 7)
    assert [a.event for a in alerts] == ["open"]
    assert alerts[0].summary.startswith("all traffic 0/min against ~1200 expected, approved 0")


def test_outage_always_needs_two_minutes():
    one = run(IncidentTracker(), [verdict(z_approved=30.0, anomalous_groups=["outage"]),
                                  QUIET])
    assert one == []
    two = run(IncidentTracker(), [verdict(z_approved=30.0, anomalous_groups=["outage"])] * 2)
    assert [(a.event, a.severity) for a in two] == [("open", "critical")]


def test_a_retrigger_inside_the_recovery_window_is_an_update_of_the_same_incident():
    """Bursty: normal-looking minutes mid-episode never resolve it; `resolved` comes
    exactly recovery_window minutes after the last anomalous one."""
    seq = [BAD, QUIET, QUIET, BAD, *[QUIET] * 9, BAD, *[QUIET] * 10, BAD]
    alerts = run(IncidentTracker(), seq, Policy(recovery_window=10))
    assert [a.event for a in alerts] == ["open", "resolved", "open"]
    assert len({a.incident_id for a in alerts}) == 2
    resolved = alerts[1]
    assert resolved.window_start.minute == 13 + 10  # last anomalous minute 13
    assert resolved.severity == "info"
    assert resolved.summary == ("resolved: denied normal since 00:14 UTC; lasted 24 min "
                                "from 00:00 UTC")
    # A shorter window splits the same minutes into more incidents.
    short = run(IncidentTracker(), seq, Policy(recovery_window=3))
    assert [a.event for a in short].count("open") == 3


def test_statuses_that_go_wrong_together_are_one_incident_that_grows():
    both = verdict(9.0, z_approved=30.0, anomalous_groups=["denials", "outage"])
    seq = [BAD, BAD, both, both, BAD, verdict(z_reversed=30.0, anomalous_groups=["reversals"])]
    alerts = run(IncidentTracker(), seq)
    assert [a.event for a in alerts] == ["open", "update", "update"]
    assert {a.incident_id for a in alerts} == {"denials-2026-03-02T00:00Z"}
    assert [a.group for a in alerts] == ["denials"] * 3  # routing label stays
    joined = alerts[1]
    assert joined.groups == ["denials", "outage"] and joined.window_start.minute == 3
    assert joined.statuses == ["denied", "approved"] and joined.severity == "critical"
    assert joined.summary == ("denied 10/min against ~10 expected, approved 100 against "
                              "~100, since 00:00 UTC")
    assert alerts[2].groups == ["denials", "outage", "reversals"]
    assert alerts[2].statuses == ["denied", "approved", "reversed"]


def test_updates_are_sparse_escalation_and_reminders_only():
    worse = verdict(20.0, anomalous_groups=["denials"])
    seq = [BAD] * 5 + [worse] + [BAD] * 20
    alerts = run(IncidentTracker(), seq)
    updates = [a for a in alerts if a.event == "update"]
    # One for the escalation to critical, then reminders every UPDATE_EVERY minutes.
    assert updates[0].severity == "critical" and updates[0].window_start.minute == 5
    assert len(updates) == 1 + (26 - 5 - 1) // UPDATE_EVERY
    assert all(a.severity == "critical" for a in updates)  # the worst so far
    assert len({a.id for a in alerts}) == len(alerts)


def test_replay_gives_identical_alerts_and_state_roundtrips():
    seq = [BAD] * 3 + [QUIET] * 12
    first = run(IncidentTracker(), seq)
    tracker = IncidentTracker()
    part = run(tracker, seq[:2])
    restored = msgspec.json.decode(msgspec.json.encode(tracker), type=IncidentTracker)
    rest = []
    for i, v in enumerate(seq[2:], start=2):
        rest += restored.step(T0 + i * 60_000, COUNTS, v, "m1")
    assert [a.id for a in first] == [a.id for a in part + rest]
    assert first == part + rest
    assert [a.event for a in first] == ["open", "resolved"]


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
    assert run(IncidentTracker(), [flagged, QUIET, too_few_to_isolate]) == []
    assert run(IncidentTracker(), [flagged, _held(1.0), too_few_to_isolate]) == []


def test_summary_reads_as_a_sentence():
    day = 86_400_000

    def incident(statuses, since_ms, last_anomalous_ms=0):
        return OpenIncident("i", "g", since_ms, last_anomalous_ms, statuses=statuses)

    assert summarize(incident(["reversed", "approved"], T0 + 873 * 60_000), "open",
                     {"reversed": 122, "approved": 62}, {"reversed": 2.04, "approved": 301.4},
                     T0 + 874 * 60_000) == (
        "reversed 122/min against ~2 expected, approved 62 against ~301, since 14:33 UTC")
    assert summarize(incident(["failed"], T0), "update", {"failed": 3}, {"failed": 0.034},
                     T0 + day + 60_000) == (
        "failed 3/min against ~0.034 expected, since 2026-03-02 00:00 UTC")
    assert summarize(incident(["failed"], T0, T0 + 124 * 60_000), "resolved", {}, {},
                     T0 + 135 * 60_000) == (
        "resolved: failed normal since 02:05 UTC; lasted 2h15m from 00:00 UTC")
