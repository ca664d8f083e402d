"""Wire bytes to what a window needs: event time (ms), status index and terminal,
validated.

The counting loop runs this once per transaction, so it has a fast path for the form
producers write (`2026-03-02T16:00:00.123Z`, or without the milliseconds): the record is
decoded with the timestamp as a string, and its time is two table lookups, the second
(a `YYYY-MM-DDTHH:MM:SS` prefix, learnt from the first record of each second) and the
milliseconds (`.mmmZ`). Parsing a datetime and converting it to epoch milliseconds cost
more than the rest of the counting together (bench/README.md); so did one table of all
61,000 `:SS.mmmZ` forms, whose random access missed the CPU caches.

Everything off the fast path (another zone offset, microseconds, a bad record) goes
through `decode_transaction`, the one validation every component shares, so a record is
accepted, or dead-lettered with the same reason, whichever path it takes. The fast path
only accepts what that validation accepts: a second enters the table only after a full
decode of a record with that prefix succeeded, and any valid second with any
milliseconds is a valid time inside [EARLIEST, LATEST), both whole seconds.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from txmon.contracts import STATUS_INDEX
from txmon.contracts.events import (
    MAX_TRANSACTION_BYTES,
    DeadLetterReason,
    InvalidTransaction,
    decode_transaction,
)
from txmon.contracts.minutes import to_datetime, to_ms
from txmon.contracts.statuses import Status

__all__ = ["EventParser", "Parsed"]

#: `HH:MM:SS` ends here; the rest of a canonical timestamp is `.mmmZ` or `Z`.
_PREFIX = len("2026-03-02T16:00:00")
_MILLIS: dict[str, int] = {**{f".{ms:03d}Z": ms for ms in range(1000)}, "Z": 0}
#: Seconds remembered at most (a day is 86,400): bad data spread over years cannot grow it.
_MAX_SECONDS = 200_000


class _Wire(msgspec.Struct):
    """`Transaction` with the timestamp left as text: same fields, same checks."""

    id: str
    status: Status
    timestamp: str
    amount: float | None = None
    terminal_id: str | None = None


class Parsed(NamedTuple):
    times: list[int]
    statuses: list[int]
    terminals: list[str | None]
    rejected: list[tuple[int, InvalidTransaction]]


class EventParser:
    """Parses a partition's values into event times and status indices, in order."""

    def __init__(self, max_future_ms: int, max_bytes: int = MAX_TRANSACTION_BYTES):
        self.max_future_ms = max_future_ms
        self.max_bytes = max_bytes
        self.seconds: dict[str, int] = {}
        self._decode = msgspec.json.Decoder(_Wire).decode

    def parse_many(self, values: list, now_ms: int) -> Parsed:
        """The valid events in order (times, statuses, terminals), and the position in
        `values` of every rejected one with why."""
        times: list[int] = []
        statuses: list[int] = []
        terminals: list[str | None] = []
        rejected: list[tuple[int, InvalidTransaction]] = []
        add_time, add_status, add_terminal = times.append, statuses.append, terminals.append
        decode, seconds, millis, index = self._decode, self.seconds, _MILLIS, STATUS_INDEX
        limit, future = self.max_bytes, now_ms + self.max_future_ms
        for value in values:
            try:
                if len(value) > limit:  # None: TypeError, the slow path says why
                    raise ValueError
                wire = decode(value)
                ts = wire.timestamp
                ts_ms = seconds[ts[:_PREFIX]] + millis[ts[_PREFIX:]]
                status = index[wire.status]
                terminal = wire.terminal_id
            except (msgspec.DecodeError, KeyError, ValueError, TypeError):
                try:
                    ts_ms, status, terminal = self.parse_one(value)
                except InvalidTransaction as exc:
                    rejected.append((len(times) + len(rejected), exc))
                    continue
            if ts_ms > future:
                rejected.append((len(times) + len(rejected), self._future(ts_ms)))
                continue
            add_time(ts_ms)
            add_status(status)
            add_terminal(terminal)
        return Parsed(times, statuses, terminals, rejected)

    def parse_one(self, value: bytes | None) -> tuple[int, int, str | None]:
        """The full validation; learns the record's second for the fast path."""
        if value is None:
            raise InvalidTransaction(DeadLetterReason.MALFORMED_JSON, "empty value")
        tx = decode_transaction(value, self.max_bytes)
        ts_ms = to_ms(tx.timestamp)
        self._learn(value, ts_ms)
        return ts_ms, STATUS_INDEX[tx.status], tx.terminal_id

    def _learn(self, value: bytes, ts_ms: int) -> None:
        try:
            text = self._decode(value).timestamp
        except msgspec.DecodeError:
            return
        millis = _MILLIS.get(text[_PREFIX:])
        if millis is None or (ts_ms - millis) % 1000:
            return  # another form (an offset, microseconds): the slow path stays
        if len(self.seconds) >= _MAX_SECONDS:
            self.seconds.clear()
        self.seconds[text[:_PREFIX]] = ts_ms - millis

    def _future(self, ts_ms: int) -> InvalidTransaction:
        return InvalidTransaction(
            DeadLetterReason.FUTURE,
            f"{to_datetime(ts_ms).isoformat()} is more than "
            f"{self.max_future_ms / 1000:g}s ahead of the clock")
