"""From a closed minute's counts to the evidence the anomaly model sees.

Raw counts make a busy day look like an incident and a quiet night hide one, so every
monitored status is compared with what it should have been in *this* minute:

- A rising status (failed, denied, reversed, backend_reversed) is expected at its usual
  share of volume for the time of day (from history) times this minute's volume. The
  volume is read from the statuses nobody is paged for (approved, refunded,
  processing), so neither its own spike nor another status's raises its expectation,
  floored by the mean of the minutes before and by today's level: the usual volume for the time of
  day scaled by how busy today is (the median ratio over the last hour), so that an
  outage, which removes volume, does not make the other statuses look high.
- Approvals are judged twice: their share of the minute (approvals collapse while the
  rest keeps flowing) and their count against today's level (a minute with no traffic
  at all is an outage too).

Deviations are exact Poisson tail probabilities turned into one-sided z-scores, so a
handful of failures at night and hundreds at peak are judged on the same scale. Real
traffic is overdispersed (a quiet-then-busy minute is more common than Poisson says),
so counts are quasi-Poisson: divided by a dispersion φ estimated robustly (lower
quartile of |Pearson residual|, which ignores up to three quarters of contaminated
minutes) from the recent minutes and never below the one seen in training. Evidence
is taken over the minute alone and over the last SUSTAIN_MINUTES together, so a
sustained moderate rise is seen as surely as a sharp one.

Statistical significance is not enough for a page: a deviation also has to be
material (RISE_MIN_RATIO above, or OUTAGE_MAX_RATIO / SHARE_MAX_RATIO below, what was
expected), which keeps a 10x busier day, where a 5 % wobble is "significant", quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc, gammaincc, ndtri

from processor.levels import (
    LEVEL_MIN_MINUTES,
    LEVEL_WINDOW,
    block_level,
    carried_level,
    recent_level,
    volume_reference,
)
from txmon.contracts import GROUPS, STATUSES
from txmon.contracts import STATUS_INDEX as IDX
from txmon.contracts.minutes import MINUTE_MS, MINUTES_PER_DAY

#: Statuses that page when they rise: every group's but the outage's.
RISING = tuple(s for g, members in GROUPS.items() if g != "outage" for s in members)
FEATURES = (
    *(f"{s}_{w}" for s in RISING for w in ("1m", "3m")),
    "approved_share_1m",
    "approved_count_1m",
    "approved_count_3m",
)
N = len(STATUSES)
APPROVED = IDX["approved"]

#: Minutes of recent history the worker keeps for the detector (level, dispersion).
LEVEL_MINUTES = 120
#: With fewer approvals expected a minute, an outage cannot be told from a lull within
#: a few minutes (at night a real day has minutes with none): approvals are not judged.
OUTAGE_MIN_EXPECTED = 20.0
#: History transactions an hour needs before its own share outweighs the pooled one.
SHARE_PRIOR = 1000.0
SHARE_PRIOR_EVENTS = 20.0
#: A history minute counts at most its expectation plus this many standard deviations
#: plus a few events (PLAUSIBLE_SLACK): an incident minute then counts as a normal one.
PLAUSIBLE_SD = 4.0
PLAUSIBLE_SLACK = 3.0
#: Today's mix: median over blocks of this many recent minutes, from this many blocks.
RECENT_BLOCK = 10
RECENT_MIN_BLOCKS = 6
#: ...and raises a status's expected share at most this much: a day whose mix differs
#: is absorbed, an incident that has lasted an hour is not (it would resolve unseen).
TODAY_MAX_FACTOR = 2.0
#: A rising status's volume reference is never below the mean of this many minutes
#: before: at night a minute with one denial and nothing else is not 100 % denials.
VOLUME_MINUTES = 10
#: Minutes summed for the sustained-evidence features (this one and the ones before).
SUSTAIN_MINUTES = 3
#: A rising status is material from +50 % over its expectation.
RISE_MIN_RATIO = 1.5
#: A group is at fault when its evidence reaches this z (one-sided, ~3e-5 per test);
#: processor/detector.py applies it, the rules judged outside it name by it too.
FAULT_Z = 4.0
#: All traffic is material when it falls under a quarter of what today's level expects:
#: a quiet day at 40 % of the usual is no outage, a few percent is.
VOLUME_MAX_RATIO = 0.25
#: Silence is judged over the whole run of low minutes ending now, up to this many: a
#: minute suffices at peak, at night (where a few empty minutes are normal) it takes
#: about 10 φ / (traffic expected a minute) minutes, and under 0.2 a minute never.
VOLUME_RUN_MAX = 60
#: Approvals are material when their count falls under 70 % of today's level...
OUTAGE_MAX_RATIO = 0.7
#: ...or their share of the minute under 90 % of its usual share.
SHARE_MAX_RATIO = 0.9
#: Residuals from minutes with a smaller expectation say nothing about dispersion.
DISPERSION_MIN_EXPECTED = 5.0
DISPERSION_MIN_MINUTES = 20
#: Lower quartile of |N(0, 1)|: q25(|r|) / this estimates the residuals' scale.
Q25_ABS_NORMAL = 0.318639
DISPERSION_MAX = 100.0
#: The pooled φ of a rare status needs this many events expected over the recent
#: minutes, from minutes expecting at least POOLED_MIN_EXPECTED (a residual against a
#: near-zero expectation is one event's noise, squared).
POOLED_MIN_TOTAL = 20.0
POOLED_MIN_EXPECTED = 0.1
Z_MAX = 40.0


def minute_of_day(start_ms: int) -> int:
    return (start_ms // MINUTE_MS) % MINUTES_PER_DAY


@dataclass
class Baseline:
    """Robust reference by minute of day, learnt from history.

    Per hour of day: each status's share of volume (trimmed mean of per-minute shares,
    so an incident hour in the history does not become the norm) and the median
    approvals per minute; interpolated linearly between hour centres, as traffic has
    no steps at the hour. Hours with too little history take the pooled values.
    `dispersion` is the φ of each feature's residuals over the training minutes.
    """

    share: np.ndarray  # (1440, 7)
    approved: np.ndarray  # (1440,)
    dispersion: dict[str, float]

    @classmethod
    def fit(cls, windows: list[tuple[int, list[int]]]) -> Baseline:
        if not windows:
            raise ValueError("no history to fit a baseline on")
        counts = np.array([c for _, c in windows], dtype=np.float64)
        hours = np.array([minute_of_day(s) // 60 for s, _ in windows])
        _, share_h = _hourly_shares(counts, hours)
        pooled_approved = float(np.median(counts[:, APPROVED]))
        approved_h = np.empty(24)
        for h in range(24):
            rows = counts[hours == h]
            approved_h[h] = np.median(rows[:, APPROVED]) if len(rows) >= 10 else pooled_approved
        centres = np.arange(-1, 25) * 60 + 30.0
        minutes = np.arange(MINUTES_PER_DAY) + 0.5
        wrap = [23, *range(24), 0]
        share = np.stack(
            [np.interp(minutes, centres, share_h[wrap, i]) for i in range(N)], axis=1)
        approved = np.interp(minutes, centres, approved_h[wrap])
        return cls(share=share, approved=approved, dispersion={})

    def expected_volume(self, start_ms: int, level: float) -> float:
        """The total volume today's level predicts for this minute."""
        m = minute_of_day(start_ms)
        return level * self.approved[m] / max(self.share[m, APPROVED], 1e-9)


def _plausible(counts: np.ndarray, share: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Each minute's counts capped at what `share` of its total makes plausible."""
    e = share[None, :] * totals
    return np.minimum(counts, e + PLAUSIBLE_SD * np.sqrt(e) + PLAUSIBLE_SLACK)


def _hourly_shares(counts: np.ndarray, hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled and per-hour shares of volume, robust to incidents in the history.

    Pooled: per status, the ratio of sums over the history with each minute capped at
    what the median over the busier hours of the hourly ratios makes plausible (an
    incident lasting less than half of them cannot move it). Per hour: the ratio of
    sums with each minute's count capped at what the pooled share makes plausible
    (an incident minute counts as a normal one), shrunk towards the pooled share by
    SHARE_PRIOR_EVENTS events, so an hour that saw two failures does not claim that
    failures never happen (a per-minute median or trimmed mean would:
    most quiet minutes have none of it)."""
    totals = counts.sum(axis=1)
    overall = counts.sum(axis=0) / max(totals.sum(), 1.0)
    per_hour = [counts[hours == h] for h in range(24)]
    busy = [r.sum(axis=0) / r.sum() for r in per_hour if r.sum() >= SHARE_PRIOR]
    rough = np.median(busy, axis=0) if len(busy) >= 3 else overall
    # The median of hourly ratios is robust but biased low for a rare status (most
    # hours see one or two); the ratio of capped sums over the whole history is not.
    pooled = _plausible(counts, rough, totals[:, None]).sum(axis=0) / max(totals.sum(), 1.0)
    pooled = np.maximum(pooled, 1e-6)
    pooled = pooled / pooled.sum()
    share = np.empty((24, N))
    for h, rows in enumerate(per_hour):
        if len(rows) == 0:
            share[h] = pooled
            continue
        t = rows.sum(axis=1, keepdims=True)
        capped = _plausible(rows, pooled, t)
        # Empirical Bayes: the pooled share is worth SHARE_PRIOR_EVENTS events of each
        # status, so an hour speaks for itself only when it saw many more of them.
        share[h] = ((capped.sum(axis=0) + SHARE_PRIOR_EVENTS)
                    / (t.sum() + SHARE_PRIOR_EVENTS / pooled))
        share[h] /= share[h].sum()
    return pooled, share


def recent_shares(rows: np.ndarray) -> np.ndarray | None:
    """Today's shares: per status, the median over the recent RECENT_BLOCK-minute blocks
    of the block's ratio of sums; None with too few blocks. An incident must last more
    than half of LEVEL_MINUTES to move it."""
    blocks = [rows[max(0, i - RECENT_BLOCK):i] for i in range(len(rows), 0, -RECENT_BLOCK)]
    ratios = [b.sum(axis=0) / b.sum() for b in blocks if len(b) == RECENT_BLOCK and b.sum() > 0]
    if len(ratios) < RECENT_MIN_BLOCKS:
        return None
    return np.median(ratios, axis=0)


def volume_level(baseline: Baseline, recent: list[tuple[int, list[int]]],
                 learn: list[bool] | None = None,
                 hours: dict[int, list[int]] | None = None) -> float | None:
    """How busy today is against the history (processor/levels.py): 1.0 on a usual day,
    10 on a day ten times busier. From the recent minutes `learn` marks normal; carried
    from the latest normal hour when incidents cover them all; from every recent minute
    when there is no such hour either. None until LEVEL_MIN_MINUTES minutes are known:
    before that nothing is judged against a level."""
    usual = baseline.approved
    level = recent_level(usual, recent, learn or [True] * len(recent), APPROVED)
    if level is None and hours and recent:
        level = carried_level(usual, hours, recent[-1][0] + MINUTE_MS)
    if level is None and learn is not None:
        level = recent_level(usual, recent, [True] * len(recent), APPROVED)
    return level


def expectations(baseline: Baseline, starts: np.ndarray, counts: np.ndarray,
                 level, today: np.ndarray | None = None,
                 mix_unknown: bool = False) -> dict[str, np.ndarray]:
    """Expected value of each feature's count, per minute (rows of `counts`). `today`:
    recent shares; a rising status is then expected at the larger of its usual and
    today's share, capped at TODAY_MAX_FACTOR times the usual one (a day whose mix
    differs is not an incident all day).

    `mix_unknown`: the stream's first minutes, before it has a level. They have no
    level floor, no volume history and no idea of today's mix, so against the training
    mix alone an odd mix at start-up (a midnight batch of denials) would page. A
    rising status is then expected at the most today's mix is ever allowed to explain,
    TODAY_MAX_FACTOR times its usual share: a clear incident right after start-up still
    opens (the demo's), a mix that an hour of history would absorb does not; and the
    sustained evidence of the minutes after does not sum these minutes (`evidence`)."""
    m = (starts // MINUTE_MS) % MINUTES_PER_DAY
    share = baseline.share[m]
    rising = [IDX[s] for s in RISING]
    if mix_unknown:
        share = share.copy()
        share[:, rising] *= TODAY_MAX_FACTOR
    elif today is not None:
        share = share.copy()
        cap = share[:, rising] * TODAY_MAX_FACTOR
        share[:, rising] = np.maximum(share[:, rising], np.minimum(today[None, rising], cap))
    total = counts.sum(axis=1)
    floor_volume = level * baseline.approved[m] / np.maximum(share[:, APPROVED], 1e-9)
    out = {}
    # The volume reference is the statuses nobody is paged for (approved, refunded,
    # processing): one incident's surge must not raise another status's expectation.
    calm = [i for i in range(N) if STATUSES[i] not in RISING]
    volume = counts[:, calm].sum(axis=1)
    volume = np.maximum(volume, _previous_mean(volume, VOLUME_MINUTES))
    calm_share = np.maximum(share[:, calm].sum(axis=1), 1e-9)
    for s in RISING:
        p = share[:, IDX[s]]
        out[s] = np.maximum(p / calm_share * volume, p * floor_volume)
    out["approved_share"] = share[:, APPROVED] * total
    out["approved_count"] = level * baseline.approved[m]
    out["volume"] = expected_volume(baseline, starts, level)
    return out


def expected_volume(baseline: Baseline, starts: np.ndarray, level) -> np.ndarray:
    """All traffic the level predicts for each minute: usual approvals over their share."""
    m = (starts // MINUTE_MS) % MINUTES_PER_DAY
    return level * baseline.approved[m] / np.maximum(baseline.share[m, APPROVED], 1e-9)


def _previous_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k values before each one (0 for the first)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    j = np.arange(len(x))
    lo = np.maximum(j - k, 0)
    n = j - lo
    return np.where(n > 0, (c[j] - c[lo]) / np.maximum(n, 1), 0.0)


def observed(counts: np.ndarray) -> dict[str, np.ndarray]:
    out = {s: counts[:, IDX[s]] for s in RISING}
    out["approved_share"] = out["approved_count"] = counts[:, APPROVED]
    out["volume"] = counts.sum(axis=1)
    return out


def dispersion(obs: np.ndarray, exp: np.ndarray) -> float | None:
    """φ from the lower quartile of |Pearson residuals|, or None with too few minutes."""
    use = exp >= DISPERSION_MIN_EXPECTED
    if use.sum() < DISPERSION_MIN_MINUTES:
        return None
    r = np.abs(obs[use] - exp[use]) / np.sqrt(exp[use])
    scale = float(np.quantile(r, 0.25)) / Q25_ABS_NORMAL
    return float(min(max(scale * scale, 1.0), DISPERSION_MAX))


def pooled_dispersion(obs: np.ndarray, exp: np.ndarray) -> float | None:
    """φ of a status too rare for `dispersion` (under DISPERSION_MIN_EXPECTED a
    minute): the mean squared Pearson residual, pooled over the recent minutes. Real
    reversals come in small batches (two, three, four in a minute) that simulated
    history does not have; a quarter-quantile cannot see that when most minutes are 0."""
    use = exp >= POOLED_MIN_EXPECTED
    if exp[use].sum() < POOLED_MIN_TOTAL:
        return None
    r2 = (obs[use] - exp[use]) ** 2 / exp[use]
    return float(min(max(r2.mean(), 1.0), DISPERSION_MAX))


def z_rise(obs: float, exp: float, phi: float) -> float:
    """One-sided z of `obs` or more under quasi-Poisson(exp, φ); 0 when not above."""
    if obs <= exp or obs <= 0:
        return 0.0
    p = float(gammainc(obs / phi, exp / phi)) if exp > 0 else 0.0
    return _z(p)


def z_drop(obs: float, exp: float, phi: float) -> float:
    """One-sided z of `obs` or fewer under quasi-Poisson(exp, φ); 0 when not below."""
    if obs >= exp or exp <= 0:
        return 0.0
    p = float(gammaincc(obs / phi + 1.0, exp / phi))
    return _z(p)


def _z(p: float) -> float:
    if p <= 0.0:
        return Z_MAX
    return float(min(max(-ndtri(p), 0.0), Z_MAX))


@dataclass(frozen=True)
class Evidence:
    """One minute seen by the detector."""

    #: Model input, FEATURES order: gated one-sided z-scores.
    vector: list[float]
    #: Per feature family (RISING statuses, approved_share, approved_count): the larger
    #: of the 1-minute and sustained z, 0 when the effect is not material. A rising
    #: status needs material events in this very minute: "at fault *now*".
    z: dict[str, float]
    #: As `z`, but the sustained evidence counts without events in this minute: what
    #: still stands from the minutes before. A rare status has empty minutes in the
    #: middle of its incident; they must not count as normal ones.
    held: dict[str, float]
    #: Expected count per status for this minute (what the alert reports).
    expected: dict[str, float]
    #: Expected transactions of every status in this minute (0 without a level).
    expected_total: float = 0.0


def evidence(baseline: Baseline, start_ms: int, counts: list[int],
             recent: list[tuple[int, list[int]]], paused: frozenset[int] = frozenset(),
             hours: dict[int, list[int]] | None = None) -> Evidence:
    """The features of one closed minute (its status counts) given the minutes before
    it (oldest first).

    `paused`: starts of recent minutes today's level, mix and dispersion must not learn
    from (an incident's): a baseline that learns from an episode in progress makes it
    look normal after an hour or two, and resolves it while it goes on. `hours`: the
    hourly memory of processor/levels.py (previous days, the last normal hour)."""
    window = [*recent[-LEVEL_MINUTES:], (start_ms, counts)]
    starts = np.array([s for s, _ in window], dtype=np.int64)
    rows = np.array([c for _, c in window], dtype=np.float64)
    learn = np.array([s not in paused for s in starts[:-1]], dtype=bool)
    level = volume_level(baseline, window[:-1], learn.tolist(), hours)
    known = level is not None
    level = level if known else 0.0
    v_level = volume_reference(baseline.approved, hours, start_ms, level)
    exp = expectations(baseline, starts, rows, level, recent_shares(rows[:-1][learn]),
                       mix_unknown=not known)
    exp["volume"] = expected_volume(baseline, starts, v_level)
    minute = _Minute(obs=observed(rows), exp=exp, learn=learn, known=known,
                     k=_sustained(starts, start_ms, len(recent)),
                     empty=float(rows[-1].sum()) == 0, starts=starts)
    vector, z, held = [], {}, {}
    for name in (*RISING, "approved_share", "approved_count"):
        zs, z[name], h = minute.judge(name, baseline.dispersion.get(name, 1.0))
        vector += zs
        held[name] = z[name] if h is None else h
    z["approved"] = held["approved"] = max(z["approved_share"], z["approved_count"])
    z["volume"] = held["volume"] = minute.silence(baseline.dispersion.get("volume", 1.0))
    return Evidence(vector=vector, z=z, held=held,
                    expected=_expected(baseline, start_ms, rows, exp, level),
                    expected_total=float(exp["volume"][-1]) if known else 0.0)


def _sustained(starts: np.ndarray, start_ms: int, known_minutes: int) -> int:
    """Minutes consecutive with this one, for the sustained evidence, among those that
    had a level: see `expectations(mix_unknown=...)` for the first minutes of a stream."""
    judged = known_minutes + 1 - LEVEL_MIN_MINUTES  # exact while `recent` is the whole stream
    k = 1
    while (k < min(SUSTAIN_MINUTES, judged) and k < len(starts)
           and starts[-1 - k] == start_ms - MINUTE_MS * k):
        k += 1
    return k


@dataclass(frozen=True)
class _Minute:
    """What `evidence` judges each feature family on: observed and expected counts of
    the window (this minute last), the minutes to learn from, `k` sustained minutes."""

    obs: dict[str, np.ndarray]
    exp: dict[str, np.ndarray]
    learn: np.ndarray
    known: bool
    k: int
    empty: bool
    starts: np.ndarray

    def judge(self, name: str, trained_phi: float) -> tuple[list[float], float, float | None]:
        """The family's features, its z and what still stands (None: as its z)."""
        o, e, learn, k = self.obs[name], self.exp[name], self.learn, self.k
        phi_recent = (dispersion(o[:-1][learn], e[:-1][learn])
                      or pooled_dispersion(o[:-1][learn], e[:-1][learn]))
        phi = max(trained_phi, phi_recent or 1.0)
        o1, e1 = float(o[-1]), float(e[-1])
        o3, e3 = float(o[-k:].sum()), float(e[-k:].sum())
        if name in RISING:
            material = o1 >= RISE_MIN_RATIO * e1 and o1 >= 1
            z1 = z_rise(o1, e1, phi) if material else 0.0
            zk = z_rise(o3, e3, phi) if o3 >= RISE_MIN_RATIO * e3 else 0.0
            z3 = zk if material else 0.0
            return [z1, z3], max(z1, z3), max(z1, zk)
        if name == "approved_share":
            # Approvals' share also falls when another status surges: only a share
            # drop with materially fewer approvals than today's level is an outage's.
            e_count = float(self.exp["approved_count"][-1])
            below = (self.known and e_count >= OUTAGE_MIN_EXPECTED
                     and o1 <= OUTAGE_MAX_RATIO * e_count)
            z1 = z_drop(o1, e1, phi) if below and o1 <= SHARE_MAX_RATIO * e1 else 0.0
            return [z1], z1, None
        # Fewer approvals is an outage only if their share falls too (or nothing
        # arrives at all): volume alone, up or down, is not an anomaly.
        share_falls = self.empty or (
            self.obs["approved_share"][-1] <= SHARE_MAX_RATIO * self.exp["approved_share"][-1])
        material = (self.known and share_falls and e1 >= OUTAGE_MIN_EXPECTED
                    and o1 <= OUTAGE_MAX_RATIO * e1)
        z1 = z_drop(o1, e1, phi) if material else 0.0
        z3 = z_drop(o3, e3, phi) if material and o3 <= OUTAGE_MAX_RATIO * e3 else 0.0
        return [z1, z3], max(z1, z3), None

    def _silence_run(self) -> int:
        """Consecutive minutes ending with this one whose volume is materially low."""
        o, e, starts = self.obs["volume"], self.exp["volume"], self.starts
        run = 0
        while (run < min(len(o), VOLUME_RUN_MAX) and o[-1 - run] <= VOLUME_MAX_RATIO * e[-1 - run]
               and starts[-1 - run] == starts[-1] - MINUTE_MS * run):
            run += 1
        return run

    def silence(self, trained_phi: float) -> float:
        """z of all traffic being this low over the run of low minutes ending now, 0
        unless this minute is low itself: silence is "at fault now", so traffic that is
        back is normal at once."""
        run = self._silence_run() if self.known else 0
        if run == 0:
            return 0.0
        o, e = self.obs["volume"], self.exp["volume"]
        phi_recent = dispersion(o[:-1][self.learn], e[:-1][self.learn])
        phi = max(trained_phi, phi_recent or 1.0)
        return z_drop(float(o[-run:].sum()), float(e[-run:].sum()), phi)


def _expected(baseline: Baseline, start_ms: int, rows: np.ndarray, exp: dict,
              level: float) -> dict[str, float]:
    m = minute_of_day(start_ms)
    total = float(rows[-1].sum())
    volume = max(total, baseline.expected_volume(start_ms, level))
    expected = {s: float(baseline.share[m, IDX[s]] * volume) for s in STATUSES}
    for s in RISING:
        expected[s] = float(exp[s][-1])
    if level > 0:
        expected["approved"] = float(exp["approved_count"][-1])
    return expected


def training_dispersion(baseline: Baseline, windows: list[tuple[int, list[int]]]) -> dict:
    """φ per feature family over the whole history, each minute judged against the
    level of the hour before it, as the worker will."""
    starts = np.array([s for s, _ in windows], dtype=np.int64)
    rows = np.array([c for _, c in windows], dtype=np.float64)
    usual = baseline.approved[(starts // MINUTE_MS) % MINUTES_PER_DAY]
    levels = np.ones(len(rows))
    for j in range(len(rows)):
        lo = max(0, j - LEVEL_WINDOW)
        level = block_level(rows[lo:j, APPROVED], usual[lo:j])
        if level is not None:
            levels[j] = level
    obs = observed(rows)
    exp = expectations(baseline, starts, rows, levels)
    out = {}
    for name, e in exp.items():
        out[name] = dispersion(obs[name], e) or 1.0
    return out
