"""The detector on simulated minutes: calibrated, deterministic, quiet on volume alone."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import joblib
import numpy as np
import pytest

from evaluation.train import windows_from_simulation
from processor import levels
from processor.detector import FAULT_Z, Detector, FlatForest
from processor.features import LEVEL_MINUTES, z_drop, z_rise
from producer.incidents import parse_incident, parse_outage, parse_silence
from producer.simulate import Scenario, minute_counts
from txmon.contracts import STATUSES

DAY = datetime(2026, 3, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.fit(windows_from_simulation(1, 20.0, 0), seed=0, source="test")


def day(seed: int, rate: float = 20.0, incidents=(), hours: float = 24) -> list:
    frame = minute_counts(Scenario(start=DAY, rate=rate, seed=seed, duration=hours * 3600,
                                   incidents=tuple(incidents)))
    starts = frame.index.as_unit("ms").asi8.tolist()
    return list(zip(starts, frame[list(STATUSES)].to_numpy().tolist(), strict=True))


def verdicts(det: Detector, windows: list) -> list:
    """Scored as the worker scores them: with the hourly memory of normal minutes."""
    out, recent, hours = [], [], {}
    for start, counts in windows:
        v = det.score(start, counts, recent, hours=hours)
        out.append((start, v))
        if not v.anomalous:
            levels.record(hours, start, counts[0])
        recent = [*recent[-LEVEL_MINUTES:], (start, counts)]
    return out


def minute(start_ms: int) -> int:
    return (start_ms // 60_000) % 1440


def test_flat_forest_equals_sklearn(detector):
    rng = np.random.default_rng(1)
    for status, model in detector.model.items():
        x = np.abs(rng.normal(0, 3, size=(500, model.n_features_in_)))
        x[:50] = 0.0
        ours = FlatForest(model).score(x)
        assert np.allclose(ours, -model.score_samples(x), rtol=0, atol=1e-12), status


def test_threshold_is_calibrated_on_training(detector):
    meta = detector.meta
    assert meta["false_alarm_rate"] == 0.002
    assert set(meta["group_thresholds"]) == {"failed", "denied", "reversed",
                                             "backend_reversed", "approved"}
    assert meta["training_windows"] == 1440
    assert {"python", "scikit-learn", "numpy"} <= set(meta["versions"])


def test_clean_and_surge_days_are_quiet(detector):
    surge = parse_incident(",".join(STATUSES) + ":x4:2h@10h")
    dip = parse_incident(",".join(STATUSES) + ":x0.3:1h@15h")
    for windows in (day(201), day(202, rate=200.0), day(203, incidents=[surge, dip])):
        flagged = [minute(s) for s, v in verdicts(detector, windows) if v.anomalous]
        assert len(flagged) <= 2, flagged


@pytest.mark.parametrize("spec, group", [
    ("denied:x3:20m@11h", "denials"),
    ("reversed:x8:15m@11h", "reversals"),
    ("backend_reversed:x12:15m@11h", "reversals"),
    ("failed:x300:5m@11h", "failures"),
])
def test_spikes_are_named(detector, spec, group):
    windows = day(204, incidents=[parse_incident(spec)], hours=12)
    hits = [(minute(s), v) for s, v in verdicts(detector, windows) if v.anomalous]
    first = [m for m, v in hits if group in v.groups]
    assert first and 660 <= first[0] <= 662, [(m, v.groups) for m, v in hits]
    v = dict(hits)[first[0]]
    status = spec.split(":")[0]
    assert status in v.statuses and v.z[status] >= FAULT_Z
    assert v.expected[status] > 0


def test_outage_is_seen_and_volume_drop_is_not(detector):
    windows = day(205, incidents=[parse_outage("10m:0.2@11h")], hours=12)
    hits = [minute(s) for s, v in verdicts(detector, windows) if "outage" in v.groups]
    assert hits and 660 <= hits[0] <= 662


@pytest.mark.parametrize("spec", ["45m@11h", "1h:0.04@11h"])
def test_silence_and_dwindling_traffic_are_an_outage(detector, spec):
    """No status count shows it: every status falls together. Flagged from the first or
    second minute, by the volume rule, and named with all traffic expected."""
    windows = day(207, incidents=[parse_silence(spec)], hours=13)
    hits = [(minute(s), v) for s, v in verdicts(detector, windows) if v.anomalous]
    assert hits and 660 <= hits[0][0] <= 661, [m for m, _ in hits]
    v = hits[0][1]
    assert v.groups == ("outage",) and "volume" in v.causes and v.score >= 1.0
    assert v.expected_total > 500
    assert all(660 <= m < 720 for m, _ in hits)  # back to normal as traffic returns


def test_a_quiet_afternoon_is_no_outage(detector):
    windows = day(208, incidents=[parse_silence("3h:0.4@13h")], hours=18)
    assert [minute(s) for s, v in verdicts(detector, windows) if v.anomalous] == []


def test_scoring_is_deterministic_and_survives_save_load(detector, tmp_path):
    windows = day(206, incidents=[parse_incident("denied:x3:20m@3h")], hours=5)
    path = tmp_path / "model.joblib"
    detector.save(path)
    again = Detector.load(path)
    a = verdicts(detector, windows)
    b = verdicts(again, windows)
    assert a == b
    assert again.version == detector.version


def test_a_model_saved_with_its_forests_still_loads(detector, tmp_path):
    """Files from before the forests were saved as arrays hold scikit-learn objects."""
    windows = day(206, incidents=[parse_incident("denied:x3:20m@3h")], hours=2)
    path = tmp_path / "old.joblib"
    joblib.dump({"model": detector.model, "baseline": detector.baseline, "threshold": 1.0,
                 "meta": detector.meta}, path)
    assert verdicts(Detector.load(path), windows) == verdicts(detector, windows)


def test_a_worker_loads_and_scores_without_scikit_learn(detector, tmp_path):
    """scikit-learn's import (with scipy.stats and pandas) was most of a worker's start."""
    path = tmp_path / "model.joblib"
    detector.save(path)
    probe = ("import sys; import processor.app; from processor.detector import Detector; "
             f"d = Detector.load({str(path)!r}); d.score(0, [1] * 7, []); "
             "print(sorted(m for m in ('sklearn', 'pandas', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_quasi_poisson_tails():
    assert z_rise(3, 3.0, 1.0) == 0.0 and z_drop(3, 3.0, 1.0) == 0.0
    assert z_rise(30, 10.0, 1.0) > 4.0
    assert z_rise(30, 10.0, 4.0) < z_rise(30, 10.0, 1.0)  # overdispersion tempers
    assert z_drop(0, 300.0, 1.0) > 20.0
    assert 0 < z_drop(5, 10.0, 1.0) < 2.5


def test_first_minute_of_a_stream_judges_rising_statuses_not_approvals(detector):
    start = int(DAY.replace(hour=12).timestamp() * 1000)
    v = detector.score(start, [0, 500, 0, 500, 0, 0, 0], [])
    assert "denials" in v.groups and "reversals" in v.groups
    assert "outage" not in v.groups  # no level yet: no approvals count is "too low"


def test_incidents_right_after_a_stream_starts(detector):
    """`txmon produce --outage 10m` starts 5 minutes in: approvals are judged from the
    third minute of a stream, rising statuses from the first."""
    from processor.incidents import IncidentTracker

    start = DAY.replace(hour=10)
    for spec, group in (("outage:10m", "outage"), ("denied:x4:2m30s@45s", "denials")):
        incident = (parse_outage(spec.split(":", 1)[1]) if spec.startswith("outage")
                    else parse_incident(spec))
        frame = minute_counts(Scenario(start=start, rate=20.0, seed=9, duration=1800,
                                       incidents=(incident,)))
        starts = frame.index.as_unit("ms").asi8.tolist()
        tracker, opened = IncidentTracker(), []
        for s, v in verdicts(detector, list(zip(starts, frame.to_numpy().tolist(),
                                                strict=True))):
            opened += [(minute(s) - 600, a.group) for a in tracker.step(s, [0] * 7, v, "m")
                       if a.event == "open"]
        assert [g for _, g in opened] == [group], (spec, opened)
        first = opened[0][0]
        assert first <= {"outage": 7, "denials": 2}[group], (spec, opened)


def test_pooled_dispersion_sees_batches_of_a_rare_status():
    """Poisson minutes at 0.5 a minute give φ 1; the same mean in batches of three
    (what real reversals look like) gives φ about 3, which tempers a batch's z."""
    from processor.features import pooled_dispersion

    rng = np.random.default_rng(1)
    exp = np.full(120, 0.5)
    assert pooled_dispersion(rng.poisson(0.5, 120).astype(float), exp) < 1.5
    batches = 3.0 * rng.poisson(0.5 / 3, 120)
    assert 2.0 < pooled_dispersion(batches, exp) < 4.5
    assert pooled_dispersion(batches[:20], exp[:20]) is None  # 10 expected: too little


def test_an_incident_in_progress_does_not_become_todays_normal(detector):
    """Two hours of reversals x8: with its minutes paused (as the worker pauses an open
    incident's), the last hour still reads as a rise; learning from them, it fades."""
    windows = day(21, incidents=[parse_incident("reversed:x8:2h@12h")], hours=14.5)
    late = [w for w in windows if minute(w[0]) >= 13 * 60 + 45]
    recent = windows[:-len(late)]
    paused = frozenset(s for s, _ in windows if minute(s) >= 12 * 60)
    z_paused, z_learnt = [], []
    for start, counts in late[:10]:
        z_paused.append(detector.score(start, counts, recent, paused).z["reversed"])
        z_learnt.append(detector.score(start, counts, recent).z["reversed"])
        recent = [*recent[-LEVEL_MINUTES:], (start, counts)]
    assert min(z_paused) >= FAULT_Z
    assert np.median(z_learnt) < np.median(z_paused)
