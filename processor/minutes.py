"""The merge stage's logic: partial windows in, one scored minute and its alerts out.

Runs off the event loop (in an executor) because scoring calls scikit-learn. Its state
is one record: merged partials, the incident tracker, the warm-up history and the
offset of the last partial applied, stored together so they can never disagree.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from processor import levels, state_schema
from processor.detector import Detector, Signals, Verdict
from processor.features import APPROVED, LEVEL_MINUTES, minute_of_day
from processor.incidents import DEFAULT_POLICY, IncidentTracker, Policy
from processor.sketch import HeavyHitters
from processor.slices import SliceWatch
from processor.sources import SourceWatch
from processor.windows import WINDOW_MS, Closed, MinuteMerger
from txmon.contracts import STATUSES, Alert, MinuteCounts, WindowCount, WindowPartial
from txmon.contracts.minutes import minute_id, to_datetime

log = logging.getLogger(__name__)

#: Longest an open incident keeps today's adaptation from learning its minutes.
ADAPT_PAUSE_MAX_MINUTES = 360


@dataclass
class MinuteState:
    merger: MinuteMerger
    incidents: IncidentTracker
    last_offset: int = -1
    #: (start, status counts); records stored before the counts were named also carry
    #: the late count, last, which `Detector.fit` drops.
    warmup: list[tuple[int, list[int]]] = field(default_factory=list)
    #: (start, status counts) of the latest minutes: today's level and dispersion for
    #: the detector.
    recent: list[tuple[int, list[int]]] = field(default_factory=list)
    #: Starts of recent minutes inside an incident: today's adaptation skips them.
    paused: list[int] = field(default_factory=list)
    #: Per UTC hour, approvals and normal minutes: the level's longer memory
    #: (processor/levels.py), a week of it.
    hours: dict[int, list[int]] = field(default_factory=dict)
    #: Each source partition's share of a minute, to hear of one going quiet.
    sources: SourceWatch = field(default_factory=SourceWatch)
    #: Suspect and watched terminals (processor/slices.py).
    slices: SliceWatch = field(default_factory=SliceWatch)
    #: Which shape of this record a reader expects (processor/state_schema.py).
    schema: int = state_schema.CURRENT


@dataclass
class ClosedMinute:
    window: WindowCount
    alerts: list[Alert]
    #: The groups not normal in this minute (`incidents.abnormal_groups`): what an
    #: incident's recovery waits on.
    abnormal: tuple[str, ...] = ()


class Minutes:
    """Holds the detector (not part of the state: it is loaded, or re-fitted from the
    warm-up history, which is) and closes minutes."""

    def __init__(self, model_path: str | None, warmup_windows: int,
                 policy: Policy = DEFAULT_POLICY):
        self.model_path = Path(model_path) if model_path else None
        self.warmup_windows = warmup_windows
        self.policy = policy
        self.detector: Detector | None = None
        self._model_mtime: float | None = None
        #: Terminals' summaries of the minutes not final yet (MinuteMerger._add_slices).
        self.pending_slices: dict[int, HeavyHitters] = {}
        self.reload_model()

    def reload_model(self) -> bool:
        """Load the model file if it changed: `txmon train` can replace it under a
        running worker. Returns True when a new model was loaded."""
        if self.model_path is None or not self.model_path.exists():
            return False
        mtime = os.stat(self.model_path).st_mtime
        if mtime == self._model_mtime:
            return False
        self.detector = Detector.load(self.model_path)
        self._model_mtime = mtime
        log.info("loaded model %s from %s", self.detector.version, self.model_path)
        return True

    def _detector_for(self, state: MinuteState) -> Detector | None:
        if self._model_mtime is not None:
            return self.detector
        if self.detector is None and len(state.warmup) >= self.warmup_windows:
            self.detector = Detector.fit(state.warmup, source="warm-up")
            log.info("warm-up model fitted on %d windows", len(state.warmup))
        return self.detector

    def apply(self, state: MinuteState, offset: int, partial: WindowPartial) -> list[ClosedMinute]:
        state.merger.add_slices(partial.partition, partial.slices, self.pending_slices)
        state.merger.apply(partial.partition, partial.closed_until, partial.idle, partial.windows,
                           partial.sent_ms)
        out = []
        for closed in state.merger.close_with_sources(self.pending_slices):
            start = closed.start
            counts = MinuteCounts.of(closed.counts)
            detector = self._detector_for(state)
            verdict = self._score(state, closed, counts, detector)
            alerts, abnormal = (
                state.incidents.advance(start, counts.statuses, verdict, detector.version,
                                        self.policy)
                if verdict is not None
                else ([], ())
            )
            if not abnormal and state.incidents.incident is None:
                levels.record(state.hours, start, counts.statuses[APPROVED])
            state.recent = [*state.recent[-LEVEL_MINUTES:], (start, counts.statuses)]
            state.paused = _paused(state, start)
            out.append(ClosedMinute(window_count(start, counts, verdict), alerts, abnormal))
        state.last_offset = offset
        return out

    @staticmethod
    def _score(state: MinuteState, closed: Closed, counts: MinuteCounts,
               detector: Detector | None) -> Verdict | None:
        """The minute's verdict, its sources and terminals judged first (they learn
        from it outside incidents); None while warming up."""
        learn = state.incidents.incident is None
        quiet = state.sources.judge(closed.sources, learn)
        if detector is None:
            state.warmup.append((closed.start, counts.statuses))
            return None
        terminals = None if closed.slices is None else state.slices.judge(
            closed.slices, detector.baseline.share[minute_of_day(closed.start)],
            sum(counts.statuses), learn)
        return detector.score(closed.start, counts.statuses, state.recent,
                              frozenset(state.paused), state.hours, Signals(quiet, terminals))


def _paused(state: MinuteState, start: int) -> list[int]:
    """The recent minutes of the open incident, from its first anomalous one, while it
    is younger than ADAPT_PAUSE_MAX_MINUTES: a change that lasts longer than a working
    shift is today's new normal, which adaptation then learns (and the incident ends)."""
    oldest = state.recent[0][0]
    paused = [s for s in state.paused if s >= oldest]
    inc = state.incidents.incident
    if inc is not None and start - inc.since_ms < ADAPT_PAUSE_MAX_MINUTES * WINDOW_MS:
        known = set(paused)
        paused += [s for s, _ in state.recent if s >= inc.since_ms and s not in known]
    return paused


def window_count(start: int, counts: MinuteCounts, verdict: Verdict | None) -> WindowCount:
    by_status = dict(zip(STATUSES, counts.statuses, strict=True))
    return WindowCount(
        id=minute_id(start),
        start=to_datetime(start),
        end=to_datetime(start + WINDOW_MS),
        counts=by_status,
        total=sum(by_status.values()),
        late=counts.late,
        score=None if verdict is None else round(verdict.score, 4),
        threshold=None if verdict is None else round(verdict.threshold, 4),
        quiet_sources=[] if verdict is None else [q.partition for q in verdict.sources],
    )
