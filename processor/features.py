"""From a closed minute's counts to the numbers the anomaly model sees.

Raw counts make a busy day look like an incident and a quiet night hide one. So each
monitored status is compared with what it should be *given this minute's volume*: the
expected count of a bad status is its usual share (for that hour of day, from history)
times this minute's total, and the deviation is a Poisson z-score, which stays calm at
night when a few failures are noise and grows with evidence at peak. Approvals are the
exception: an outage removes volume itself, so they are compared with their usual
count for the hour as well. Deviations are one-sided: more failures, denials or
reversals, or fewer approvals, are the only directions an operator is paged for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median

from txmon.contracts import STATUSES

#: Statuses that page when they rise, and the groups an incident is opened for.
RISING = ("failed", "denied", "reversed", "backend_reversed")
GROUPS: dict[str, tuple[str, ...]] = {
    "failures": ("failed",),
    "denials": ("denied",),
    "reversals": ("reversed", "backend_reversed"),
    "outage": ("approved",),
}
FEATURES = (
    *(f"{s}_excess" for s in RISING),
    "approved_share_drop",
    "approved_count_drop",
)
HOURS = 24
_IDX = {s: i for i, s in enumerate(STATUSES)}


def hour_of(start_ms: int) -> int:
    return (start_ms // 3_600_000) % HOURS


@dataclass
class Baseline:
    """Robust per-hour-of-day reference: each status's share of volume, and the usual
    approvals per minute. Hours the history lacks fall back to the pooled values."""

    share: list[dict[str, float]] = field(default_factory=list)
    approved: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, windows: list[tuple[int, list[int]]]) -> Baseline:
        by_hour: list[list[list[int]]] = [[] for _ in range(HOURS)]
        for start, counts in windows:
            by_hour[hour_of(start)].append(counts)
        pooled = [c for hour in by_hour for c in hour]
        if not pooled:
            raise ValueError("no history to fit a baseline on")
        pooled_share = _shares(pooled)
        pooled_approved = median(c[_IDX["approved"]] for c in pooled)
        share, approved = [], []
        for hour in by_hour:
            if len(hour) >= 10:
                share.append(_shares(hour))
                approved.append(median(c[_IDX["approved"]] for c in hour))
            else:
                share.append(pooled_share)
                approved.append(pooled_approved)
        return cls(share=share, approved=approved)

    def expected(self, start_ms: int, counts: list[int], level: float = 1.0) -> dict[str, float]:
        """What each status should have been in this minute, given its volume."""
        hour = hour_of(start_ms)
        total = sum(counts[: len(STATUSES)])
        out = {s: self.share[hour][s] * total for s in STATUSES}
        out["approved"] = max(out["approved"], self.approved[hour] * level)
        return out


def _shares(rows: list[list[int]]) -> dict[str, float]:
    # Ratio of sums, with trimmed minutes: one incident hour in the history must not
    # become the norm.
    totals = [sum(r[: len(STATUSES)]) for r in rows]
    keep = [r for r, t in zip(rows, totals, strict=True) if t > 0]
    out = {}
    for s in STATUSES:
        i = _IDX[s]
        shares = sorted(r[i] / sum(r[: len(STATUSES)]) for r in keep) if keep else [0.0]
        cut = len(shares) // 10
        trimmed = shares[: len(shares) - cut] if cut else shares
        out[s] = sum(trimmed) / len(trimmed)
    return out


def poisson_z(observed: float, expected: float) -> float:
    """Signed deviation in Poisson standard deviations (+1 keeps tiny expectations sane)."""
    return (observed - expected) / math.sqrt(expected + 1.0)


#: Minutes of recent history that set the volume level approvals are judged against.
LEVEL_MINUTES = 60


def volume_level(baseline: Baseline, recent: list[tuple[int, int]]) -> float:
    """How busy today is compared with the history the baseline came from.

    The median, over the recent minutes, of approvals against their usual count for the
    hour: 1.0 on a normal day, 10 on a day ten times busier. Approvals are then judged
    against the usual count times this level, so a busy day is not an incident and a
    quiet one is not an outage; the median keeps a half-hour outage from becoming the
    new normal.
    """
    ratios = sorted(
        approved / baseline.approved[hour_of(start)]
        for start, approved in recent[-LEVEL_MINUTES:]
        if baseline.approved[hour_of(start)] > 0
    )
    if len(ratios) < 10:
        return 1.0
    return ratios[len(ratios) // 2]


def deviations(
    baseline: Baseline, start_ms: int, counts: list[int], level: float = 1.0
) -> dict[str, float]:
    """One-sided z per monitored status: how much worse than usual, 0 when not worse."""
    hour = hour_of(start_ms)
    total = sum(counts[: len(STATUSES)])
    z = {}
    for s in RISING:
        expected = baseline.share[hour][s] * total
        z[s] = max(0.0, poisson_z(counts[_IDX[s]], expected))
    approved = counts[_IDX["approved"]]
    share_drop = max(0.0, -poisson_z(approved, baseline.share[hour]["approved"] * total))
    count_drop = max(0.0, -poisson_z(approved, baseline.approved[hour] * level))
    z["approved_share"] = share_drop
    z["approved_count"] = count_drop
    return z


def vector(z: dict[str, float]) -> list[float]:
    """The model's input, in FEATURES order."""
    return [*(z[s] for s in RISING), z["approved_share"], z["approved_count"]]
