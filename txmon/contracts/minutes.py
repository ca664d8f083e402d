"""One-minute windows as every component names and measures them.

Times are integer milliseconds since the epoch (UTC): exact, cheap, and JSON-friendly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from txmon.contracts.statuses import STATUSES

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MINUTES_PER_DAY = DAY_MS // MINUTE_MS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
#: Event times outside [EARLIEST, LATEST) are not transactions (a unit mix-up, a typo'd
#: year): they are dead-lettered, never counted.
EARLIEST = EPOCH
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

_MINUTE = "%Y-%m-%dT%H:%M"


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def to_ms(ts: datetime) -> int:
    """Exact milliseconds of an aware datetime (float seconds would round): timedelta
    floor division is integer arithmetic on microseconds, in C (the hot path)."""
    return (ts - EPOCH) // ONE_MS


def minute_id(ms: int) -> str:
    """A minute's id in records: `2025-07-12T13:45Z`, as the prototype named minutes.

    Window-count ids, incident ids and alert ids are built from it, and consumers
    deduplicate by them: changing it would make every replayed minute look new."""
    return to_datetime(ms).strftime(_MINUTE + "Z")


def minute_key(ts: datetime) -> str:
    """A minute as the HTTP API shows it and takes it (`since=`): `2025-07-12T13:45`,
    the prototype's format, without the zone (UTC). Its users parse it as it is."""
    return ts.strftime(_MINUTE)


#: A window's count vector on the wire is the statuses, then the late events: this slot.
LATE_SLOT = len(STATUSES)


class MinuteCounts(NamedTuple):
    """A closed minute's counts: per status (STATUSES order) and the late events
    charged to it, which are not transactions of the minute.

    On the wire and in stored state a window is one list, the statuses then the late
    count (`WindowPartial.windows`); `of` reads that list, so the layout stays in here."""

    statuses: list[int]
    late: int = 0

    @classmethod
    def of(cls, slots: list[int]) -> MinuteCounts:
        return cls(list(slots[:LATE_SLOT]), slots[LATE_SLOT] if len(slots) > LATE_SLOT else 0)
