"""`txmon evaluate`: how well detection works, on labelled simulated days and the
reference days.

Each scenario is a simulated day (producer.simulate.minute_counts: the very per-minute
counts `txmon produce` would stream for it) with incidents injected through the
simulator's own specs, so every incident has a label. The minutes go through the
worker's own code, `processor.minutes.Minutes` (merge, score, incidents) fed with the
partial windows the counting stage would send, with a model trained like `txmon train
--simulate-days` on clean days of other seeds. tests/test_evaluate_e2e.py runs a
scenario through the real broker and `txmon process` and checks both paths agree.

Scoring, per label: detected when an incident of the label's status group opens between
the label's detectable onset and its end plus GRACE_MINUTES; delay = closed windows
from the onset to the window that opened it (0 = the first window of the incident).
The detectable onset is the first minute at which the label's *expected* counts (from
the scenario's own rates, with and without the incident), over that minute or the
SUSTAIN_MINUTES ending with it, differ from normal by FAULT_Z (exact Poisson tail) and
by the detector's materiality ratio: a slow ramp or a rare status cannot be seen before
enough of it has happened, and the delay should not charge that to the detector. The table also
gives the delay from the labelled start. An incident that opens away from every label
of its group is a false incident.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from processor.detector import FAULT_Z, Detector
from processor.features import (
    OUTAGE_MAX_RATIO,
    RISE_MIN_RATIO,
    SUSTAIN_MINUTES,
    VOLUME_MAX_RATIO,
    VOLUME_RUN_MAX,
    z_drop,
    z_rise,
)
from processor.incidents import DEFAULT_POLICY, Policy
from txmon.contracts import (
    GROUP_OF,
    SCORE_THRESHOLD,
    STATUSES,
    Alert,
    IncidentLabel,
    WindowCount,
)
from txmon.contracts.incidents import fold_incidents
from txmon.contracts.minutes import DAY_MS, to_ms
from txmon.contracts.minutes import MINUTE_MS as WINDOW_MS

#: A detection this long after a label's end still counts for it (resolve + sustain).
GRACE_MINUTES = 5
DAY = datetime(2026, 3, 9, tzinfo=UTC)  # a Monday, a week after the training days
ALL = ",".join(STATUSES)


@dataclass(frozen=True)
class Case:
    """One simulated day: `incidents` / `outages` are `txmon produce` specs (offsets
    from midnight). `expect` is "incidents" (labelled, must be found), "quiet" (no
    incident at all: clean and volume-surge days; their specs are not incidents)."""

    name: str
    kind: str
    seed: int
    rate: float = 20.0
    incidents: tuple[str, ...] = ()
    outages: tuple[str, ...] = ()
    silences: tuple[str, ...] = ()
    #: Source partitions the day is spread over (evenly, as keys hash), and specs
    #: `P:DURATION@OFFSET` of partitions that send nothing meanwhile.
    partitions: int = 1
    quiet: tuple[str, ...] = ()
    #: A fleet of this many terminals (0: no terminal ids) and `--slice` specs.
    terminals: int = 0
    slices: tuple[str, ...] = ()
    hours: float = 24.0
    expect: str = "incidents"


SUITE: tuple[Case, ...] = (
    Case("clean-a", "clean", 101, expect="quiet"),
    Case("clean-b", "clean", 102, expect="quiet"),
    Case("clean-c", "clean", 103, expect="quiet"),
    Case("clean-low-volume", "clean", 104, rate=5.0, expect="quiet"),
    Case("clean-busy-10x", "clean", 105, rate=200.0, expect="quiet"),
    Case("surge-x3-2h", "surge", 106, incidents=(f"{ALL}:x3:2h@10h",), expect="quiet"),
    Case("surge-ramp-x5", "surge", 107, incidents=(f"{ALL}:x5:1h:ramp@15h",
                                                   f"{ALL}:x0.4:1h@20h"), expect="quiet"),
    Case("spikes-peak", "spike", 108, incidents=(
        "failed:x40:15m@9h", "denied:x3:20m@11h30m", "reversed:x8:15m@14h",
        "backend_reversed:x12:15m@17h")),
    Case("spikes-night", "night", 109, incidents=(
        "denied:x5:30m@22h30m", "reversed:x25:20m@5h45m", "backend_reversed:x40:20m@1h")),
    Case("ramps", "ramp", 110, incidents=(
        "denied:x6:30m:ramp@10h", "reversed:x15:30m:ramp@15h", "failed:x100:20m:ramp@19h")),
    Case("bursts", "burst", 111, incidents=(
        "backend_reversed:x30:3m:burst@11h", "denied:x5:2m:burst@16h30m",
        "failed:x300:3m:burst@13h", "reversed:x20:2m:burst@20h")),
    Case("outages", "outage", 112, outages=("10m@10h", "15m:0.2@16h", "10m@21h30m")),
    Case("busy-10x-incidents", "busy", 113, rate=200.0, incidents=(
        "denied:x1.8:20m@12h", "reversed:x4:15m@16h", "failed:x20:10m@8h"),
        outages=("10m:0.3@19h",)),
    # Episodes as real ones go: a third of their minutes look normal, counts swing up
    # to x10, several statuses at once, an outage inside one of them.
    Case("bursty", "bursty", 114, incidents=(
        "reversed,denied:x10:2h:bursty@14h", "failed,backend_reversed:x20:1h:bursty@9h",
        "denied:x6:90m:bursty@19h30m"), outages=("20m:0.3@14h40m",)),
    Case("bursty-edges", "bursty", 115, incidents=(
        "failed,denied:x10:1h:bursty@6h30m", "reversed,backend_reversed:x10:90m:bursty@21h")),
    # Traffic that stops or dwindles (no status count shows it), by day and by night,
    # one inside a denials episode; then lulls that are no outage (a quiet afternoon at
    # 40 %, a quieter night) and the end of a surge, back to the usual volume.
    Case("silence-day", "silence", 116, silences=("45m@11h", "1h:0.04@16h")),
    Case("silence-night", "night-silence", 117, silences=("30m@3h", "1h:0.04@1h")),
    Case("silence-in-denials", "silence", 118, incidents=("denied:x4:40m@10h",),
         silences=("30m@10h20m",)),
    Case("lull-day", "surge", 119, silences=("3h:0.4@13h",), expect="quiet"),
    Case("lull-night", "surge", 120, silences=("5h:0.4@0h30m",), expect="quiet"),
    Case("surge-end-x4", "surge", 121, incidents=(f"{ALL}:x4:2h@9h",), expect="quiet"),
    # One of three source partitions silent while the others flow (a third of the
    # traffic gone, not enough for the volume rule), by day and at dusk; and a clean day
    # over three partitions.
    Case("source-quiet", "source", 122, partitions=3, quiet=("1:40m@11h", "2:1h@21h")),
    Case("clean-3-partitions", "clean", 123, partitions=3, expect="quiet"),
    # A fleet of 1,000,000 terminals (the top 1 % carry half the volume): a few busy
    # ones failing or denied on their own, a crowd of small ones, the five busiest gone
    # silent; by day, at dusk and at night; and the same fleet on a clean day.
    Case("slices-day", "slice", 124, terminals=1_000_000, slices=(
        "ranks:8-10:failed:30m@11h", "ranks:3-5:denied:40m@15h", "top:5:silent:45m@17h30m")),
    Case("slices-crowd", "slice", 126, terminals=1_000_000, slices=(
        "ranks:100-199:failed:30m@11h", "ranks:30-49:denied:40m@15h")),
    Case("slices-dusk", "slice", 127, terminals=1_000_000, slices=(
        "ranks:3-5:reversed:40m@20h", "top:5:silent:45m@22h")),
    # Slices that move their totals by less than 10 %: one busy terminal all denied,
    # the three busiest silent.
    Case("slices-small", "slice", 129, terminals=1_000_000, slices=(
        "ranks:4-4:denied:40m@15h", "top:3:silent:40m@11h")),
    Case("slices-night", "slice", 128, terminals=1_000_000, slices=(
        "ranks:0-2:failed:40m@2h", "top:5:silent:60m@3h30m")),
    Case("clean-terminals", "clean", 125, terminals=1_000_000, expect="quiet"),
)
#: Kinds whose labels are night silences: paged within NIGHT_SILENCE_WINDOWS, not 3.
NIGHT = ("night-silence",)
#: At 20 tx/s peak the deepest night expects 2 to 3 transactions a minute: silence is
#: significant after about 10 φ / 2.5 = 4 to 5 minutes, confirmed the minute after.
NIGHT_SILENCE_WINDOWS = 10
#: By day, silence and dwindling traffic are paged within this many closed windows.
DAY_SILENCE_WINDOWS = 2
#: The reduced suite the tests run: one of each family, shortened around the action.
QUICK = ("clean-a", "surge-x3-2h", "spikes-peak", "outages", "bursty", "silence-day",
         "slices-day")

#: Visible incidents of the reference days (../shared/README.md): (start, end, group).
REFERENCE = {
    "transactions_1.csv": [("14:33", "18:36", "reversals"), ("14:35", "17:21", "denials"),
                           ("14:46", "18:24", "reversals")],
    "transactions_2.csv": [("16:14", "18:41", "failures"), ("16:23", "17:25", "denials"),
                           ("10:51", "10:55", "reversals"),
                           # No row at all for 59 minutes, after 6 to 23 transactions a
                           # minute (and 3.6 a minute in that hour of transactions_1).
                           ("00:39", "01:37", "outage")],
}


@dataclass
class Incident:
    incident_id: str
    group: str
    opened_ms: int
    resolved_ms: int | None
    statuses: list[str] = field(default_factory=list)
    #: When each group joined: the window of the first record that lists it.
    joined: dict[str, int] = field(default_factory=dict)
    records: int = 0

    def __post_init__(self):
        self.joined = self.joined or {self.group: self.opened_ms}

    def covers(self, groups: set[str], lo: int, hi: int) -> int | None:
        """When, in [lo, hi), this incident started covering one of `groups` (lo if it
        already did)."""
        times = [max(t, lo) for g, t in self.joined.items() if g in groups and t < hi
                 and (self.resolved_ms is None or self.resolved_ms >= lo)]
        return min(times, default=None)


@dataclass
class Run:
    """One scenario through the worker's code."""

    starts: np.ndarray
    counts: np.ndarray
    scores: np.ndarray
    threshold: float
    alerts: list[Alert]
    incidents: list[Incident]
    #: Per minute, the groups not normal (`incidents.abnormal_groups`).
    abnormal: list[tuple[str, ...]] = field(default_factory=list)
    policy: Policy = DEFAULT_POLICY
    #: The window records the worker would have written (what `txmon report` draws).
    windows: list[WindowCount] = field(default_factory=list)


def train_model(days: int, rate: float, seed: int = 0) -> Detector:
    """Exactly `txmon train --simulate-days DAYS --seed SEED` at this rate."""
    from evaluation.train import windows_from_simulation

    windows = windows_from_simulation(days, rate, seed)
    return Detector.fit(windows, seed=seed,
                        source=f"simulated: {days} clean day(s) at {rate:g} tx/s peak")


def scenario(case: Case, start: datetime = DAY):
    from producer.incidents import parse_incident, parse_outage, parse_silence, parse_slice
    from producer.simulate import Scenario
    from producer.terminals import TerminalPopulation

    incidents = (tuple(parse_incident(s) for s in case.incidents)
                 + tuple(parse_outage(s) for s in case.outages)
                 + tuple(parse_silence(s) for s in case.silences))
    fleet = TerminalPopulation(case.terminals) if case.terminals else None
    return Scenario(start=start, rate=case.rate, seed=case.seed,
                    duration=case.hours * 3600, incidents=incidents, terminals=fleet,
                    slices=tuple(parse_slice(s) for s in case.slices))


def windows_of(sc) -> list[tuple[int, list[int]]]:
    from producer.simulate import minute_counts

    frame = minute_counts(sc)
    starts = frame.index.as_unit("ms").asi8.tolist()
    return list(zip(starts, frame[list(STATUSES)].to_numpy().tolist(), strict=True))


def slices_of(sc) -> dict[int, list]:
    """Per minute (start ms), the terminals' summary the counting stage would send."""
    from processor.windows import SLICE_SENT, new_slices
    from producer.simulate import minute_terminal_counts
    from producer.terminals import terminal_id

    if sc.terminals is None:
        return {}
    tc = minute_terminal_counts(sc)
    out = {}
    cuts = np.flatnonzero(np.diff(tc.minute)) + 1
    for rows in np.split(np.arange(len(tc)), cuts):
        if not len(rows):
            continue
        ids = [terminal_id(int(t)) for t in np.repeat(tc.terminal[rows], tc.count[rows])]
        hh = new_slices()
        hh.update(ids, np.repeat(tc.status[rows], tc.count[rows]).tolist())
        out[int(tc.minute[rows[0]]) * 1000] = hh.shrunk(SLICE_SENT).to_wire()
    return out


def quiet_labels(case: Case, start: datetime = DAY) -> list[IncidentLabel]:
    """A label per `case.quiet` spec: partition P sends nothing for DURATION."""
    from producer.incidents import parse_silence

    out = []
    for spec in case.quiet:
        p, _, rest = spec.partition(":")
        span = parse_silence(rest)
        lo = start + timedelta(seconds=span.offset)
        out.append(IncidentLabel(id=f"source-{p}-{lo:%Y%m%dT%H%M%SZ}", kind="source",
                                 statuses=list(STATUSES), start=lo,
                                 end=lo + timedelta(seconds=span.duration), factor=0.0,
                                 spec=f"partition {spec}"))
    return out


def split(windows: list[tuple[int, list[int]]], case: Case, labels: list[IncidentLabel],
          ) -> list[list[tuple[int, list[int]]]]:
    """Each minute's counts spread over `case.partitions` as evenly hashed keys spread
    them (multinomial), the quiet partitions' emptied inside their labels' spans."""
    rng = np.random.default_rng(case.seed)
    n = case.partitions
    out: list[list[tuple[int, list[int]]]] = [[] for _ in range(n)]
    spans = [(int(lb.spec.split()[1].split(":")[0]), to_ms(lb.start), to_ms(lb.end))
             for lb in labels]
    for start, counts in windows:
        parts = np.array([rng.multinomial(c, [1 / n] * n) for c in counts]).T
        for p, lo, hi in spans:
            if lo <= start < hi:
                parts[p] = 0
        for p in range(n):
            out[p].append((start, parts[p].tolist()))
    return out


def run_windows(model_path: str | Path, windows: list[tuple[int, list[int]]],
                policy: Policy = DEFAULT_POLICY, chunk: int = 30,
                sources: list[list[tuple[int, list[int]]]] | None = None,
                slices: dict[int, list] | None = None) -> Run:
    """Feed minutes to `Minutes.apply` as one source partition's partial windows, or
    as `sources`' (per partition, the same minutes); `slices`: the terminals' summary
    of each minute (one partition)."""
    from processor.incidents import IncidentTracker
    from processor.minutes import Minutes, MinuteState
    from processor.windows import MinuteMerger

    sources = sources or [windows]
    minutes = Minutes(str(model_path), warmup_windows=60, policy=policy)
    state = MinuteState(merger=MinuteMerger(len(sources)), incidents=IncidentTracker())
    scores, alerts, starts, counts, abnormal, records = [], [], [], [], [], []
    for i, partial in enumerate(_partials(sources, chunk, slices or {})):
        for closed in minutes.apply(state, i, partial):
            w = closed.window
            starts.append(to_ms(w.start))
            counts.append([w.counts[s] for s in STATUSES])
            scores.append(w.score if w.score is not None else math.nan)
            alerts += closed.alerts
            abnormal.append(closed.abnormal)
            records.append(w)
    return Run(np.array(starts), np.array(counts), np.array(scores),
               SCORE_THRESHOLD, alerts, fold(alerts), abnormal, policy, records)


def _partials(sources: list[list[tuple[int, list[int]]]], chunk: int, slices: dict):
    from txmon.contracts import WindowPartial

    for i in range(0, len(sources[0]), chunk):
        for p, windows in enumerate(sources):
            part = windows[i:i + chunk]
            yield WindowPartial(partition=p, closed_until=part[-1][0] + WINDOW_MS,
                                windows={s: [*c, 0] for s, c in part},
                                slices={s: slices[s] for s, _ in part if s in slices})


def fold(alerts: list[Alert]) -> list[Incident]:
    """The contract's fold, in the milliseconds the scoring works in; `resolved_ms` is
    the start of the minute that resolved it."""
    return [
        Incident(i.incident_id, i.group, to_ms(i.start),
                 None if i.end is None else to_ms(i.end) - WINDOW_MS,
                 statuses=sorted(i.statuses),
                 joined={g: to_ms(t) for g, t in i.joined.items()}, records=i.records)
        for i in fold_incidents(alerts, keep_alerts=False)
    ]


def recovery_overruns(run: Run) -> list[tuple[Incident, int]]:
    """Resolved incidents whose `resolved` came later than the recovery window plus one
    minute after their last abnormal minute, with the minutes it took."""
    out = []
    for inc in run.incidents:
        if inc.resolved_ms is None:
            continue
        last = max((s for s, f in zip(run.starts.tolist(), run.abnormal, strict=True)
                    if inc.opened_ms <= s < inc.resolved_ms and set(f) & set(inc.joined)),
                   default=inc.opened_ms)
        late = (inc.resolved_ms - last) // WINDOW_MS
        if late > run.policy.recovery_window + 1:
            out.append((inc, late))
    return out


def onset_ms(sc, label: IncidentLabel, partitions: int = 1) -> int | None:
    """First minute at which the label's effect is detectable in expectation (see the
    module docstring); None when it never is. A quiet source is judged on its share."""
    from dataclasses import replace

    first = int((label.start - sc.start).total_seconds()) // 60 * 60
    last = int((label.end - sc.start).total_seconds())
    n = last - first + 60
    cols = [STATUSES.index(s) for s in label.statuses]
    normal = replace(sc, incidents=()).rates(first, n)[:, cols].sum(axis=1)
    if label.kind == "source":
        normal, with_inc = normal / partitions, np.zeros_like(normal)
    elif label.kind == "slice":
        normal, with_inc = _slice_rates(sc, label, first, n)
    else:
        with_inc = sc.rates(first, n)[:, cols].sum(axis=1)
    minutes = len(with_inc) // 60
    a = with_inc[: minutes * 60].reshape(minutes, 60).sum(axis=1)
    b = normal[: minutes * 60].reshape(minutes, 60).sum(axis=1)
    silent = label.kind in ("silence", "source") or (label.kind == "slice"
                                                      and len(label.statuses) > 1)
    runs = range(1, (VOLUME_RUN_MAX if silent else SUSTAIN_MINUTES) + 1)
    for k in range(minutes):
        for w in (w for w in runs if w <= k + 1):
            o, e = float(a[k + 1 - w:k + 1].sum()), float(b[k + 1 - w:k + 1].sum())
            if silent:
                ok = a[k] <= VOLUME_MAX_RATIO * b[k] and z_drop(o, e, 1.0) >= FAULT_Z
            elif label.kind == "outage":
                ok = a[k] <= OUTAGE_MAX_RATIO * b[k] and z_drop(o, e, 1.0) >= FAULT_Z
            else:
                ok = a[k] >= RISE_MIN_RATIO * b[k] and z_rise(o, e, 1.0) >= FAULT_Z
            if ok:
                return to_ms(sc.start) + (first + 60 * k) * 1000
    return None


def _slice_rates(sc, label: IncidentLabel, first: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(normal, with the slice) per second of what the slice's detector compares: its
    terminals' events of the slice's status against their usual share of them, or, for
    a silent slice, their events against none."""
    from dataclasses import replace

    from producer.shape import STATUS_MIX
    from producer.terminals import rank_of

    ranks = [rank_of(t) for t in label.terminals]
    volume = replace(sc, incidents=()).rates(first, n).sum(axis=1) * float(
        sc.terminals.weights()[ranks].sum())
    if len(label.statuses) > 1:
        return volume, np.zeros_like(volume)
    return volume * float(STATUS_MIX[STATUSES.index(label.statuses[0])]), volume


@dataclass
class LabelResult:
    label: IncidentLabel
    onset_ms: int | None
    detected_ms: int | None
    #: For a slice: the terminals its incident's records named for its groups while
    #: it lasted (None for other labels), and how much it moved its status's total
    #: (all traffic for a silent slice) over its span, against the same day without it.
    named: list[str] | None = None
    moved: float | None = None

    @property
    def delay(self) -> int | None:
        if self.detected_ms is None or self.onset_ms is None:
            return None
        return max(0, (self.detected_ms - self.onset_ms) // WINDOW_MS)

    @property
    def label_lo(self) -> int:
        lo = self.onset_ms if self.onset_ms is not None else to_ms(self.label.start)
        return lo // WINDOW_MS * WINDOW_MS

    @property
    def delay_from_start(self) -> int | None:
        if self.detected_ms is None:
            return None
        start = to_ms(self.label.start) // WINDOW_MS * WINDOW_MS
        return max(0, (self.detected_ms - start) // WINDOW_MS)


@dataclass
class Episode:
    """Labels (or visible periods) whose spans overlap: one thing for the operator, so
    one `open` and few records."""

    lo: int
    hi: int
    opens: int
    records: int


@dataclass
class CaseResult:
    case: Case
    run: Run
    labels: list[LabelResult]
    false_incidents: list[Incident]
    seconds: float
    episodes: list[Episode] = field(default_factory=list)


def groups_of(label: IncidentLabel) -> set[str]:
    """The incident groups that answer a label: a silence is an outage, whatever its
    statuses."""
    if label.kind in ("silence", "source") or (label.kind == "slice"
                                                and len(label.statuses) > 1):
        return {"outage"}
    return {GROUP_OF[s] for s in label.statuses}


def episodes(spans: list[tuple[int, int]], run: Run) -> list[Episode]:
    """Merge overlapping [lo, hi) spans; count the incidents each one opened (or found
    open) and their alert records."""
    merged: list[list[int]] = []
    for lo, hi in sorted(spans):
        if merged and lo < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = []
    for lo, hi in merged:
        incs = [i for i in run.incidents if lo <= i.opened_ms < hi or (
            i.opened_ms < lo and (i.resolved_ms is None or i.resolved_ms >= lo))]
        out.append(Episode(lo, hi, len(incs), sum(i.records for i in incs)))
    return out


def score_case(case: Case, sc, run: Run, quiet: list[IncidentLabel] = (),
               ) -> tuple[list[LabelResult], list[Incident]]:
    labels = [] if case.expect == "quiet" else [*sc.labels(), *quiet]
    matched: set[str] = set()
    results = []
    for label in labels:
        groups = groups_of(label)
        onset = onset_ms(sc, label, case.partitions)
        lo = onset if onset is not None else to_ms(label.start)
        lo = lo // WINDOW_MS * WINDOW_MS
        hi = to_ms(label.end) + GRACE_MINUTES * WINDOW_MS
        hits = {i.incident_id: t for i in run.incidents
                if (t := i.covers(groups, lo, hi)) is not None}
        matched |= set(hits)
        named = _named(run, hits, groups, lo, hi) if label.kind == "slice" else None
        moved = _moved(sc, label) if label.kind == "slice" else None
        results.append(LabelResult(label, onset, min(hits.values(), default=None), named,
                                   moved))
    spans = [(to_ms(lb.start), to_ms(lb.end) + GRACE_MINUTES * WINDOW_MS,
              groups_of(lb)) for lb in labels]
    false = [i for i in run.incidents if i.incident_id not in matched
             and not any(lo <= i.opened_ms < hi and g & set(i.joined) for lo, hi, g in spans)]
    return results, false


def _moved(sc, label: IncidentLabel) -> float:
    """The slice's effect on its status's total (all traffic when silent) over its span."""
    from dataclasses import replace

    cols = [STATUSES.index(s) for s in label.statuses]
    lo, hi = to_ms(label.start), to_ms(label.end)
    with_it, without = (sum(sum(c[i] for i in cols) for s, c in windows_of(x) if lo <= s < hi)
                        for x in (sc, replace(sc, slices=())))
    return with_it / max(without, 1) - 1.0


def _named(run: Run, hits: dict[str, int], groups: set[str], lo: int, hi: int) -> list[str]:
    """The terminals named for `groups` by the first record of the label's incident
    that names any, inside [lo, hi)."""
    for a in sorted(run.alerts, key=lambda a: a.window_start):
        if a.incident_id in hits and lo <= to_ms(a.window_start) < hi:
            named = sorted({t for g in groups for t in a.terminals.get(g, ())})
            if named:
                return named
    return []


def evaluate_case(case: Case, model_path: Path, start: datetime = DAY) -> CaseResult:
    t = time.perf_counter()
    sc = scenario(case, start)
    windows = windows_of(sc)
    quiet = quiet_labels(case, start)
    run = run_windows(model_path, windows, sources=split(windows, case, quiet)
                      if case.partitions > 1 else None, slices=slices_of(sc))
    labels, false = score_case(case, sc, run, quiet)
    spans = [(lr.label_lo, to_ms(lr.label.end) + GRACE_MINUTES * WINDOW_MS) for lr in labels]
    return CaseResult(case, run, labels, false, time.perf_counter() - t,
                      episodes(spans, run))


# -- reference days ---------------------------------------------------------------------

@dataclass
class ReferenceResult:
    name: str
    run: Run
    periods: list[tuple[str, str, str, bool]]
    elsewhere: list[Incident]
    episodes: list[Episode] = field(default_factory=list)
    #: Per episode: closed windows from its visible start to the first incident covering it.
    open_delays: list[int | None] = field(default_factory=list)
    #: Per episode, the most `open_delays` may be: 1, or DAY_SILENCE_WINDOWS for a
    #: silence (an outage always confirms on two windows).
    allowed: list[int] = field(default_factory=list)

    @property
    def opens(self) -> int:
        return len(self.run.incidents)


def evaluate_reference(model_path: Path, data_dir: Path) -> list[ReferenceResult]:
    from evaluation.train import windows_from_files

    out = []
    for name, periods in REFERENCE.items():
        path = data_dir / name
        if not path.exists():
            continue
        windows = windows_from_files([str(path)])
        run = run_windows(model_path, windows)
        day = windows[0][0] // DAY_MS * DAY_MS
        spans = [(day + _hm(a), day + _hm(b) + WINDOW_MS, group) for a, b, group in periods]
        found = [(a, b, group, any(i.covers({group}, lo, hi) is not None
                                   for i in run.incidents))
                 for (a, b, group), (lo, hi, _) in zip(periods, spans, strict=True)]
        grace = GRACE_MINUTES * WINDOW_MS
        elsewhere = [i for i in run.incidents
                     if not any(lo <= i.opened_ms < hi + grace for lo, hi, _ in spans)]
        eps = episodes([(lo, hi + grace) for lo, hi, _ in spans], run)
        delays = []
        for ep in eps:
            first = min((i.opened_ms for i in run.incidents if i.resolved_ms is None
                         or i.resolved_ms >= ep.lo), default=None)
            delays.append(None if first is None or first >= ep.hi
                          else max(0, (first - ep.lo) // WINDOW_MS))
        allowed = [DAY_SILENCE_WINDOWS if any(lo == ep.lo and g == "outage"
                                              for lo, _, g in spans) else 1 for ep in eps]
        out.append(ReferenceResult(name, run, found, elsewhere, eps, delays, allowed))
    return out


def _hm(text: str) -> int:
    h, m = text.split(":")
    return (int(h) * 60 + int(m)) * WINDOW_MS


# -- reporting --------------------------------------------------------------------------

def summary(results: list[CaseResult]) -> dict:
    labels = [lr for r in results for lr in r.labels]
    detectable = [lr for lr in labels if lr.onset_ms is not None]
    found = [lr for lr in detectable if lr.detected_ms is not None]
    night = {id(lr) for r in results if r.case.kind in NIGHT for lr in r.labels}
    slices = [lr for lr in detectable if lr.label.kind == "slice"]
    delays = [lr.delay for lr in found if id(lr) not in night and lr.label.kind != "slice"]
    silences = [(lr.delay, id(lr) in night) for lr in detectable
                if lr.label.kind in ("silence", "source")]
    clean = [r for r in results if r.case.kind == "clean"]
    surge = [r for r in results if r.case.kind == "surge"]
    outages = [lr for lr in detectable if lr.label.kind in ("outage", "silence", "source")]
    days = sum(r.case.hours for r in results) / 24
    eps = [e for r in results for e in r.episodes]
    return {
        "labels": len(labels),
        "undetectable": len(labels) - len(detectable),
        "recall": len(found) / len(detectable) if detectable else math.nan,
        "delay_median": statistics.median(delays) if delays else math.nan,
        "delay_max": max(delays) if delays else math.nan,
        "false_per_clean_day": (sum(len(r.false_incidents) for r in clean)
                                / max(sum(r.case.hours for r in clean) / 24, 1e-9)),
        "false_max_clean_day": max((len(r.false_incidents) for r in clean), default=0),
        "false_on_surge_days": sum(len(r.false_incidents) for r in surge),
        "false_total": sum(len(r.false_incidents) for r in results),
        "days": days,
        "outages_caught": f"{sum(lr.detected_ms is not None for lr in outages)}/{len(outages)}",
        "episodes": len(eps),
        "opens_per_episode_max": max((e.opens for e in eps), default=0),
        "records_per_episode_mean": (statistics.mean(e.records for e in eps) if eps
                                     else math.nan),
        "recovery_overruns": sum(len(recovery_overruns(r.run)) for r in results),
        "slices": len(slices),
        "slices_found": sum(lr.detected_ms is not None for lr in slices),
        "slices_named": sum(bool(lr.named) and set(lr.named) <= set(lr.label.terminals)
                            for lr in slices),
        "slice_delay_max": max((lr.delay for lr in slices if lr.delay is not None),
                               default=None),
        "silence_delay_day": max((d for d, n in silences if not n and d is not None),
                                 default=None) if all(d is not None for d, _ in silences)
        else math.inf,
        "silence_delay_night": max((d for d, n in silences if n and d is not None),
                                   default=None) if all(d is not None for d, _ in silences)
        else math.inf,
    }


def acceptance(s: dict, refs: list[ReferenceResult]) -> list[tuple[str, bool]]:
    checks = [
        ("recall 1.0", s["recall"] == 1.0),
        ("median delay <= 1 window", s["delay_median"] <= 1),
        ("no delay over 3 windows", s["delay_max"] <= 3),
        ("<= 1 false incident per clean day", s["false_max_clean_day"] <= 1),
        ("no incident on volume-surge days", s["false_on_surge_days"] == 0),
        ("every outage caught", s["outages_caught"].split("/")[0]
         == s["outages_caught"].split("/")[1]),
    ]
    day, night = s["silence_delay_day"], s["silence_delay_night"]
    checks += [
        (f"silence and dwindling by day paged within {DAY_SILENCE_WINDOWS} windows",
         day is None or day <= DAY_SILENCE_WINDOWS),
        (f"silence at night paged within {NIGHT_SILENCE_WINDOWS} windows",
         night is None or night <= NIGHT_SILENCE_WINDOWS),
        ("every slice found, its named terminals all faulty ones",
         s["slices_found"] == s["slices"] == s["slices_named"]),
        ("<= 1 open per labelled episode", s["opens_per_episode_max"] <= 1),
        ("resolved within the recovery window + 1 minute of the last anomalous minute",
         s["recovery_overruns"] == 0 and not any(recovery_overruns(r.run) for r in refs)),
    ]
    for r in refs:
        checks += [
            (f"{r.name}: an incident in each visible period", all(hit for *_, hit in r.periods)),
            (f"{r.name}: one open per visible episode, within 1 closed window of its start "
             f"({DAY_SILENCE_WINDOWS} for a silence)",
             all(e.opens == 1 for e in r.episodes)
             and all(d is not None and d <= a
                     for d, a in zip(r.open_delays, r.allowed, strict=True))),
            (f"{r.name}: <= 1 incident elsewhere", len(r.elsewhere) <= 1),
        ]
    return checks


def _clock(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M")


def table(results: list[CaseResult], refs: list[ReferenceResult], model: Detector) -> str:
    s = summary(results)
    lines = [f"Model {model.version}: {model.meta['source']}, threshold "
             f"{SCORE_THRESHOLD:.4f} (false-alarm rate {model.meta['false_alarm_rate']:g})", "",
             *_label_rows(results), "", *_case_rows(results), "", *_metric_rows(s)]
    if refs:
        lines += ["", *_reference_rows(refs)]
    lines += ["", "| acceptance | |", "|---|---|"]
    lines += [f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in acceptance(s, refs)]
    return "\n".join(lines)


def _label_rows(results: list[CaseResult]) -> list[str]:
    lines = ["| scenario | label | onset | opened | delay (from onset / start) |",
             "|---|---|---|---|---|"]
    for r in results:
        for lr in r.labels:
            lb = lr.label
            d = "missed" if lr.detected_ms is None else f"{lr.delay} / {lr.delay_from_start}"
            if lr.onset_ms is None:
                d = "never detectable in expectation"
            spec = lb.spec or f"{'+'.join(lb.statuses)} x{lb.factor:g}"
            if lr.moved is not None:
                d += f"; totals {lr.moved:+.1%}".replace("%", " %")
            if lr.named is not None and lr.detected_ms is not None:
                faulty = len(set(lr.named) & set(lb.terminals))
                d += f"; named {', '.join(lr.named) or 'none'} ({faulty} faulty)"
            lines.append(f"| {r.case.name} | {lb.kind} {spec} | {_clock(lr.onset_ms)} | "
                         f"{_clock(lr.detected_ms)} | {d} |")
    return lines


def _case_rows(results: list[CaseResult]) -> list[str]:
    lines = ["| scenario | kind | rate tx/s | labels | found | episodes | opens per "
             "episode | records per episode | false incidents | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        found = sum(lr.detected_ms is not None for lr in r.labels)
        false = ", ".join(f"{i.group}@{_clock(i.opened_ms)}" for i in r.false_incidents) or "0"
        opens = ", ".join(str(e.opens) for e in r.episodes) or "-"
        records = ", ".join(str(e.records) for e in r.episodes) or "-"
        lines.append(f"| {r.case.name} | {r.case.kind} | {r.case.rate:g} | {len(r.labels)} | "
                     f"{found} | {len(r.episodes)} | {opens} | {records} | {false} | "
                     f"{r.seconds:.1f} |")
    return lines


def _metric_rows(s: dict) -> list[str]:
    return ["| metric | value |", "|---|---|",
            f"| incident recall | {s['recall']:.3f} ({s['labels']} labels, "
            f"{s['undetectable']} never detectable) |",
            f"| detection delay, closed windows (median / max; night silences apart) | "
            f"{s['delay_median']:g} / {s['delay_max']:g} |",
            f"| silence and dwindling paged after, closed windows (day / night, worst) | "
            f"{_num(s['silence_delay_day'])} / {_num(s['silence_delay_night'])} |",
            f"| slices found / named among the top 3 / detectable (worst delay) | "
            f"{s['slices_found']} / {s['slices_named']} / {s['slices']} "
            f"({_num(s['slice_delay_max'])}) |",
            f"| false incidents per clean day (mean / worst day) | "
            f"{s['false_per_clean_day']:.2f} / {s['false_max_clean_day']} |",
            f"| false incidents on volume-surge days | {s['false_on_surge_days']} |",
            f"| false incidents, all {s['days']:g} days | {s['false_total']} |",
            f"| outages caught | {s['outages_caught']} |",
            f"| opens per labelled episode (worst, {s['episodes']} episodes) | "
            f"{s['opens_per_episode_max']} |",
            f"| alert records per labelled episode (mean) | "
            f"{s['records_per_episode_mean']:.1f} |",
            f"| incidents resolved later than the recovery window + 1 minute | "
            f"{s['recovery_overruns']} |"]


def _num(x) -> str:
    return "-" if x is None else f"{x:g}"


def _reference_rows(refs: list[ReferenceResult]) -> list[str]:
    lines = ["| reference day | visible period | group | incident inside |", "|---|---|---|---|"]
    for r in refs:
        for a, b, g, hit in r.periods:
            lines.append(f"| {r.name} | {a}-{b} | {g} | {'yes' if hit else 'NO'} |")
        other = ", ".join(f"{i.group}@{_clock(i.opened_ms)}" for i in r.elsewhere) or "none"
        lines.append(f"| {r.name} | elsewhere | | {len(r.elsewhere)}: {other} |")
    lines += ["", "| reference day | episode | opens | alert records | opened after "
              "(windows) | incidents (open - resolved, groups) |", "|---|---|---|---|---|---|"]
    for r in refs:
        for e, d in zip(r.episodes, r.open_delays, strict=True):
            lines.append(f"| {r.name} | {_clock(e.lo)}-{_clock(e.hi)} | {e.opens} | {e.records} | "
                         f"{'-' if d is None else d} | |")
        incs = "; ".join(f"{_clock(i.opened_ms)}-{_clock(i.resolved_ms)} {'+'.join(i.joined)}"
                         for i in r.run.incidents)
        lines.append(f"| {r.name} | whole day | {r.opens} | {len(r.run.alerts)} | | "
                     f"{incs} |")
    return lines


def plot(run: Run, title: str, out: Path, labels: list[IncidentLabel] = (),
         periods: list[tuple[int, int]] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    t = np.array(run.starts, dtype="datetime64[ms]")
    fig, axes = plt.subplots(3, 1, figsize=(12, 7.5), sharex=True,
                             gridspec_kw={"height_ratios": [2, 2, 1.3]})
    ax = axes[0]
    ax.plot(t, run.counts[:, STATUSES.index("approved")], lw=0.8, color="tab:green",
            label="approved")
    ax.plot(t, run.counts.sum(axis=1), lw=0.6, color="grey", alpha=0.7, label="total")
    ax.set_ylabel("per minute")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    for s, color in zip(("denied", "failed", "reversed", "backend_reversed"),
                        ("tab:orange", "tab:red", "tab:purple", "tab:brown"), strict=True):
        ax.plot(t, run.counts[:, STATUSES.index(s)], lw=0.8, color=color, label=s)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel("per minute")
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    ax = axes[2]
    ax.plot(t, run.scores, lw=0.7, color="tab:blue", label="IsolationForest score")
    ax.axhline(run.threshold, color="black", ls="--", lw=0.8, label="threshold")
    ax.set_ylabel("score")
    ax.legend(loc="upper left", fontsize=8)
    end = int(run.starts[-1]) + WINDOW_MS
    for lb in labels:
        for a in axes:
            a.axvspan(np.datetime64(to_ms(lb.start), "ms"), np.datetime64(to_ms(lb.end), "ms"),
                      color="gold", alpha=0.35, lw=0)
    for lo, hi in periods:
        for a in axes:
            a.axvspan(np.datetime64(lo, "ms"), np.datetime64(hi, "ms"), color="gold",
                      alpha=0.35, lw=0)
    for inc in run.incidents:
        hi = inc.resolved_ms if inc.resolved_ms is not None else end
        for a in axes[:2]:
            a.axvspan(np.datetime64(inc.opened_ms, "ms"), np.datetime64(hi, "ms"),
                      color="red", alpha=0.18, lw=0)
        axes[1].annotate("+".join(inc.joined), (np.datetime64(inc.opened_ms, "ms"), 1.0),
                         xycoords=("data", "axes fraction"), fontsize=7, color="darkred",
                         va="top", rotation=90)
    axes[0].set_title(f"{title}  (gold: labelled / visible incidents, red: detected)",
                      fontsize=10)
    axes[2].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def write_report(path: Path, text: str, command: str) -> None:
    """Replace the block between the evaluate markers of a Markdown file."""
    begin, end = "<!-- evaluate:begin -->", "<!-- evaluate:end -->"
    block = f"{begin}\nProduced by `{command}`:\n\n{text}\n{end}"
    old = path.read_text() if path.exists() else f"# Detection\n\n{begin}\n{end}\n"
    if begin not in old:
        old += f"\n{begin}\n{end}\n"
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S)
    path.write_text(new)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from txmon.errors import UserError
    from txmon.settings import shared_data_dir

    cases = [c for c in SUITE if not args.quick or c.name in QUICK]
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in SUITE if c.name in wanted]
        if not cases:
            raise UserError(f"no scenario named {args.only}; one of "
                            + ", ".join(c.name for c in SUITE))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(args.model) if args.model else Path(tmp) / "model.joblib"
        if not args.model:
            print(f"training on {args.train_days} simulated clean day(s) at "
                  f"{args.train_rate:g} tx/s peak ...", flush=True)
            detector = train_model(args.train_days, args.train_rate, args.seed)
            detector.save(model_path)
        else:
            detector = Detector.load(model_path)
        results = []
        for case in tqdm(cases, desc="scenarios", unit="day", disable=args.no_progress):
            results.append(evaluate_case(case, model_path))
        refs = [] if args.no_reference else evaluate_reference(
            model_path, Path(args.data_dir) if args.data_dir else shared_data_dir())
    text = table(results, refs, detector)
    print(text)
    if args.out:
        out = Path(args.out)
        for r in results:
            sc = scenario(r.case)
            c = r.case
            specs = ", ".join([*c.incidents, *c.outages, *c.silences, *c.slices,
                               *(f"partition {q}" for q in c.quiet)]) or "clean"
            plot(r.run, f"{c.name}: {specs}", out / f"{c.name}.png",
                 labels=[*sc.labels(), *quiet_labels(c)] if c.expect != "quiet" else [])
        for ref in refs:
            day = int(ref.run.starts[0]) // DAY_MS * DAY_MS
            spans = [(day + _hm(a), day + _hm(b) + WINDOW_MS) for a, b, _ in REFERENCE[ref.name]]
            plot(ref.run, ref.name, out / f"{Path(ref.name).stem}.png", periods=spans)
        print(f"figures in {out}/")
    if args.report:
        write_report(Path(args.report), text, args.command_line)
        print(f"results written to {args.report}")
    print(f"evaluated {len(results)} scenario(s) in {time.perf_counter() - t0:.0f} s")
    failed = [name for name, ok in acceptance(summary(results), refs) if not ok]
    if failed:
        print("acceptance not met: " + "; ".join(failed))
    return 1 if failed and args.strict else 0
