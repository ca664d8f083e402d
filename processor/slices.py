"""Which terminals: the slices behind a rise, a slice failing alone, busy terminals gone
silent. Read from each minute's heavy-hitters summary (processor/sketch.py), so memory
stays bounded whatever the fleet.

- **Blame.** For every status group, each tracked terminal's *extra* is its events of
  the group beyond its own volume times the group's usual share; the three with the most
  extra are named with their part of the minute's extra ("71 % of the extra failures
  from 3 terminals: ..."). A terminal can only be named if the summary kept it: a
  terminal in trouble weighs more (windows.SLICE_WEIGHTS), so a small one failing
  entirely stays beside the busy ones.
- **A slice failing alone.** A terminal whose events of a group are at least MIN_EVENTS
  and MIN_SHARE of its own traffic, against its volume times the usual share: the
  Poisson tail of that count, summed with its previous SUSTAIN minutes (a terminal
  watched as a suspect), Bonferroni-corrected for the number of terminals looked at.
  The totals may barely move: three terminals among a million are judged on their own.
  Many small terminals failing together are each too small for that, so the count of
  terminals failing at p <= ALPHA is also judged against the binomial count the
  terminals looked at would give by chance: ten terminals of one event a minute each,
  all denied, stand out as a crowd though none does alone.
- **A slice gone silent.** The WATCH busiest terminals' usual share of a minute's
  traffic is learnt (exponentially weighted, normal minutes only); one whose events,
  even counting what the summary may miss, fall under a quarter of its share of this
  minute over a run of minutes is judged as a quiet source is (processor/sources.py),
  corrected for the number watched. A share, not a volume, follows the day's shape (a
  busy terminal is quiet at night too), and leaves a silence of everything to the
  volume rule. Terminals lighter than the summary's error bound cannot be told silent:
  a slice of small terminals going quiet shows in the totals only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import bdtrc, gammainc, gammaincc

from processor.features import FAULT_Z, RISE_MIN_RATIO, VOLUME_MAX_RATIO, _z
from processor.sketch import HeavyHitters, Hitter
from txmon.contracts import GROUPS, STATUS_INDEX

#: The groups a rise is blamed on terminals for: every group but the outage's.
BLAMED = {g: tuple(STATUS_INDEX[s] for s in members) for g, members in GROUPS.items()
          if g != "outage"}
#: Terminals named in a page.
TOP = 3
#: A terminal's trouble needs this many events of it over its minutes...
MIN_EVENTS = 3
#: ...and this share of its own transactions: a busy terminal with a few more denials
#: than usual is not failing.
MIN_SHARE = 0.5
#: Minutes a suspect's counts are summed over (this one and the ones before).
SUSTAIN = 3
#: Suspects remembered at most.
MAX_SUSPECTS = 64
#: A terminal counts in the crowd test when its own tail probability is at most this,
#: over at least CROWD_EVENTS events of the group: the summary keeps a terminal with
#: one reversal rather than one with three approvals, so single events are too
#: common among the terminals looked at to be counted.
ALPHA = 0.001
CROWD_EVENTS = 2
#: Busiest terminals whose share is watched, and the least events a minute they must be
#: expected to carry to tell silence from a lull.
WATCH = 48
WATCH_MIN_EXPECTED = 2.0
#: Normal minutes the watched shares remember (exponential weighting), and learn from
#: before any silence is judged (a share from a few minutes is one busy minute's).
SHARE_MEMORY = 30
#: A terminal silent this long is forgotten (re-learnt if it comes back): a shop that
#: closed is today's new normal after a working shift, as incidents' adaptation says.
RUN_MAX_MINUTES = 360


@dataclass(frozen=True)
class Slice:
    """A terminal named: its events of the group (or all, for silence), what its own
    volume made expected, and its evidence (z, corrected for the terminals looked at)."""

    terminal: str
    observed: int
    expected: float
    z: float


@dataclass(frozen=True)
class Blame:
    """The terminals with the most extra events of a group in this minute."""

    top: tuple[Slice, ...]
    #: Their extra events, and every tracked terminal's positive extra.
    extra: float
    spread: float

    def share(self, total_extra: float) -> float:
        """Their part of the minute's extra: of the group's total extra over its
        expectation when the totals rose, else of the tracked terminals' (a slice
        failing while the totals look normal). Tracked terminals' extras include every
        busy terminal's noise, so they are the weaker denominator."""
        if total_extra > 0:
            return min(1.0, self.extra / max(total_extra, self.extra))
        return self.extra / self.spread


@dataclass(frozen=True)
class Terminals:
    """A minute's terminals as the detector and the page see them."""

    failing: dict[str, tuple[Slice, ...]]
    silent: tuple[Slice, ...]
    blame: dict[str, Blame]

    def rules(self) -> dict[str, float]:
        """The detector's rule evidence (detector.RULES): the strongest slice of each."""
        out = {f"slice_{g}": max((s.z for s in self.failing.get(g, ())), default=0.0)
               for g in BLAMED}
        out["slice_silence"] = max((s.z for s in self.silent), default=0.0)
        return out


@dataclass
class SliceWatch:
    """What the merge stage remembers of terminals between minutes."""

    #: Suspect terminal -> group -> [[events of the group, expected], ...] of its last
    #: SUSTAIN minutes, newest last.
    suspects: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    #: Watched terminal -> its usual share of a minute's events.
    share: dict[str, float] = field(default_factory=dict)
    #: Watched terminal -> [observed, expected, minutes] over its current run of low
    #: minutes.
    runs: dict[str, list[float]] = field(default_factory=dict)
    learnt: int = 0

    def judge(self, hh: HeavyHitters, share: np.ndarray, total: int, learn: bool,
              ) -> Terminals:
        """This minute's terminals (`share`: usual share of each status now, `total`:
        the minute's events); learns from it when `learn`."""
        failing = self.failing(hh, share)
        return Terminals(failing, self.silent(hh, total, learn), blame(hh, share, failing))

    def failing(self, hh: HeavyHitters, share: np.ndarray) -> dict[str, tuple[Slice, ...]]:
        """Per group, the terminals failing on their own (strongest first)."""
        hitters = hh.top(len(hh))
        tested = max(len(hitters), 1)
        seen: dict[str, dict[str, list[list[float]]]] = {}
        out = {}
        for group, cols in BLAMED.items():
            p = float(share[list(cols)].sum())
            found, crowd = [], []
            for h in hitters:
                bad = sum(h.counts[c] for c in cols)
                volume = sum(h.counts)
                history = self.suspects.get(h.key, {}).get(group, [])
                now = [float(bad), p * volume]
                if not (_material(bad, volume, p) or history):
                    continue
                window = [*history[-(SUSTAIN - 1):], now]
                seen.setdefault(h.key, {})[group] = window
                o, e = sum(w[0] for w in window), sum(w[1] for w in window)
                if not _material(bad, volume, p):
                    continue
                tail = _tail(o, e)
                if o >= MIN_EVENTS:
                    found.append(Slice(h.key, bad, p * volume, _z(min(1.0, tail * tested))))
                if tail <= ALPHA and o >= CROWD_EVENTS:
                    crowd.append(Slice(h.key, bad, p * volume, 0.0))
            out[group] = _strongest(found, crowd, tested)
        self.suspects = dict(sorted(seen.items(), key=lambda kv: -max(
            w[-1][0] for w in kv[1].values()))[:MAX_SUSPECTS])
        return out

    def silent(self, hh: HeavyHitters, total: int, learn: bool) -> tuple[Slice, ...]:
        """Watched terminals low over their run of minutes, strongest first (`total`:
        the minute's events); learns the watched shares from a normal minute."""
        judged = self.learnt >= SHARE_MEMORY
        expected = {t: s * total for t, s in self.share.items()
                    if judged and s * total >= WATCH_MIN_EXPECTED}
        found = []
        for t, usual in expected.items():
            h = hh.get(t)
            seen, missing = (sum(h.counts), h.missing) if h is not None else (0, hh.bound)
            if seen + missing > VOLUME_MAX_RATIO * usual:
                self.runs.pop(t, None)
                continue
            run = self.runs.setdefault(t, [0.0, 0.0, 0.0])
            run[0] += seen + missing
            run[1] += usual
            run[2] += 1
            if run[2] > RUN_MAX_MINUTES:
                self.share.pop(t, None)
                continue
            p = float(gammaincc(run[0] + 1.0, run[1]))
            found.append(Slice(t, seen, usual, _z(min(1.0, p * len(expected)))))
        self.runs = {t: r for t, r in self.runs.items() if t in expected}
        if learn and not found and total > 0:
            self._learn(hh, total)
        return tuple(sorted(found, key=lambda s: -s.z))

    def _learn(self, hh: HeavyHitters, total: int) -> None:
        alpha = 1.0 / min(self.learnt + 1, SHARE_MEMORY)
        now = {h.key: sum(h.counts) / total for h in hh.top(WATCH)}
        keys = set(self.share) | set(now)
        updated = {t: (1 - alpha) * self.share.get(t, 0.0) + alpha * now.get(t, 0.0)
                   for t in keys}
        self.share = dict(sorted(updated.items(), key=lambda kv: -kv[1])[:WATCH])
        self.learnt += 1


def blame(hh: HeavyHitters, share: np.ndarray,
          failing: dict[str, tuple[Slice, ...]] | None = None) -> dict[str, Blame]:
    """Per group, the TOP terminals by extra events and their part of all the extra;
    when some fail on their own (`failing`, z >= FAULT_Z), only those: a single
    terminal in trouble is named alone, not beside two busy ones' noise."""
    hitters = hh.top(len(hh))
    out = {}
    for group, cols in BLAMED.items():
        p = float(share[list(cols)].sum())
        extra = [(h, _extra(h, cols, p)) for h in hitters]
        total = sum(x for _, x in extra if x > 0)
        sure = {s.terminal for s in (failing or {}).get(group, ()) if s.z >= FAULT_Z}
        top = sorted((hx for hx in extra if hx[1] > 0 and (not sure or hx[0].key in sure)),
                     key=lambda hx: -hx[1])[:TOP]
        if total <= 0 or not top:
            continue
        named = tuple(Slice(h.key, sum(h.counts[c] for c in cols), p * sum(h.counts), 0.0)
                      for h, _ in top)
        out[group] = Blame(named, sum(x for _, x in top), total)
    return out


def _extra(h: Hitter, cols: Sequence[int], p: float) -> float:
    return sum(h.counts[c] for c in cols) - p * sum(h.counts)


def _material(bad: int, volume: int, p: float) -> bool:
    return bad >= 1 and bad >= MIN_SHARE * volume and bad >= RISE_MIN_RATIO * p * volume


def _tail(observed: float, expected: float) -> float:
    """P(X >= observed) under Poisson(expected)."""
    return float(gammainc(observed, expected)) if expected > 0 else 0.0


def _strongest(found: list[Slice], crowd: list[Slice], tested: int) -> tuple[Slice, ...]:
    """The terminals failing alone, strongest first; or, when the crowd's count is the
    stronger evidence, the crowd, each with the crowd's z."""
    found.sort(key=lambda s: -s.z)
    best = found[0].z if found else 0.0
    z_crowd = _z(float(bdtrc(len(crowd) - 1, tested, ALPHA))) if crowd else 0.0
    if z_crowd > best:
        crowd.sort(key=lambda s: -(s.observed - s.expected))
        return tuple(Slice(s.terminal, s.observed, s.expected, z_crowd) for s in crowd)
    return tuple(found)
