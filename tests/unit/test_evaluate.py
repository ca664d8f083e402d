"""`txmon evaluate`: the reduced suite meets the acceptance criteria, and its scoring
counts what it should."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from evaluation.evaluate import (
    QUICK,
    Case,
    Incident,
    Run,
    episodes,
    onset_ms,
    scenario,
    score_case,
)

TXMON = str(Path(sys.executable).with_name("txmon"))
DAY = datetime(2026, 3, 9, tzinfo=UTC)


@pytest.mark.slow
def test_quick_suite_meets_acceptance(shared_data, tmp_path):
    report = tmp_path / "detection.md"
    report.write_text("# Detection\n\nintro\n\n<!-- evaluate:begin -->\nSTALE-BLOCK\n"
                      "<!-- evaluate:end -->\n\nafter\n")
    out = subprocess.run(
        [TXMON, "evaluate", "--quick", "--train-days", "2", "--no-progress",
         "--data-dir", str(shared_data), "--out", str(tmp_path / "png"), "--report",
         str(report)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    verdicts = dict(re.findall(r"^\| ([^|]+?) \| (pass|FAIL) \|$", out.stdout, re.M))
    assert len(verdicts) == 17, out.stdout[-3000:]
    failed = [name for name, v in verdicts.items() if v == "FAIL"]
    assert not failed, out.stdout[-4000:]
    for name in (*QUICK, "transactions_1", "transactions_2"):
        png = tmp_path / "png" / f"{name}.png"
        assert png.stat().st_size > 10_000, name
    text = report.read_text()
    assert text.startswith("# Detection\n\nintro") and text.rstrip().endswith("after")
    assert "STALE-BLOCK" not in text and "txmon evaluate --quick" in text
    assert "| transactions_2.csv | 16:23-17:25 | denials | yes |" in text


def _run(incidents: list[Incident]) -> Run:
    return Run(np.zeros(0), np.zeros((0, 7)), np.zeros(0), 1.0, [], incidents)


def test_scoring_counts_hits_misses_delays_and_false_incidents():
    case = Case("t", "spike", 1, incidents=("denied:x3:20m@10h", "reversed:x8:15m@14h"))
    sc = scenario(case, DAY)
    ms = int(DAY.timestamp() * 1000)
    at = lambda h, m: ms + (h * 60 + m) * 60_000  # noqa: E731
    run = _run([
        Incident("denials-a", "denials", at(10, 1), at(10, 25)),   # hit, delay 1
        Incident("outage-b", "outage", at(10, 2), at(10, 5)),      # wrong group: false
        Incident("failures-c", "failures", at(3, 0), at(3, 4)),    # away from labels: false
    ])
    labels, false = score_case(case, sc, run)
    assert [lr.detected_ms is not None for lr in labels] == [True, False]
    assert labels[0].delay == 1 and labels[0].delay_from_start == 1
    assert sorted(i.incident_id for i in false) == ["failures-c", "outage-b"]
    quiet = Case("q", "surge", 2, incidents=("denied:x3:20m@10h",), expect="quiet")
    labels, false = score_case(quiet, scenario(quiet, DAY), run)
    assert labels == [] and len(false) == 3


def test_onset_of_a_ramp_is_when_it_becomes_visible():
    case = Case("r", "ramp", 1, incidents=("denied:x6:30m:ramp@10h", "failed:x40:15m@9h"))
    sc = scenario(case, DAY)
    ramp, rare = sc.labels()
    ramp_onset = datetime.fromtimestamp(onset_ms(sc, ramp) / 1000, UTC)
    assert DAY + timedelta(hours=10) < ramp_onset < DAY + timedelta(hours=10, minutes=10)
    # A status at 0.005 % of traffic needs a few minutes of ×40 to be told from chance.
    rare_onset = datetime.fromtimestamp(onset_ms(sc, rare) / 1000, UTC)
    assert DAY + timedelta(hours=9) < rare_onset <= DAY + timedelta(hours=9, minutes=5)


def test_a_group_joining_an_open_incident_detects_its_label_and_episodes_count_opens():
    """One incident that denials opened and reversals joined later covers both labels;
    the episode (overlapping labels) counts one open and every record of it."""
    case = Case("t", "bursty", 1, incidents=("denied:x3:20m@10h", "reversed:x8:15m@10h10m"))
    sc = scenario(case, DAY)
    ms = int(DAY.timestamp() * 1000)
    at = lambda h, m: ms + (h * 60 + m) * 60_000  # noqa: E731
    one = Incident("denials-a", "denials", at(10, 1), at(10, 40), records=4,
                   joined={"denials": at(10, 1), "reversals": at(10, 11)})
    run = _run([one])
    labels, false = score_case(case, sc, run)
    assert [lr.detected_ms for lr in labels] == [at(10, 1), at(10, 11)] and false == []
    spans = [(lr.label_lo, at(10, 30)) for lr in labels]
    (episode,) = episodes(spans, run)
    assert (episode.opens, episode.records) == (1, 4)
    two = _run([one, Incident("reversals-b", "reversals", at(10, 20), None, records=2)])
    (episode,) = episodes(spans, two)
    assert (episode.opens, episode.records) == (2, 6)
