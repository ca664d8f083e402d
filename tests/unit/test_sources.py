"""A source partition that goes quiet while the others flow: judged against the others,
named in the page, and never hidden by the idle clock's empty minutes."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from evaluation.train import windows_from_simulation
from processor.detector import FAULT_Z, Detector
from processor.incidents import IncidentTracker
from processor.minutes import Minutes, MinuteState
from processor.sources import MIN_MINUTES, SourceWatch
from processor.windows import MinuteMerger
from producer.simulate import Scenario, minute_counts
from txmon.contracts import STATUSES, WindowPartial

DAY = datetime(2026, 3, 9, tzinfo=UTC)


def test_a_partition_silent_while_the_others_flow_is_low():
    watch = SourceWatch()
    rng = np.random.default_rng(0)
    for _ in range(MIN_MINUTES + 5):
        assert watch.judge(list(rng.multinomial(600, [0.3, 0.3, 0.4])), learn=True) == []
    quiet = watch.judge([190, 0, 250], learn=True)
    assert [q.partition for q in quiet] == [1] and quiet[0].z >= FAULT_Z
    assert quiet[0].observed == 0 and 150 < quiet[0].expected < 250
    assert watch.judge([200, 180, 250], learn=True) == []  # back: normal at once


def test_everything_silent_is_no_source_of_its_own():
    watch = SourceWatch()
    for _ in range(MIN_MINUTES + 1):
        watch.judge([200, 200, 200], learn=True)
    assert watch.judge([0, 0, 0], learn=False) == []  # the volume rule's, not ours
    assert watch.judge([100, 100, 100], learn=True) == []  # a quiet hour: shares hold


def test_a_single_partition_is_never_judged():
    watch = SourceWatch()
    for _ in range(MIN_MINUTES + 1):
        assert watch.judge([500], learn=True) == []
    assert watch.judge([0], learn=True) == []


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    Detector.fit(windows_from_simulation(1, 20.0, 0), seed=0, source="test").save(path)
    return path


def test_the_worker_pages_a_quiet_partition_and_names_it(model):
    """Three partitions; partition 1 sends nothing from 11:00 to 11:30 while its
    idle clock still closes its minutes (empty partials, as the counting stage sends)."""
    frame = minute_counts(Scenario(start=DAY, rate=20.0, seed=9, duration=12 * 3600))
    rng = np.random.default_rng(9)
    minutes = Minutes(str(model), warmup_windows=60)
    state = MinuteState(merger=MinuteMerger(3), incidents=IncidentTracker())
    closed = []
    for i, (ts, row) in enumerate(frame[list(STATUSES)].iterrows()):
        start = int(ts.timestamp() * 1000)
        split = np.array([rng.multinomial(n, [0.3, 0.3, 0.4]) for n in row.to_numpy()]).T
        if 660 <= i < 690:
            split[1] = 0
        for p in range(3):
            partial = WindowPartial(partition=p, closed_until=start + 60_000,
                                    windows={start: [*map(int, split[p]), 0]})
            closed += minutes.apply(state, 3 * i + p, partial)
    alerts = [a for c in closed for a in c.alerts]
    opened = [a for a in alerts if a.event == "open"]
    assert len(opened) == 1, [a.summary for a in alerts]
    page = opened[0]
    assert page.group == "outage" and page.causes == ["source"] and page.severity == "critical"
    assert page.summary.startswith("partition 1 0/min against ~")
    assert 660 <= (page.window_start.hour * 60 + page.window_start.minute) <= 661
    quiet = [c.window.id for c in closed if c.window.quiet_sources == [1]]
    assert len(quiet) >= 29 and all("T11:" in m for m in quiet)
    assert alerts[-1].event == "resolved"
