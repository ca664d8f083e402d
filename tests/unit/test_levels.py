"""Today's level: learnt from normal minutes only, remembered by the hour, bounded by
today's earlier hours and the previous days."""

from __future__ import annotations

import numpy as np

from processor import levels
from txmon.contracts.minutes import DAY_MS, MINUTE_MS

T0 = 1_772_409_600_000  # 2026-03-02 00:00 UTC
USUAL = np.full(1440, 10.0)  # 10 approvals a minute, all day


def minutes(n: int, approved: int, first: int = 0) -> list[tuple[int, list[int]]]:
    return [(T0 + (first + i) * MINUTE_MS, [approved, 0, 0, 0, 0, 0, 0]) for i in range(n)]


def test_the_level_learns_from_normal_minutes_only():
    recent = minutes(40, 10) + minutes(20, 0, first=40)
    assert levels.recent_level(USUAL, recent, [True] * 60, 0) == 1.0  # 75th percentile
    learn = [True] * 40 + [False] * 20  # the silence is an incident's: paused
    assert levels.recent_level(USUAL, recent, learn, 0) == 1.0
    silence = minutes(60, 0)
    assert levels.recent_level(USUAL, silence, [True] * 60, 0) == 0.0
    assert levels.recent_level(USUAL, silence, [False] * 60, 0) is None


def test_blocks_keep_a_sparse_night_honest():
    """One approval every other minute against 0.5 usual: per-minute ratios are 0 or 2,
    whose 75th percentile is 2; ten-minute blocks say about 1."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(0.5, 60).astype(float)
    per_minute = float(np.quantile(counts / 0.5, 0.75))
    blocks = levels.block_level(counts, np.full(60, 0.5))
    assert per_minute >= 2.0
    assert 0.7 < blocks < 1.5


def test_hours_carry_today_and_previous_days():
    hours: dict[int, list[int]] = {}
    for i in range(60):  # yesterday 10:00-11:00 at the usual level
        levels.record(hours, T0 - DAY_MS + (600 + i) * MINUTE_MS, 10)
    for i in range(120):  # today 08:00-10:00 at half of it
        levels.record(hours, T0 + (480 + i) * MINUTE_MS, 5)
    now = T0 + 630 * MINUTE_MS
    assert levels.days_level(USUAL, hours, now) == 1.0
    assert levels.today_level(USUAL, hours, now) == 0.5
    assert levels.carried_level(USUAL, hours, now) == 0.5
    # The recent hour says 4 (a surge): volume is expected no higher than today's
    # earlier hours; never lower than DAYS_FLOOR of yesterday's.
    assert levels.volume_reference(USUAL, hours, now, 4.0) == 0.5
    assert levels.volume_reference(USUAL, hours, now, 0.01) == levels.DAYS_FLOOR


def test_hours_are_forgotten_after_a_week():
    hours: dict[int, list[int]] = {}
    for d in range(10):
        for h in range(24):
            levels.record(hours, T0 + d * DAY_MS + h * levels.HOUR_MS, 10)
    assert len(hours) <= (levels.HISTORY_DAYS + 1) * 24
    assert min(hours) > T0 + 9 * DAY_MS - (levels.HISTORY_DAYS + 1) * DAY_MS
