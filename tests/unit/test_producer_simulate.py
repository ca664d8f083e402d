from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from producer.incidents import parse_incident, parse_outage
from producer.simulate import Scenario, generate, minute_counts
from txmon.contracts import STATUSES
from txmon.contracts.events import decode_transaction

START = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def _bytes(scenario, count=None):
    out = []
    for batch in generate(scenario, count):
        keys, values = batch.encode()
        out.extend(zip(keys, values, strict=True))
    return out


def _frame(scenario, count=None):
    ts, st = [], []
    for batch in generate(scenario, count):
        ts.append(batch.ts_ms)
        st.append(batch.status)
    return np.concatenate(ts), np.concatenate(st)


def test_same_seed_same_bytes_other_seed_other_events():
    sc = Scenario(START, rate=200, seed=42, duration=300)
    first, second = _bytes(sc), _bytes(Scenario(START, rate=200, seed=42, duration=300))
    assert first == second and len(first) > 10_000
    assert first != _bytes(Scenario(START, rate=200, seed=43, duration=300))


def test_events_decode_are_ordered_and_ids_unique():
    sc = Scenario(START, rate=200, seed=1, duration=120)
    pairs = _bytes(sc)
    decoded = [decode_transaction(v) for _, v in pairs]
    assert all(k == tx.id.encode() for (k, _), tx in zip(pairs, decoded, strict=True))
    assert len({tx.id for tx in decoded}) == len(decoded)
    times = [tx.timestamp for tx in decoded]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < datetime(2026, 3, 2, 16, 2, tzinfo=UTC)
    objects = [tx for b in generate(sc) for tx in b.transactions()]
    assert objects == decoded


def test_shorter_run_and_count_are_prefixes():
    long = _bytes(Scenario(START, rate=50, seed=5, duration=7300))
    short = _bytes(Scenario(START, rate=50, seed=5, duration=3700))
    assert long[: len(short)] == short
    counted = _bytes(Scenario(START, rate=50, seed=5), count=12_345)
    assert len(counted) == 12_345 and counted == long[:12_345]


def test_minute_counts_equal_the_events_per_minute():
    incidents = (parse_incident("failed:x20:15m@10m"), parse_outage("5m:0.3@40m"))
    sc = Scenario(datetime(2026, 3, 2, 7, 59, 30, tzinfo=UTC), rate=30, seed=9,
                  duration=5400, incidents=incidents)
    table = minute_counts(sc)
    ts, st = _frame(sc)
    minutes = pd.to_datetime(ts // 60000 * 60, unit="s", utc=True)
    pivot = (pd.crosstab(minutes, pd.Categorical.from_codes(st, STATUSES))
             .reindex(index=table.index, columns=list(STATUSES), fill_value=0))
    assert table.index[0] == pd.Timestamp("2026-03-02T07:59", tz="UTC")
    assert len(table) == 91
    assert (pivot.to_numpy() == table.to_numpy()).all()


def test_volume_follows_the_rate_and_the_day():
    day = minute_counts(Scenario(datetime(2026, 3, 2, tzinfo=UTC), rate=100, seed=3,
                                 duration=86400))
    per_hour = day.sum(axis=1).groupby(day.index.hour).sum() / 3600
    # --rate is the rate at the peak (17:30); interpolation puts that hour's mean at 95 %
    assert per_hour[17] == pytest.approx(100 * 0.952, rel=0.02)
    assert per_hour.idxmax() == 17
    assert per_hour[3] < 0.01 * per_hour[17]
    expected = Scenario(datetime(2026, 3, 2, tzinfo=UTC), rate=100, seed=3).rates(0, 86400)
    total, mean = day.to_numpy().sum(), expected.sum()
    assert abs(total - mean) < 5 * np.sqrt(mean)
    share = day.sum() / day.to_numpy().sum()
    assert share["approved"] == pytest.approx(0.8948, abs=0.002)
    assert share["denied"] == pytest.approx(0.0969, abs=0.002)


def test_incidents_change_the_rates_they_name():
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    base = Scenario(start, rate=200, seed=4, duration=3600)
    hit = Scenario(start, rate=200, seed=4, duration=3600, incidents=(
        parse_incident("denied:x5:20m@20m"), parse_outage("10m@45m")))
    a, b = minute_counts(base), minute_counts(hit)
    during = slice(pd.Timestamp("2026-03-02T10:20", tz="UTC"),
                   pd.Timestamp("2026-03-02T10:39", tz="UTC"))
    ratio = b.loc[during, "denied"].sum() / a.loc[during, "denied"].sum()
    assert ratio == pytest.approx(5, rel=0.05)
    outage = slice(pd.Timestamp("2026-03-02T10:45", tz="UTC"),
                   pd.Timestamp("2026-03-02T10:54", tz="UTC"))
    assert b.loc[outage, "approved"].sum() == 0
    assert b.loc[outage, "denied"].sum() > 0
    before = slice(None, pd.Timestamp("2026-03-02T10:19", tz="UTC"))
    assert (a.loc[before] == b.loc[before]).all().all()  # same seed: identical outside


def test_ramp_rises():
    sc = Scenario(datetime(2026, 3, 2, 10, tzinfo=UTC), rate=500, seed=2, duration=1800,
                  incidents=(parse_incident("reversed:x30:20m:ramp@5m"),))
    rev = minute_counts(sc)["reversed"].to_numpy()
    ramp = rev[5:25]
    assert ramp[:5].mean() < ramp[-5:].mean() / 3
    assert rev[26:].mean() < ramp[-5:].mean() / 10


def test_labels_follow_the_start():
    sc = Scenario(datetime(2026, 3, 2, 10, 0, 0, 900000, tzinfo=UTC), rate=1, seed=0,
                  incidents=(parse_incident("failed:x2:5m@1h"),))
    (label,) = sc.labels()
    assert label.start == datetime(2026, 3, 2, 11, tzinfo=UTC)
