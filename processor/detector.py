"""Scores a closed minute with an IsolationForest and says what is wrong with it.

The forest sees the one-sided deviations of `features` (never raw counts), so "normal"
is a small region near zero and anything far from it isolates quickly. The alert
threshold is not a contamination guess: it is the score quantile of the training
windows for a target false-alarm rate, so it means "this rarely happened in history".
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest

from processor.features import (
    FEATURES,
    GROUPS,
    LEVEL_MINUTES,
    Baseline,
    deviations,
    vector,
    volume_level,
)
from txmon.contracts import STATUSES

#: A status is named at fault when it deviates by at least this many Poisson sigmas.
FAULT_Z = 4.0
STATUS_APPROVED = STATUSES.index("approved")
DEFAULT_FALSE_ALARM_RATE = 0.002


@dataclass(frozen=True)
class Verdict:
    score: float
    threshold: float
    anomalous: bool
    groups: tuple[str, ...]
    statuses: tuple[str, ...]
    expected: dict[str, float]
    z: dict[str, float]


@dataclass
class Detector:
    model: IsolationForest
    baseline: Baseline
    threshold: float
    meta: dict

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
        if len(windows) < 10:
            raise ValueError(f"need at least 10 windows of history, got {len(windows)}")
        windows = sorted(windows)
        baseline = Baseline.fit(windows)
        rows, recent = [], []
        for start, counts in windows:
            rows.append(vector(deviations(baseline, start, counts, volume_level(baseline, recent))))
            recent = [*recent[-LEVEL_MINUTES:], (start, counts[STATUS_APPROVED])]
        x = np.array(rows)
        model = IsolationForest(n_estimators=200, random_state=seed).fit(x)
        scores = -model.score_samples(x)
        threshold = float(np.quantile(scores, 1.0 - false_alarm_rate))
        starts = [s for s, _ in windows]
        digest = hashlib.sha256(
            repr((sorted(starts)[:1], sorted(starts)[-1:], len(windows), seed, threshold)).encode()
        ).hexdigest()[:10]
        meta = {
            "version": f"iforest-{digest}",
            "features": list(FEATURES),
            "false_alarm_rate": false_alarm_rate,
            "training_windows": len(windows),
            "training_from": _iso(min(starts)),
            "training_to": _iso(max(starts)),
            "source": source,
            "trained_at": datetime.now(UTC).isoformat(),
            "versions": {
                "python": platform.python_version(),
                "scikit-learn": sklearn.__version__,
                "numpy": np.__version__,
            },
        }
        return cls(model=model, baseline=baseline, threshold=threshold, meta=meta)

    def score(self, start_ms: int, counts: list[int], recent: list[tuple[int, int]]) -> Verdict:
        """`recent`: (start, approvals) of the minutes before this one, oldest first."""
        level = volume_level(self.baseline, recent)
        z = deviations(self.baseline, start_ms, counts, level)
        score = float(-self.model.score_samples(np.array([vector(z)]))[0])
        group_z = {
            "failures": z["failed"],
            "denials": z["denied"],
            "reversals": max(z["reversed"], z["backend_reversed"]),
            "outage": max(z["approved_share"], z["approved_count"]),
        }
        groups = tuple(g for g, v in group_z.items() if v >= FAULT_Z)
        anomalous = score > self.threshold and bool(groups)
        statuses = tuple(
            s for g in groups for s in GROUPS[g]
            if s == "approved" or z[s] >= FAULT_Z or len(GROUPS[g]) == 1
        )
        return Verdict(
            score=score,
            threshold=self.threshold,
            anomalous=anomalous,
            groups=groups if anomalous else (),
            statuses=statuses if anomalous else (),
            expected=self.baseline.expected(start_ms, counts, level),
            z=z,
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        joblib.dump(
            {"model": self.model, "baseline": self.baseline, "threshold": self.threshold,
             "meta": self.meta},
            tmp,
        )
        tmp.replace(path)  # atomic: a worker reloading never reads half a model

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        data = joblib.load(path)
        return cls(data["model"], data["baseline"], data["threshold"], data["meta"])


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
