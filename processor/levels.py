"""How busy today is: the level every expected count of a minute is scaled by.

An outage removes volume, so a level that simply follows the last hour learns that
silence is normal: after three quarters of an hour of nothing the expectation is
nothing too, and the outage "ends" while it goes on. So the level learns only from
minutes an operator would call normal, and it has a memory longer than the last hour:

- **recent**: the last LEVEL_WINDOW minutes outside an incident (`learn`) are cut into
  LEVEL_BLOCKS blocks; the level is the LEVEL_QUANTILE quantile of the blocks' approvals
  over their usual count for those minutes of day. Above the median, so an outage not
  yet confirmed can cover three quarters of them before it lowers the level; blocks,
  not minutes, because at night a minute has one or two approvals and the quantile of
  such ratios is twice the truth.
- **carried**: when incidents cover all of the recent minutes (an outage of hours), the
  level of the latest hour that had HOUR_MIN_MINUTES normal minutes.
- **today**: the median level of today's earlier hours (TODAY_HOURS of them). Volume
  is never expected above it: when a surge ends, traffic falls back to what the day
  had before, which is no outage although it is a fraction of the last hour.
- **days**: the same hour on the previous days (yesterday, last week), the median of
  their levels: what the checkout analysis compares today with. Volume is never
  expected below DAYS_FLOOR times it, so a dwindle slow enough for the recent level to
  follow it down still shows against yesterday.

`hours` is the memory: per UTC hour (its start in ms), the approvals and the number of
normal minutes in it, for the last HISTORY_DAYS days; a few hundred integers, kept in
the merge stage's state.
"""

from __future__ import annotations

import numpy as np

from txmon.contracts.minutes import DAY_MS, MINUTE_MS

#: Minutes of recent history the level is read from, and how many it needs.
LEVEL_WINDOW = 60
LEVEL_MIN_MINUTES = 3
#: Above the median: see the module docstring.
LEVEL_QUANTILE = 0.75
LEVEL_BLOCKS = 6
#: Today's earlier hours that bound the volume expected (see `today_level`).
TODAY_HOURS = 6
HOUR_MS = 60 * MINUTE_MS
#: Days of hourly levels kept: a week back, plus today.
HISTORY_DAYS = 7
#: Normal minutes an hour needs before its level stands for the hour.
HOUR_MIN_MINUTES = 20
#: Volume is expected at no less than this share of the same hour on previous days: a
#: quiet day (a holiday at a third of the usual) is absorbed, a collapse is not.
DAYS_FLOOR = 0.3


def recent_level(usual: np.ndarray, recent: list[tuple[int, list[int]]], learn: list[bool],
                 approved: int) -> float | None:
    """The recent level from the normal minutes among `recent` (oldest first), None
    with fewer than LEVEL_MIN_MINUTES of them."""
    normal = [m for m, ok in zip(recent, learn, strict=True) if ok][-LEVEL_WINDOW:]
    counts = np.array([c[approved] for _, c in normal], dtype=np.float64)
    expected = np.array([usual[(s // MINUTE_MS) % len(usual)] for s, _ in normal])
    return block_level(counts, expected)


def block_level(counts: np.ndarray, expected: np.ndarray) -> float | None:
    """LEVEL_QUANTILE of sum(counts) / sum(expected) over LEVEL_BLOCKS blocks (of one
    minute each when there are fewer minutes than blocks)."""
    use = expected > 0
    counts, expected = counts[use], expected[use]
    if len(counts) < LEVEL_MIN_MINUTES:
        return None
    size = max(1, len(counts) // LEVEL_BLOCKS)
    ends = range(len(counts), size - 1, -size)
    r = [counts[e - size:e].sum() / expected[e - size:e].sum() for e in ends]
    return float(np.quantile(r, LEVEL_QUANTILE))


def hour_level(usual: np.ndarray, hours: dict[int, list[int]], hour: int) -> float | None:
    """The level of one hour in `hours`, None when it had too few normal minutes."""
    entry = hours.get(hour)
    if entry is None or entry[1] < HOUR_MIN_MINUTES:
        return None
    first = (hour // MINUTE_MS) % len(usual)
    mean_usual = float(np.mean(usual[first:first + 60]))
    return entry[0] / (entry[1] * mean_usual) if mean_usual > 0 else None


def carried_level(usual: np.ndarray, hours: dict[int, list[int]], before_ms: int
                  ) -> float | None:
    """The level of the latest hour before `before_ms` that had enough normal minutes."""
    for hour in sorted((h for h in hours if h < before_ms), reverse=True):
        level = hour_level(usual, hours, hour)
        if level is not None:
            return level
    return None


def days_level(usual: np.ndarray, hours: dict[int, list[int]], start_ms: int) -> float | None:
    """Median level of this minute's hour on the previous HISTORY_DAYS days."""
    hour = start_ms - start_ms % HOUR_MS
    levels = [lv for d in range(1, HISTORY_DAYS + 1)
              if (lv := hour_level(usual, hours, hour - d * DAY_MS)) is not None]
    return float(np.median(levels)) if levels else None


def today_level(usual: np.ndarray, hours: dict[int, list[int]], start_ms: int
                ) -> float | None:
    """Median level of the TODAY_HOURS hours before this minute's, None without any."""
    hour = start_ms - start_ms % HOUR_MS
    levels = [lv for h in range(1, TODAY_HOURS + 1)
              if (lv := hour_level(usual, hours, hour - h * HOUR_MS)) is not None]
    return float(np.median(levels)) if levels else None


def volume_reference(usual: np.ndarray, hours: dict[int, list[int]] | None, start_ms: int,
                     level: float) -> float:
    """The level all traffic is expected at: the recent `level`, no higher than today's
    earlier hours, no lower than DAYS_FLOOR times the previous days (module docstring)."""
    if not hours:
        return level
    today = today_level(usual, hours, start_ms)
    if today is not None:
        level = min(level, today)
    days = days_level(usual, hours, start_ms)
    return level if days is None else max(level, DAYS_FLOOR * days)


def record(hours: dict[int, list[int]], start_ms: int, approved: int) -> None:
    """Count one normal minute into its hour; forget hours older than HISTORY_DAYS."""
    hour = start_ms - start_ms % HOUR_MS
    entry = hours.setdefault(hour, [0, 0])
    entry[0] += approved
    entry[1] += 1
    if len(hours) > (HISTORY_DAYS + 1) * 24:
        oldest = hour - (HISTORY_DAYS + 1) * DAY_MS + HOUR_MS
        for h in [h for h in hours if h < oldest]:
            del hours[h]
