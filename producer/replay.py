"""Reading recorded transactions: three CSV formats, parsed and validated, then expanded.

Formats, told apart by the header row (case-insensitive):

- reference  `time,status,F1`: per-minute counts, time `HHh MM`, no date (the date comes
  from the caller; DEFAULT_DATE otherwise). The format of ../shared/data/cloudwalk.
- iso-counts `timestamp,status,count`: per-minute counts; the timestamp is ISO 8601 on a
  minute boundary (`2026-03-02T14:35`, `...:00Z`, `...+00:00`; no zone means UTC).
- transactions `timestamp,status[,id][,amount][,terminal_id]`: one transaction a row,
  replayed in file order (disorder included: it is part of the recording).

Per-minute rows for the same minute and status add up (as a pivot with sum would). Blank
lines are ignored. Anything else that is not a valid row is a `BadRow` with its line
number: `parse` reports them all (`FILE:LINE: reason`, the first MAX_BAD_SHOWN of them)
or, with `skip_bad`, collects them.

Public API for the notebooks and tests: `read_counts(path, date)` yields
(minute start, status, count) and `counts_frame(path, date)` gives the per-minute table;
both read through the same parser the replay command sends from.

Expansion (`batches`): a count n in a minute becomes n transactions at evenly spaced
milliseconds `(2i + 1) × 60000 // 2n`, i = 0..n-1, with ids
`<file stem>-<YYYYMMDDHHMM>-<i, 8 digits>-<status>`: no randomness, so replaying a file
twice yields the same transactions, ids included, and each minute's count is exact.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from producer.encode import IdFormat, encode_batch
from txmon.contracts import STATUS_INDEX, STATUSES, Transaction, encode, message_key
from txmon.contracts.minutes import EARLIEST, LATEST, MINUTE_MS, ONE_MS
from txmon.errors import UserError

#: The date given to reference-format files (which have none) unless told otherwise.
DEFAULT_DATE = date(2026, 3, 2)
#: A count above this in one row is not believable (and would overflow the id's rank).
MAX_COUNT = 9_999_999
BATCH_EVENTS = 50_000

REFERENCE, ISO_COUNTS, TRANSACTIONS = "reference", "iso-counts", "transactions"
_TIME = re.compile(r"^(\d{2})h (\d{2})$")
_TX_OPTIONAL = ("id", "amount", "terminal_id")


@dataclass(frozen=True)
class BadRow:
    path: str
    line: int
    reason: str
    raw: bytes

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


#: A file with more bad rows than this lists the first ones and their count: enough to
#: see the pattern (a misspelt status, a shifted column) without drowning the terminal.
MAX_BAD_SHOWN = 20


class MalformedFile(UserError):
    """A file that cannot be replayed as it is: `FILE:LINE: reason` for one bad row; for
    several, their count and the first MAX_BAD_SHOWN, one per line, so that a user fixes
    them in one pass rather than one run per row."""

    def __init__(self, rows: list[BadRow]):
        self.rows = rows
        self.bad = rows[0]
        if len(rows) == 1:
            super().__init__(str(rows[0]))
            return
        shown = rows[:MAX_BAD_SHOWN]
        head = (f"{rows[0].path}: {len(rows)} bad rows"
                + (f", the first {len(shown)}" if len(shown) < len(rows) else "") + ":")
        super().__init__("\n".join([head, *(f"  {b}" for b in shown),
                                    "fix them, or replay with --skip-bad to send them to "
                                    "the dead-letter topic"]))


@dataclass
class ParsedFile:
    """A validated file. Count formats: `minute` (epoch seconds), `status`, `count`, sorted
    by minute then status, duplicates summed. Transactions: `ts_ms`, `status`, `line` in
    file order, plus `ids`/`amounts`/`terminals` when the file has those columns."""

    path: Path
    format: str
    date: date | None
    minute: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    status: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ts_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    line: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ids: list[str] | None = None
    amounts: list[float | None] | None = None
    terminals: list[str | None] | None = None
    bad: list[BadRow] = field(default_factory=list)

    @property
    def is_counts(self) -> bool:
        return self.format != TRANSACTIONS

    @property
    def events(self) -> int:
        return int(self.count.sum()) if self.is_counts else len(self.ts_ms)

    def totals(self) -> dict[str, int]:
        if self.is_counts:
            sums = np.bincount(self.status, weights=self.count, minlength=len(STATUSES))
        else:
            sums = np.bincount(self.status, minlength=len(STATUSES))
        return {s: int(sums[i]) for i, s in enumerate(STATUSES)}

    @property
    def stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.path.stem) or "file"


def detect_format(header: list[str]) -> str | None:
    names = [h.strip().lower() for h in header]
    if names == ["time", "status", "f1"]:
        return REFERENCE
    if names == ["timestamp", "status", "count"]:
        return ISO_COUNTS
    if names[:2] == ["timestamp", "status"] and len(set(names)) == len(names) and all(
        n in _TX_OPTIONAL for n in names[2:]
    ):
        return TRANSACTIONS
    return None


def _parse_timestamp(text: str) -> datetime:
    ts = datetime.fromisoformat(text.strip())
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not EARLIEST <= ts < LATEST:
        raise ValueError(f"timestamp out of range: {text.strip()}")
    return ts


def _fields(text: str) -> list[str]:
    return next(csv.reader([text])) if '"' in text else text.split(",")


def parse(path: str | Path, day: date | None = None, *, skip_bad: bool = False) -> ParsedFile:
    """Read and validate a whole file. Raises MalformedFile listing the bad rows unless
    `skip_bad`, when bad rows are collected in `.bad` and the good ones kept."""
    path = Path(path)
    lines = _read_lines(path)
    fmt, names = _header(path, lines[0])
    parsed = ParsedFile(path, fmt, (day or DEFAULT_DATE) if fmt == REFERENCE else None)
    rows = _Rows(fmt, names, parsed.date)
    for number, raw in enumerate(lines[1:], start=2):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            rows.add(raw, number)
        except ValueError as exc:
            parsed.bad.append(BadRow(str(path), number, str(exc), raw))
    if parsed.bad and not skip_bad:
        raise MalformedFile(parsed.bad)
    rows.fill(parsed)
    return parsed


def _read_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    if data.startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    return lines


def _header(path: Path, first: bytes) -> tuple[str, list[str]]:
    header = first.rstrip(b"\r").decode("utf-8", "replace")
    fmt = detect_format(_fields(header)) if header.strip() else None
    if fmt is None:
        raise UserError(
            f"{path}:1: unrecognised header {header.strip()!r}: expected time,status,F1 or "
            "timestamp,status,count or timestamp,status[,id,amount,terminal_id]"
        )
    return fmt, [h.strip().lower() for h in _fields(header)]


def _row_timestamp(text: str) -> datetime:
    try:
        return _parse_timestamp(text)
    except ValueError as exc:
        raise ValueError(f"bad timestamp {text.strip()!r}: {exc}") from None


class _Rows:
    """The good rows of one file so far, column by column: a bad row raises ValueError
    before anything of it is kept."""

    def __init__(self, fmt: str, names: list[str], day: date | None):
        self.fmt, self.names = fmt, names
        self.midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) \
            if day else 0
        self.minutes: list[int] = []
        self.times: list[int] = []
        self.statuses: list[int] = []
        self.counts: list[int] = []
        self.lines: list[int] = []
        self.extra: dict[str, list] = {n: [] for n in names[2:]}

    def add(self, raw: bytes, number: int) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None
        row = _fields(text)
        if len(row) != len(self.names):
            raise ValueError(f"expected {len(self.names)} fields, got {len(row)}")
        status = STATUS_INDEX.get(row[1].strip())
        if status is None:
            raise ValueError(f"unknown status {row[1].strip()!r}")
        if self.fmt == TRANSACTIONS:
            self._transaction(row)
        else:
            self._count(row)
        self.statuses.append(status)
        self.lines.append(number)

    def _transaction(self, row: list[str]) -> None:
        ts = _row_timestamp(row[0])
        values: dict[str, object] = dict(zip(self.names[2:], row[2:], strict=True))
        if "id" in values and not values["id"].strip():
            raise ValueError("empty id")
        if values.get("amount", "").strip():
            values["amount"] = _amount(values["amount"])
        for name, column in self.extra.items():
            value = values[name]
            column.append((value.strip() or None) if isinstance(value, str) else value)
        self.times.append((ts - EARLIEST) // ONE_MS)

    def _count(self, row: list[str]) -> None:
        minute = self._reference_minute(row[0]) if self.fmt == REFERENCE \
            else _iso_minute(row[0])
        text_count = row[2].strip()
        if not text_count.isdigit():
            raise ValueError(f"bad count {text_count!r}: expected an integer >= 0")
        count = int(text_count)
        if count > MAX_COUNT:
            raise ValueError(f"count {count} above {MAX_COUNT}")
        self.minutes.append(minute)
        self.counts.append(count)

    def _reference_minute(self, text: str) -> int:
        match = _TIME.match(text.strip())
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValueError(f"bad time {text.strip()!r}: expected HHh MM")
        return self.midnight + int(match[1]) * 3600 + int(match[2]) * 60

    def fill(self, parsed: ParsedFile) -> None:
        """Into `parsed`: transactions in file order; counts summed per minute and status
        (as a pivot with sum would) and sorted."""
        parsed.status = np.array(self.statuses, dtype=np.uint8)
        parsed.line = np.array(self.lines, dtype=np.int64)
        if self.fmt == TRANSACTIONS:
            parsed.ts_ms = np.array(self.times, dtype=np.int64)
            parsed.ids = self.extra.get("id")
            parsed.amounts = self.extra.get("amount")
            parsed.terminals = self.extra.get("terminal_id")
            return
        combined = np.array(self.minutes, dtype=np.int64) * len(STATUSES) + parsed.status
        keys, inverse = np.unique(combined, return_inverse=True)
        parsed.minute = keys // len(STATUSES)
        parsed.status = (keys % len(STATUSES)).astype(np.uint8)
        parsed.count = np.bincount(
            inverse.reshape(-1), weights=np.array(self.counts, dtype=np.float64),
            minlength=len(keys),
        ).astype(np.int64)


def _amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad amount {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"bad amount {text!r}")
    return value


def _iso_minute(text: str) -> int:
    ts = _row_timestamp(text)
    if ts.second or ts.microsecond:
        raise ValueError(f"timestamp {text.strip()!r} is not a minute start")
    return int(ts.timestamp())


def _minute_counts(parsed: ParsedFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if parsed.is_counts:
        return parsed.minute, parsed.status, parsed.count
    combined = (parsed.ts_ms // MINUTE_MS) * len(STATUSES) + parsed.status
    keys, count = np.unique(combined, return_counts=True)
    return (keys // len(STATUSES)) * 60, keys % len(STATUSES), count


def read_counts(path: str | Path, date: date | None = None) -> Iterator[tuple[datetime, str, int]]:
    """(minute start UTC, status, count) for every minute and status with a count, in time
    order; a transactions file is counted per minute. Raises MalformedFile on a bad row."""
    minute, status, count = _minute_counts(parse(path, date))
    for m, s, c in zip(minute.tolist(), status.tolist(), count.tolist(), strict=True):
        if c:
            yield datetime.fromtimestamp(m, UTC), STATUSES[s], c


def counts_frame(path: str | Path, date: date | None = None, *, fill: bool = True):
    """Per-minute counts as a DataFrame: UTC minute index, one int64 column per status.

    With `fill`, every minute is present (zeros included): the whole day for a reference
    file, first to last minute otherwise; the file's missing minutes are its quiet ones.
    Raises MalformedFile on a bad row.
    """
    import pandas as pd

    parsed = parse(path, date)
    minute, status, count = _minute_counts(parsed)
    grid = np.zeros((len(np.unique(minute)), len(STATUSES)), dtype=np.int64)
    unique, row = np.unique(minute, return_inverse=True)
    np.add.at(grid, (row.reshape(-1), status.astype(np.intp)), count)
    index = pd.to_datetime(unique, unit="s", utc=True)
    wide = pd.DataFrame(grid, index=index, columns=list(STATUSES))
    if fill:
        if parsed.format == REFERENCE:
            start = pd.Timestamp(parsed.date.isoformat(), tz="UTC")
            full = pd.date_range(start, periods=1440, freq="min")
        elif len(wide):
            full = pd.date_range(wide.index.min(), wide.index.max(), freq="min")
        else:
            full = wide.index
        wide = wide.reindex(full, fill_value=0)
    wide.index.name = "minute"
    return wide.astype("int64")


@dataclass
class ReplayBatch:
    keys: list[bytes]
    values: list[bytes]
    ts_ms: np.ndarray
    status: np.ndarray


def expand_counts(parsed: ParsedFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ts_ms, status, rank) of every transaction the counts stand for, in time order."""
    count = parsed.count
    total = int(count.sum())
    row = np.repeat(np.arange(len(count)), count)
    rank = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    n = count[row]
    ts = parsed.minute[row] * 1000 + ((2 * rank + 1) * MINUTE_MS) // (2 * n)
    order = np.argsort(ts, kind="stable")
    return ts[order], parsed.status[row][order], rank[order]


def batches(parsed: ParsedFile, size: int = BATCH_EVENTS) -> Iterator[ReplayBatch]:
    """The file's transactions, encoded, in batches of `size` (time order for counts)."""
    stem = parsed.stem.encode()
    if parsed.is_counts:
        ts, status, rank = expand_counts(parsed)
        ids = IdFormat(prefix=stem + b"-", per_second="minute", width=8, status_suffix=True)
        for i in range(0, len(ts), size):
            t, s = ts[i : i + size], status[i : i + size]
            keys, values = encode_batch(t, s, rank[i : i + size], ids)
            yield ReplayBatch(keys, values, t, s)
        return
    line_ids = IdFormat(prefix=stem + b"-L", per_second=None, width=12)
    for i in range(0, len(parsed.ts_ms), size):
        t, s = parsed.ts_ms[i : i + size], parsed.status[i : i + size]
        lines = parsed.line[i : i + size]
        if parsed.ids is None and parsed.amounts is None and parsed.terminals is None:
            keys, values = encode_batch(t, s, lines, line_ids)
        else:
            keys, values = [], []
            for j in range(len(t)):
                k = i + j
                tx = Transaction(
                    id=parsed.ids[k] if parsed.ids else f"{parsed.stem}-L{int(lines[j]):012d}",
                    status=STATUSES[int(s[j])],
                    timestamp=datetime.fromtimestamp(int(t[j]) / 1000, UTC),
                    amount=parsed.amounts[k] if parsed.amounts else None,
                    terminal_id=parsed.terminals[k] if parsed.terminals else None,
                )
                keys.append(message_key(tx))
                values.append(encode(tx))
        yield ReplayBatch(keys, values, t, s)
