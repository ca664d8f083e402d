"""Scores a closed minute with an IsolationForest and says what is wrong with it.

The forests see the gated one-sided deviations of `features` (never raw counts), so
"normal" is a small region near zero and anything beyond it isolates quickly. Each
threshold is not a contamination guess: it is the score quantile of the training
minutes, scored exactly as the worker scores them, for a target false-alarm rate, so it
means "this rarely happened in history". A group is at fault when its forest scores
the minute at or above its threshold *and* its evidence is significant and material
(FAULT_Z): the forest says how unusual, the evidence names what is wrong.

Silence is judged by rule (RULES), not by a forest: all traffic far below what today's
level expects (features.VOLUME_MAX_RATIO) with z >= FAULT_Z over the run of such
minutes. A forest learns what normal evidence looks like; an absence has no evidence
of its own to isolate (the approvals forest saw a silent minute as an approvals-share
of zero, perfectly usual, and scored it 0.95 of its threshold while nothing arrived).
A rule's score is its z over FAULT_Z, capped at RULE_SCORE_MAX so that an hour of
silence does not flatten the score chart; 1.0 still means "pages from here".

Scoring one minute through scikit-learn costs milliseconds of input validation per
call; `FlatForest` walks the same fitted trees with numpy instead (same splits, same
leaf depths, same formula: tests check it against `score_samples`), so the worker and
`txmon evaluate` score a day in seconds and always identically. It reads only the
fitted model's public attributes (`estimators_`, `estimators_features_`, `max_samples_`,
each tree's `tree_` arrays) and the published formula, so a scikit-learn upgrade cannot
break it silently through a private helper; the test against `score_samples` would catch
a change of convention.

A saved model holds those arrays, not the scikit-learn objects, so a worker loads it
without importing scikit-learn (with scipy.stats and pandas, most of a worker's start);
only training (`Detector.fit`) imports it. Files saved with the forests themselves still
load: unpickling imports scikit-learn for them.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import numpy as np

from processor.features import (
    FAULT_Z,
    FEATURES,
    LEVEL_MINUTES,
    RISING,
    Baseline,
    evidence,
    training_dispersion,
)
from processor.slices import Terminals
from processor.sources import Quiet
from txmon.contracts import GROUPS, SCORE_THRESHOLD, MinuteCounts

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

DEFAULT_FALSE_ALARM_RATE = 0.002
N_ESTIMATORS = 100


@dataclass(frozen=True)
class Verdict:
    score: float
    threshold: float
    anomalous: bool
    groups: tuple[str, ...]
    statuses: tuple[str, ...]
    expected: dict[str, float]
    #: Evidence per status (and approved_share / approved_count), one-sided z.
    z: dict[str, float]
    #: Evidence still standing from the recent minutes (`features.Evidence.held`);
    #: None: as `z`.
    held: dict[str, float] | None = None
    #: The evidence at fault: statuses, and rules (RULES) such as "volume".
    causes: tuple[str, ...] = ()
    #: All traffic expected in this minute (0 before the stream has a level).
    expected_total: float = 0.0
    #: Source partitions at fault (z >= FAULT_Z), the strongest first.
    sources: tuple[Quiet, ...] = ()
    #: The minute's terminals (processor/slices.py), when its events carried them.
    terminals: Terminals | None = None


#: Evidence judged by rule, and the group it belongs to: `volume` is all traffic,
#: `source` one transactions partition against the others (processor/sources.py),
#: `slice_*` terminals failing alone or gone silent (processor/slices.py).
RULES: dict[str, str] = {"volume": "outage", "source": "outage",
                         "slice_failures": "failures", "slice_denials": "denials",
                         "slice_reversals": "reversals", "slice_silence": "outage"}
RULE_SCORE_MAX = 2.0
#: Each group's evidence families: its statuses, then its rules.
EVIDENCE: dict[str, tuple[str, ...]] = {
    g: (*members, *(r for r, rg in RULES.items() if rg == g)) for g, members in GROUPS.items()}


def group_z(z: dict[str, float]) -> dict[str, float]:
    """Each group's evidence: its strongest status or rule."""
    return {g: max(z.get(s, 0.0) for s in names) for g, names in EVIDENCE.items()}


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu, Ting and Zhou (2008): the mean path length of an unsuccessful search
    in a binary search tree of n keys, 2 H(n-1) - 2 (n-1) / n with H(i) ~ ln(i) + Euler's
    constant; c(2) = 1, c(n <= 1) = 0. The expression is scikit-learn's, term for term,
    so that the scores match `score_samples` to the last bit."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def node_depths(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Each node's depth (the root is 0) in every tree at once, level by level: `left`
    and `right` are (trees, nodes) child indices, -1 for none. A tree of max_samples_ =
    256 has at most 9 levels, so this is a few numpy operations for the whole forest."""
    depth = np.zeros(left.shape, np.int64)
    trees, nodes = np.arange(len(left)), np.zeros(len(left), np.int64)
    level = 0
    while nodes.size:
        level += 1
        trees = np.concatenate([trees, trees])
        nodes = np.concatenate([left[trees[: len(nodes)], nodes],
                                right[trees[: len(nodes)], nodes]])
        keep = nodes >= 0
        trees, nodes = trees[keep], nodes[keep]
        depth[trees, nodes] = level
    return depth


class FlatForest:
    """A fitted IsolationForest as padded arrays, scored with numpy.

    A point's path length in one tree is the depth of the leaf it falls in plus
    c(samples in that leaf) (the subtree the tree stopped growing); its score is
    2 ** -(mean path length / c(max_samples_))."""

    def __init__(self, model: IsolationForest):
        trees = [e.tree_ for e in model.estimators_]
        width = max(t.node_count for t in trees)
        n = len(trees)
        self.feature = np.zeros((n, width), np.int64)
        self.threshold = np.zeros((n, width), np.float64)
        self.left = np.zeros((n, width), np.int64)
        self.right = np.zeros((n, width), np.int64)
        children_left = np.full((n, width), -1, np.int64)
        children_right = np.full((n, width), -1, np.int64)
        samples = np.zeros((n, width), np.int64)
        for k, (tree, feats) in enumerate(zip(trees, model.estimators_features_, strict=True)):
            c = tree.node_count
            children_left[k, :c], children_right[k, :c] = tree.children_left, tree.children_right
            samples[k, :c] = tree.n_node_samples
            leaf = tree.children_left == -1
            self.feature[k, :c] = np.where(leaf, 0, np.asarray(feats)[np.maximum(
                tree.feature[:c], 0)])
            self.threshold[k, :c] = tree.threshold[:c]
            idx = np.arange(c)
            self.left[k, :c] = np.where(leaf, idx, tree.children_left)
            self.right[k, :c] = np.where(leaf, idx, tree.children_right)
        # A leaf's path length, depth + c(its samples), written (depth + 1) + c - 1:
        # scikit-learn counts the root as depth 1 and subtracts it, and the same
        # operations in the same order give the same bits. (Padding: (0 + 1) + 0 - 1.)
        self.value = (node_depths(children_left, children_right) + 1.0
                      + average_path_length(samples) - 1.0)
        self.depth = int(max(t.max_depth for t in trees)) + 1
        self.denominator = n * float(average_path_length(np.array([model.max_samples_]))[0])
        self.rows = np.arange(n)[:, None]

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score (higher = more anomalous), = -IsolationForest.score_samples."""
        x = np.asarray(x, dtype=np.float32).astype(np.float64)  # sklearn splits on float32
        node = np.zeros((self.feature.shape[0], len(x)), np.int64)
        cols = np.arange(len(x))[None, :]
        for _ in range(self.depth):
            f = self.feature[self.rows, node]
            go_left = x[cols, f] <= self.threshold[self.rows, node]
            node = np.where(go_left, self.left[self.rows, node], self.right[self.rows, node])
        depths = self.value[self.rows, node].sum(axis=0)
        return 2.0 ** (-depths / self.denominator)


#: Each monitored status has a forest that sees that status's features only.
GROUP_FEATURES: dict[str, list[int]] = {
    s: [i for i, f in enumerate(FEATURES) if f.rsplit("_", 1)[0].removesuffix("_share")
        .removesuffix("_count") == s]
    for s in (*RISING, "approved")
}


@dataclass(frozen=True)
class Signals:
    """What the merge stage judged of a minute beside its counts: the low source
    partitions (`SourceWatch.judge`) and its terminals (`SliceWatch.judge`)."""

    quiet: Sequence[Quiet] = ()
    terminals: Terminals | None = None


@dataclass
class Detector:
    """One IsolationForest per monitored status (`model`: failed, denied, reversed,
    backend_reversed, approved), each over that status's features, with its own
    calibrated threshold (`meta["group_thresholds"]`). A forest isolates a point beyond
    its training range in every feature on the first split, so it scores new extremes
    above everything it was trained on; with all features in one forest, an extreme in
    one of eleven dimensions is diluted by the ten normal ones (measured: a reversed x8
    spike then scored under the threshold). The minute's score is the largest status
    score over its threshold: the minute is anomalous from SCORE_THRESHOLD, whatever
    the model."""

    flat: dict[str, FlatForest]
    baseline: Baseline
    meta: dict
    model: dict[str, IsolationForest] | None = None  # after fit only: never saved

    def __post_init__(self):
        self.group_thresholds = self.meta["group_thresholds"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @classmethod
    def fit(
        cls,
        windows: list[tuple[int, list[int]]],
        *,
        false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
        seed: int = 0,
        source: str = "",
    ) -> Detector:
        """Fit on history: (window start ms, counts) pairs, ideally whole clean days."""
        import sklearn
        from sklearn.ensemble import IsolationForest

        if len(windows) < 10:
            raise ValueError(f"need at least 10 windows of history, got {len(windows)}")
        windows = sorted((s, MinuteCounts.of(c).statuses) for s, c in windows)
        baseline = Baseline.fit(windows)
        baseline.dispersion = training_dispersion(baseline, windows)
        rows, recent = [], []
        for start, counts in windows:
            rows.append(evidence(baseline, start, counts, recent).vector)
            recent = [*recent[-LEVEL_MINUTES:], (start, counts)]
        x = np.array(rows)
        models, flat, thresholds = {}, {}, {}
        for group, cols in GROUP_FEATURES.items():
            model = IsolationForest(n_estimators=N_ESTIMATORS, random_state=seed).fit(x[:, cols])
            models[group], flat[group] = model, FlatForest(model)
            scores = flat[group].score(x[:, cols])
            # Per group, so that the groups share the false-alarm budget.
            thresholds[group] = float(np.quantile(scores, 1.0 - false_alarm_rate
                                                  / len(GROUP_FEATURES)))
        starts = [s for s, _ in windows]
        digest = hashlib.sha256(
            repr((starts[0], starts[-1], len(windows), seed, sorted(thresholds.items()),
                  source)).encode()
        ).hexdigest()[:10]
        meta = {
            "version": f"iforest-{digest}",
            "features": list(FEATURES),
            "false_alarm_rate": false_alarm_rate,
            "fault_z": FAULT_Z,
            "group_thresholds": {g: round(v, 4) for g, v in thresholds.items()},
            "dispersion": {k: round(v, 3) for k, v in baseline.dispersion.items()},
            "training_windows": len(windows),
            "training_from": _iso(starts[0]),
            "training_to": _iso(starts[-1]),
            "source": source,
            "trained_at": datetime.now(UTC).isoformat(),
            "versions": {
                "python": platform.python_version(),
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
            },
        }
        return cls(flat=flat, baseline=baseline, meta=meta, model=models)

    def score(self, start_ms: int, counts: list[int], recent: list,
              paused: frozenset[int] = frozenset(),
              hours: dict[int, list[int]] | None = None,
              signals: Signals | None = None) -> Verdict:
        """`recent`: (start, counts) of the minutes before this one, oldest first (the
        worker keeps the last LEVEL_MINUTES + 1); `paused`, `hours`: see
        `features.evidence`; `signals`: its sources and terminals, judged outside."""
        ev = evidence(self.baseline, start_ms, MinuteCounts.of(counts).statuses, recent, paused,
                      hours)
        signals = signals or Signals()
        quiet, terminals = signals.quiet, signals.terminals
        ev.z["source"] = ev.held["source"] = max((q.z for q in quiet), default=0.0)
        for rule, z in (terminals.rules() if terminals else {}).items():
            ev.z[rule] = ev.held[rule] = z
        x = np.array([ev.vector])
        ratio = {g: float(f.score(x[:, GROUP_FEATURES[g]])[0]) / self.group_thresholds[g]
                 for g, f in self.flat.items()}
        ratio |= {r: min(ev.z.get(r, 0.0) / FAULT_Z, RULE_SCORE_MAX) for r in RULES}
        score = max(ratio.values())
        faulty = [s for s in ratio if ev.z.get(s, 0.0) >= FAULT_Z and ratio[s] >= SCORE_THRESHOLD]
        groups = tuple(g for g, names in EVIDENCE.items() if set(names) & set(faulty))
        anomalous = bool(groups)
        # A rule names every status of its group: silence is all of them at once.
        statuses = tuple(s for g in groups for s in GROUPS[g]
                         if s in faulty or set(EVIDENCE[g][len(GROUPS[g]):]) & set(faulty))
        return Verdict(
            score=score,
            threshold=SCORE_THRESHOLD,
            anomalous=anomalous,
            groups=groups if anomalous else (),
            statuses=statuses if anomalous else (),
            expected=ev.expected,
            z=ev.z,
            held=ev.held,
            causes=tuple(faulty) if anomalous else (),
            expected_total=ev.expected_total,
            sources=tuple(q for q in quiet if q.z >= FAULT_Z) if "source" in faulty else (),
            terminals=terminals,
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        joblib.dump(
            # "threshold" for the readers of files older than SCORE_THRESHOLD.
            {"flat": self.flat, "baseline": self.baseline, "threshold": SCORE_THRESHOLD,
             "meta": self.meta},
            tmp,
        )
        tmp.replace(path)  # atomic: a worker reloading never reads half a model

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        data = joblib.load(path)
        flat = data.get("flat") or {g: FlatForest(m) for g, m in data["model"].items()}
        return cls(flat, data["baseline"], data["meta"])  # "threshold": always 1.0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
