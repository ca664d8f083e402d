"""A source that goes quiet: one transactions partition silent while the others flow.

Producers spread transactions over the partitions by key (a terminal, or the id), so
each partition carries a steady share of every minute. When one stops (its producer,
a gateway in front of it, its leader unreachable for that producer), the totals fall by
that share only, which no status count and no volume rule notices; the counting stage
still closes its minutes by the idle clock, as zeros. So each partition is judged
against the others: expected = its usual share / (1 - share) × what the others carried.
Judging against the others, not against today's level, keeps a silence of everything
the volume rule's (processor/features.py), and a busy or quiet hour nobody's.

A partition is *low* in a minute when it carried under VOLUME_MAX_RATIO of that
expectation; its evidence is the quasi-Poisson z of the whole run of low minutes, as
for volume. Shares and dispersion are exponentially weighted over SHARE_MEMORY normal
minutes (outside incidents, no partition low), so a rebalanced producer is learnt
within the hour and an outage is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.features import VOLUME_MAX_RATIO, z_drop

#: Normal minutes the shares and the dispersion remember (exponential weighting).
SHARE_MEMORY = 30
#: Normal minutes learnt before anything is judged.
MIN_MINUTES = 10
#: A minute with fewer transactions in all teaches nothing about shares.
MIN_TOTAL = 20
#: Residuals from smaller expectations say nothing about dispersion.
PHI_MIN_EXPECTED = 5.0
PHI_MAX = 100.0


@dataclass(frozen=True)
class Quiet:
    """One partition judged low: its run's evidence and this minute's counts."""

    partition: int
    z: float
    observed: int
    expected: float


@dataclass
class SourceWatch:
    """Per-partition shares, dispersion and low runs: state of the merge stage."""

    share: list[float] = field(default_factory=list)
    phi: float = 1.0
    learnt: int = 0
    #: Partition -> [observed, expected] summed over its current run of low minutes.
    runs: dict[int, list[float]] = field(default_factory=dict)

    def judge(self, sources: list[int], learn: bool) -> list[Quiet]:
        """Low partitions of this minute (`sources`: its events per partition), the
        strongest first; learns from the minute when `learn` and none is low."""
        if len(sources) < 2:
            return []
        judged = self.learnt >= MIN_MINUTES and len(self.share) == len(sources)
        quiet = self._low(sources) if judged else []
        if not judged:
            self.runs.clear()
        if learn and not quiet and sum(sources) >= MIN_TOTAL:
            self._learn(sources)
        return sorted(quiet, key=lambda q: -q.z)

    def _low(self, sources: list[int]) -> list[Quiet]:
        total = sum(sources)
        out = []
        for p, n in enumerate(sources):
            s = self.share[p]
            e = s / (1.0 - s) * (total - n) if 0.0 < s < 1.0 else 0.0
            if e <= 0.0 or n > VOLUME_MAX_RATIO * e:
                self.runs.pop(p, None)
                continue
            run = self.runs.setdefault(p, [0.0, 0.0])
            run[0] += n
            run[1] += e
            out.append(Quiet(p, z_drop(run[0], run[1], self.phi), n, e))
        return out

    def _learn(self, sources: list[int]) -> None:
        total = sum(sources)
        now = [n / total for n in sources]
        if len(self.share) != len(sources):
            self.share, self.learnt = now, 0
        alpha = 1.0 / min(self.learnt + 1, SHARE_MEMORY)
        residuals = [(n - s * total) ** 2 / (s * total) for n, s in zip(sources, self.share,
                                                                       strict=True)
                     if s * total >= PHI_MIN_EXPECTED]
        if residuals:
            r2 = sum(residuals) / len(residuals)
            self.phi = min(max((1 - alpha) * self.phi + alpha * r2, 1.0), PHI_MAX)
        self.share = [(1 - alpha) * s + alpha * x for s, x in zip(self.share, now, strict=True)]
        self.learnt += 1
