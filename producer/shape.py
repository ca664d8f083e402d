"""What a normal day looks like: the hourly volume shape and the status mix.

Both are constants derived once from the two reference days
(../shared/data/cloudwalk/transactions_{1,2}.csv) so that the simulator runs anywhere,
Docker included, without the data. `derive_hourly_shape` and `derive_status_mix` state
the rule; tests/unit/test_producer_shape.py recomputes the constants from the CSVs and checks
they match, so the table below cannot drift from its derivation.

Rules, and why:

- Shape: per hour of day, the approved count, the larger of the two days, divided by
  the largest hour. Approvals are the bulk of the traffic and the status incidents
  least inflate; an outage lowers approvals on one day only (transactions_1 at 17h),
  so taking the larger day keeps it out of what "normal" means. The shape has the
  night lull (02-04h, 0.1-0.3 % of peak), the morning ramp (06-10h), a late-morning /
  lunch peak (11h), an early-afternoon dip and the evening peak (17h), then a decline.
- Mix: per status, the median over the hours with at least 1,000 transactions (36 of
  the 48) of that status's share of the hour, renormalised to sum to 1. The median
  ignores the incident hours (fewer than a third of them). `processing` occurs only
  inside incidents in the reference data, so its median share is 0; every share is
  floored at MIX_FLOOR so a status always occurs now and then and an injected incident
  on it has something to multiply.
- The shape applies to the UTC time of day of the event time (the reference data
  carries no time zone).
"""

from __future__ import annotations

import numpy as np

from txmon.contracts import STATUSES

#: Relative volume per hour of day (00h..23h), peak hour = 1.0. See the module docstring.
HOURLY_SHAPE: tuple[float, ...] = (
    0.0154, 0.0060, 0.0032, 0.0020, 0.0014, 0.0097, 0.0643, 0.1788,
    0.3970, 0.6350, 0.7361, 0.7692, 0.6242, 0.5887, 0.6748, 0.7997,
    0.9071, 1.0000, 0.7099, 0.4379, 0.3225, 0.2429, 0.1621, 0.0911,
)  # fmt: skip

#: Share of each status in normal traffic, before MIX_FLOOR and renormalisation.
STATUS_MIX_RAW: dict[str, float] = {
    "approved": 0.894863,
    "denied": 0.096922,
    "failed": 0.000047,
    "reversed": 0.005258,
    "backend_reversed": 0.001059,
    "refunded": 0.001851,
    "processing": 0.0,
}

MIX_FLOOR = 1e-5
#: Hours with fewer transactions than this are too noisy to say anything about the mix.
MIX_MIN_HOUR_TOTAL = 1000


def _mix(raw: dict[str, float]) -> np.ndarray:
    shares = np.array([max(raw[s], MIX_FLOOR) for s in STATUSES])
    return shares / shares.sum()


#: Status mix as an array aligned with STATUSES, sums to 1.
STATUS_MIX: np.ndarray = _mix(STATUS_MIX_RAW)

_HOURS = np.arange(-1, 25) + 0.5
_LEVELS = np.array((HOURLY_SHAPE[-1],) + HOURLY_SHAPE + (HOURLY_SHAPE[0],))


def shape_at(seconds_of_day: np.ndarray | float) -> np.ndarray:
    """Relative volume at a time of day (seconds since UTC midnight), peak 1.0.

    Linear between hour centres, wrapping at midnight, so the rate has no steps.
    """
    hours = (np.asarray(seconds_of_day, dtype=np.float64) % 86400.0) / 3600.0
    return np.interp(hours, _HOURS, _LEVELS)


def derive_hourly_shape(days) -> tuple[float, ...]:
    """The rule behind HOURLY_SHAPE. `days`: wide per-minute frames (replay.counts_frame)."""
    per_day = [d["approved"].groupby(d.index.hour).sum().reindex(range(24), fill_value=0)
               for d in days]
    top = np.maximum.reduce([p.to_numpy(dtype=float) for p in per_day])
    return tuple(float(x) for x in top / top.max())


def derive_status_mix(days) -> dict[str, float]:
    """The rule behind STATUS_MIX_RAW. `days`: wide per-minute frames (replay.counts_frame)."""
    import pandas as pd

    hours = pd.concat([d[list(STATUSES)].groupby(d.index.hour).sum() for d in days])
    hours = hours[hours.sum(axis=1) >= MIX_MIN_HOUR_TOTAL]
    median = hours.div(hours.sum(axis=1), axis=0).median()
    median = median / median.sum()
    return {s: float(median[s]) for s in STATUSES}
