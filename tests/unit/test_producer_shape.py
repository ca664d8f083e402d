"""The simulator's constants are what their documented rule gives on the reference days."""

from __future__ import annotations

import os

import numpy as np
import pytest

from producer import shape
from producer.replay import counts_frame
from txmon.contracts import STATUSES
from txmon.settings import shared_data_dir


@pytest.fixture(scope="module")
def reference_days():
    files = [shared_data_dir() / f"transactions_{i}.csv" for i in (1, 2)]
    if not all(f.exists() for f in files):
        if os.environ.get("CI") == "true":
            pytest.fail(f"reference data missing under {shared_data_dir()}")
        pytest.skip("reference data not available")
    return [counts_frame(f) for f in files]


def test_hourly_shape_matches_its_derivation(reference_days):
    derived = shape.derive_hourly_shape(reference_days)
    assert np.allclose(derived, shape.HOURLY_SHAPE, atol=1e-4)


def test_status_mix_matches_its_derivation(reference_days):
    derived = shape.derive_status_mix(reference_days)
    for status in STATUSES:
        assert derived[status] == pytest.approx(shape.STATUS_MIX_RAW[status], abs=2e-6)


def test_shape_has_a_night_lull_and_day_peaks():
    hours = np.array(shape.HOURLY_SHAPE)
    assert hours.max() == 1.0
    assert hours[2:5].max() < 0.01  # night lull
    assert np.all(np.diff(hours[5:12]) > 0)  # morning ramp
    assert hours[11] > hours[13] < hours[17]  # late-morning peak, dip, evening peak
    assert np.all(np.diff(hours[17:]) < 0)  # evening decline


def test_shape_is_continuous_across_midnight():
    before, after = shape.shape_at(np.array([86399.0, 0.0]))
    assert abs(before - after) < 1e-3
    assert shape.shape_at(17.5 * 3600) == pytest.approx(1.0)


def test_mix_sums_to_one_and_every_status_occurs():
    assert shape.STATUS_MIX.sum() == pytest.approx(1.0)
    assert (shape.STATUS_MIX > 0).all()
    assert shape.STATUS_MIX[STATUSES.index("approved")] > 0.85
