"""Transactions to wire bytes, vectorised: whole batches are laid out in a numpy byte grid.

The simulator and replay send hundreds of thousands of events a second; building a
msgspec struct, or even formatting a string, per event costs more than sending it
(profiled: ~1.7 µs/event for per-event formatting). Here a batch is a (events × bytes)
uint8 grid: a template row holds the constant JSON, and each variable field is written
column-wise in one gather from a small table: the timestamp's date and time per distinct
second, its milliseconds from a 1,000-entry table, digits four at a time from a
10,000-entry table, the status (variable length, last, NUL-padded) from a 7-entry table.
numpy's bytes conversion drops trailing NULs, so each value is exactly as long as it is.

The bytes are the JSON of a `Transaction` with fields in the order timestamp, id, status
(milliseconds, `Z`): `decode_transaction` reads them back (tested), and the key is the id,
which is what `message_key` gives a transaction without a terminal. Events with a
terminal carry `"terminal_id"` between the timestamp and the id (a fixed-width field
there keeps the id and the status at fixed columns, whatever the id format) and are keyed
by it, as `message_key` keys them: a terminal's events stay in one partition, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from txmon.contracts import STATUSES

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_QUADS = np.frombuffer(b"".join(b"%04d" % i for i in range(10000)), dtype="<u4")
_MILLIS = np.frombuffer(b"".join(b".%03d" % i for i in range(1000)), dtype="<u4")
_PAIRS = np.frombuffer(b"".join(b"%02d" % i for i in range(100)), dtype=np.uint8).reshape(-1, 2)


def _table(rows: list[bytes]) -> np.ndarray:
    width = max(len(r) for r in rows)
    return np.frombuffer(b"".join(r.ljust(width, b"\0") for r in rows), dtype=np.uint8).reshape(
        len(rows), width
    )


_STATUS_TAIL = _table([b'","status":"%b"}' % s.encode() for s in STATUSES])
_STATUS_ID_TAIL = _table([b'-%b","status":"%b"}' % (s.encode(), s.encode()) for s in STATUSES])
_STATUS_KEY_TAIL = _table([b"-" + s.encode() for s in STATUSES])


def gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Rows of a (k, w) uint8 table, as one fixed-size item copy per event: (n, w)."""
    w = table.shape[1]
    items = np.ascontiguousarray(table).view(f"V{w}").reshape(-1)
    return items[index].view(np.uint8).reshape(-1, w)


def digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits, shape (n, width); width a multiple of 4."""
    if width % 4:
        raise ValueError("width must be a multiple of 4")
    quads = width // 4
    out = np.empty((len(values), quads), dtype="<u4")
    v = np.asarray(values, dtype=np.int64)
    for col in range(quads - 1, -1, -1):
        out[:, col] = _QUADS[v % 10000]
        if col:
            v = v // 10000
    return out.view(np.uint8)


def hexdigits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded lower-case hex digits, shape (n, width)."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = np.asarray(values, dtype=np.int64)
    for col in range(width):
        out[:, width - 1 - col] = _HEX[(v >> (4 * col)) & 15]
    return out


def distinct(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value in them); linear when already sorted."""
    if len(values) > 1 and bool(np.all(values[1:] >= values[:-1])):
        step = values[1:] != values[:-1]
        return values[np.concatenate(([True], step))], np.concatenate(([0], np.cumsum(step)))
    unique, inverse = np.unique(values, return_inverse=True)
    return unique, inverse.reshape(-1)


def iso_seconds(epoch_seconds: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:MM:SS` for each of these (distinct) seconds, shape (n, 19).

    numpy's date formatter costs ~2 µs a call, so it formats each distinct minute once.
    """
    seconds = np.asarray(epoch_seconds, dtype=np.int64)
    minutes, row = distinct(seconds // 60)
    text = np.datetime_as_string((minutes * 60).astype("datetime64[s]"), unit="m")
    table = np.frombuffer(text.astype("S16").tobytes(), dtype=np.uint8).reshape(-1, 16)
    out = np.empty((len(seconds), 19), dtype=np.uint8)
    out[:, :16] = table[row]
    out[:, 16] = ord(":")
    out[:, 17:] = _PAIRS[seconds % 60]
    return out


_MINUTE_COLUMNS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]


@dataclass(frozen=True)
class IdFormat:
    """How ids are spelled: `prefix`, then a field of the event's second (`hex`: the epoch
    second in 8 hex digits; `minute`: YYYYMMDDHHMM; None: nothing) and `-`, then a number
    in `width` digits, then `-<status>` if `status_suffix`."""

    prefix: bytes
    per_second: str | None
    width: int = 8
    status_suffix: bool = False


def _second_fields(seconds: np.ndarray, iso: np.ndarray, kind: str | None) -> np.ndarray:
    if kind is None:
        return np.zeros((len(seconds), 0), dtype=np.uint8)
    body = hexdigits(seconds, 8) if kind == "hex" else iso[:, _MINUTE_COLUMNS]
    return np.hstack([body, np.full((len(seconds), 1), ord("-"), dtype=np.uint8)])


_HEAD = b'{"timestamp":"'
_MID = b'Z","id":"'
_WHO = b'Z","terminal_id":"'
_WHO_END = b'","id":"'


def _lead(prefix: bytes, terminal: np.ndarray | None) -> np.ndarray:
    """The bytes from the timestamp's `Z` to the id's second field: one row for all, or
    one per event with its terminal id."""
    if terminal is None:
        return np.frombuffer(_MID + prefix, dtype=np.uint8)
    n, width = terminal.shape
    out = np.empty((n, len(_WHO) + width + len(_WHO_END) + len(prefix)), dtype=np.uint8)
    out[:, : len(_WHO)] = np.frombuffer(_WHO, dtype=np.uint8)
    out[:, len(_WHO) : len(_WHO) + width] = terminal
    out[:, len(_WHO) + width :] = np.frombuffer(_WHO_END + prefix, dtype=np.uint8)
    return out


def encode_batch(
    ts_ms: np.ndarray,
    status: np.ndarray,
    number: np.ndarray,
    ids: IdFormat,
    terminal: np.ndarray | None = None,
) -> tuple[list[bytes], list[bytes]]:
    """(keys, values) for events at epoch milliseconds `ts_ms` with status indexes
    `status` and per-event id numbers `number` (see IdFormat); `terminal`, if given, is
    each event's terminal id as an (n, w) byte grid (`producer.terminals.id_grid`)."""
    n = len(ts_ms)
    if n == 0:
        return [], []
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    status = np.asarray(status, dtype=np.intp)
    seconds, row = distinct(ts_ms // 1000)
    iso = iso_seconds(seconds)
    field = _second_fields(seconds, iso, ids.per_second)
    tail = _STATUS_ID_TAIL if ids.status_suffix else _STATUS_TAIL
    lead = _lead(ids.prefix, terminal)

    ts_at = len(_HEAD)
    field_at = ts_at + 19 + 4 + lead.shape[-1]
    id_at = field_at - len(ids.prefix)
    number_at = field_at + field.shape[1]
    tail_at = number_at + ids.width
    grid = np.empty((n, tail_at + tail.shape[1]), dtype=np.uint8)
    grid[:, :ts_at] = np.frombuffer(_HEAD, dtype=np.uint8)
    grid[:, ts_at : ts_at + 19] = gather(iso, row)
    grid[:, ts_at + 19 : ts_at + 23] = _MILLIS[ts_ms % 1000].view(np.uint8).reshape(n, 4)
    grid[:, ts_at + 23 : field_at] = lead
    if field.shape[1]:
        grid[:, field_at:number_at] = gather(field, row)
    grid[:, number_at:tail_at] = digits(number, ids.width)
    grid[:, tail_at:] = gather(tail, status)
    if terminal is not None:
        return _to_bytes(np.ascontiguousarray(terminal)), _to_bytes(grid)
    return _to_bytes(_id_keys(grid[:, id_at:tail_at], status, ids)), _to_bytes(grid)


def _id_keys(id_columns: np.ndarray, status: np.ndarray, ids: IdFormat) -> np.ndarray:
    if not ids.status_suffix:
        return np.ascontiguousarray(id_columns)
    n, width = id_columns.shape
    keys = np.empty((n, width + _STATUS_KEY_TAIL.shape[1]), dtype=np.uint8)
    keys[:, :width] = id_columns
    keys[:, width:] = gather(_STATUS_KEY_TAIL, status)
    return keys


def _to_bytes(grid: np.ndarray) -> list[bytes]:
    return grid.view(f"S{grid.shape[1]}").reshape(-1).tolist()
