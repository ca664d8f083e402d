"""`txmon report`: the PNG drawn from what is on the window-counts and alerts topics."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, timedelta

import pytest
from support.obs import (
    TXMON,
    alert_key,
    make_alert,
    produce,
    reference_windows,
    window_key,
)

from exporter.report import parse_time, render, select_windows
from txmon.errors import UserError

DAY = date(2026, 3, 2)


def at(hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 3, 2, h, m, tzinfo=UTC)


def test_windows_selected_once_in_range(shared_data):
    windows = reference_windows(shared_data / "transactions_1.csv", DAY)
    chosen = select_windows(windows + windows[600:700], at("10:00"), at("11:00"))
    assert [w.start for w in chosen] == [at("10:00") + timedelta(minutes=i) for i in range(60)]
    assert parse_time("2026-03-02T10:00") == at("10:00")
    assert parse_time("2026-03-02T07:00-03:00") == at("10:00")
    with pytest.raises(UserError):
        parse_time("yesterday")


def test_nothing_to_draw_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no closed windows"):
        render([], [], tmp_path / "x.png")


def test_report_from_the_topics(kafka_settings, unique_topics, txmon_env, shared_data,
                                tmp_path):
    import matplotlib.image

    windows = reference_windows(shared_data / "transactions_1.csv", DAY)
    alerts = [make_alert("rev-1", "open", "reversed", at("14:33")),
              make_alert("rev-1", "update", "reversed", at("15:34")),
              make_alert("rev-1", "resolved", "reversed", at("18:36")),
              make_alert("den-1", "open", "denied", at("14:35"), severity="warning"),
              make_alert("den-1", "resolved", "denied", at("17:21"), severity="warning"),
              make_alert("old-1", "open", "failed", at("03:00"))]
    produce(kafka_settings, unique_topics.window_counts, windows + windows[:10], key=window_key)
    produce(kafka_settings, unique_topics.alerts, alerts, key=alert_key)
    produce(kafka_settings, unique_topics.window_counts, [b"garbage"], key=lambda r: "bad")
    out = tmp_path / "report.png"
    proc = subprocess.run([TXMON, "report", "--from", "2026-03-02T12:00", "--to",
                           "2026-03-02T20:00", "--out", str(out)], env=txmon_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = sum(w.total for w in windows if at("12:00") <= w.start < at("20:00"))
    # old-1 opened at 03:00 and never resolved: still open, so it overlaps the range.
    assert (f"480 windows, {expected:,} transactions, 3 incidents, 5 alerts "
            "(1 undecodable records skipped)") in proc.stdout, proc.stdout
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 400 and image.shape[1] > 1000
    assert image[..., :3].std() > 0.05  # not a blank canvas
