from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest

from producer.incidents import (
    DEFAULT_OFFSET_SECONDS,
    parse_duration,
    parse_incident,
    parse_outage,
    rate_multipliers,
)
from txmon.contracts import STATUSES, IncidentLabel, encode
from txmon.errors import UserError


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("15m", 900), ("2h30m", 9000), ("1d", 86400), ("42", 42), ("1h0m5s", 3605)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-3", "1m2h"])
def test_bad_durations(text):
    with pytest.raises(UserError):
        parse_duration(text)


def test_incident_spec_full():
    inc = parse_incident("denied:x8:20m:ramp@1h")
    assert (inc.statuses, inc.kind, inc.factor, inc.duration, inc.offset) == (
        ("denied",), "ramp", 8.0, 1200, 3600)


def test_incident_defaults_and_several_statuses():
    inc = parse_incident("reversed,backend_reversed:x30:15m")
    assert inc.statuses == ("reversed", "backend_reversed")
    assert inc.kind == "spike"
    assert inc.offset == DEFAULT_OFFSET_SECONDS


@pytest.mark.parametrize(
    "spec, words",
    [
        ("bogus:x2:5m", "unknown status"),
        ("failed:20:5m", "x20"),
        ("failed:x2", "expected"),
        ("failed:x2:5m:wobble", "kind"),
        ("failed:x2:10m:burst", "burst"),
        ("failed:x2:0m", "duration"),
        ("failed:x2:5m@soon", "duration"),
    ],
)
def test_bad_incident_specs_say_why(spec, words):
    with pytest.raises(UserError) as err:
        parse_incident(spec)
    assert spec in str(err.value) and words in str(err.value)


def test_outage_specs():
    total = parse_outage("10m@1h")
    assert (total.statuses, total.kind, total.factor, total.duration, total.offset) == (
        ("approved",), "outage", 0.0, 600, 3600)
    assert parse_outage("10m:0.2").factor == 0.2
    for bad in ("10m:1.5", "10m:x", "a:b:c"):
        with pytest.raises(UserError):
            parse_outage(bad)


def test_profiles():
    t = np.array([0.0, 99.9, 100.0, 150.0, 199.9, 200.0])
    spike = parse_incident("failed:x20:100s@100s").profile(t)
    assert spike.tolist() == [1, 1, 20, 20, 20, 1]
    ramp = parse_incident("failed:x11:100s:ramp@100s").profile(t)
    assert ramp[[0, 1, 2, 5]].tolist() == [1, 1, 1, 1]
    assert ramp[3] == pytest.approx(6.0) and ramp[4] == pytest.approx(10.99)
    outage = parse_outage("100s:0.25@100s").profile(t)
    assert outage.tolist() == [1, 1, 0.25, 0.25, 0.25, 1]


def test_rate_multipliers_multiply_per_status():
    incidents = [parse_incident("failed,denied:x4:10s@0s"), parse_incident("failed:x3:10s@5s"),
                 parse_outage("10s@0s")]
    m = rate_multipliers(incidents, np.array([2.0, 7.0, 20.0]))
    col = {s: m[:, i].tolist() for i, s in enumerate(STATUSES)}
    assert col["failed"] == [4, 12, 1]
    assert col["denied"] == [4, 4, 1]
    assert col["approved"] == [0, 0, 1]
    assert col["reversed"] == [1, 1, 1]


def test_labels_round_trip_through_the_contract():
    start = datetime(2026, 3, 2, tzinfo=UTC)
    label = parse_incident("denied:x8:20m:ramp@1h").label(start)
    assert label.start == datetime(2026, 3, 2, 1, tzinfo=UTC)
    assert label.end == datetime(2026, 3, 2, 1, 20, tzinfo=UTC)
    assert (label.kind, label.statuses, label.factor) == ("ramp", ["denied"], 8.0)
    assert label.id == "ramp-denied-20260302T010000Z"
    back = msgspec.json.decode(encode(label), type=IncidentLabel)
    assert back == label
    outage = parse_outage("10m:0.2@2h").label(start)
    assert (outage.kind, outage.statuses, outage.factor) == ("outage", ["approved"], 0.2)
