"""A batch body split into records and each record judged, for POST /transactions.

Pure logic: no FastAPI, no Kafka, so the rules (what counts as a record, which index it
has, why it is refused) are tested without either. A record is judged by
`decode_transaction`, the very function the processor applies to the transactions topic,
so whatever the API accepts the processor counts, and whatever it refuses carries the
reason the processor would have dead-lettered it with.

Accepted records keep their original bytes: they decoded, so the processor decodes them
identically, and publishing them as sent costs no re-encoding (the batch path's budget is
a few microseconds a record) while keeping what the acquirer sent, byte for byte.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec

from txmon.contracts import DeadLetterReason, decode_transaction, message_key
from txmon.contracts.events import InvalidTransaction

#: Media types read as a JSON array, and as one JSON record per line.
ARRAY_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines"})

_array = msgspec.json.Decoder(list[msgspec.Raw])

#: An array is decoded at once only while its commas allow at most this many times the
#: record limit of elements. msgspec builds the whole list (a view of ~56 bytes an
#: element) before its length is known, so this bounds that list to DECODE_AT_ONCE *
#: max_records views (45 MB at the 100,000 default) whatever the body; a full batch of
#: real transactions (a comma between fields and one between records: 3 to 6 a record)
#: stays under it and pays for no count. Above it the elements are counted first.
DECODE_AT_ONCE = 8

#: A JSON string once its escapes are gone (`_unescaped`); an unterminated one runs to the
#: end instead of being retried from every later quote (quadratic).
_STRING = re.compile(rb'"[^"]*+"?')
#: An object or array holding no other: collapsed to one value, innermost first.
_FLAT = re.compile(rb"\{[^{}\[\]]*+\}|\[[^{}\[\]]*+\]")
_CLOSE = re.compile(rb"[}\]]")
#: Collapse passes before giving up on deeper nesting (no transaction is nested at all).
MAX_NESTING = 64
#: Bytes one regex pass is given at a time: re.sub keeps every piece of its result
#: (~100 bytes a match) until it joins them, so one pass over millions of tiny strings
#: or objects would cost what counting them is there to avoid.
PASS_BYTES = 64 * 1024


class Unreadable(ValueError):
    """The batch as a whole is refused: no record of it is judged."""


class BadBatch(Unreadable):
    """The body cannot be split into records (not JSON, not an array)."""


class UnsupportedMediaType(Unreadable):
    """A content type that is neither an array nor NDJSON."""


class TooManyRecords(Unreadable):
    """More records than one request may carry."""


@dataclass
class Rejected:
    index: int
    reason: DeadLetterReason
    detail: str
    payload: bytes


@dataclass
class Verdict:
    """The batch judged: (key, value) of each accepted record, and the refused ones with
    their index in the batch."""

    accepted: list[tuple[bytes, bytes]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.accepted) + len(self.rejected)


def media_type(content_type: str | None) -> str:
    """`application/x-ndjson; charset=utf-8` -> `application/x-ndjson`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def split(body: bytes, content_type: str | None, max_records: int) -> list[bytes]:
    """The records of a body, in order. An NDJSON record is a non-blank line, so its index
    counts records, not lines; an array's record is an element. A body that is not JSON
    or not an array is one error for the whole batch: its records cannot be told apart."""
    kind = media_type(content_type)
    if kind in NDJSON_TYPES:
        return _lines(body, max_records)
    if kind in ARRAY_TYPES:
        return _split_array(body, max_records)
    raise UnsupportedMediaType(
        f"content type {kind or 'missing'!r}: send application/json (an array of "
        "transactions) or application/x-ndjson (one transaction a line)")


def _lines(body: bytes, max_records: int) -> list[bytes]:
    """Lines as sent, without their line ending: a dead letter keeps the record's own
    bytes, spaces included. A body of many tiny lines is refused before it becomes
    millions of objects: the lines are counted lazily, up to one over the limit."""
    if body.count(b"\n") >= max_records:
        nonblank = (line for line in _each_line(body) if line.strip())
        if next(itertools.islice(nonblank, max_records, None), None) is not None:
            raise TooManyRecords(f"more than {max_records} records")
    records = []
    for line in body.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line and not line.isspace():
            records.append(line)
    return records


def _each_line(body: bytes) -> Iterator[bytes]:
    start = 0
    while (end := body.find(b"\n", start)) >= 0:
        yield body[start:end]
        start = end + 1
    yield body[start:]


def _split_array(body: bytes, max_records: int) -> list[bytes]:
    """The elements' own bytes. A body whose commas allow many more elements than the
    limit has them counted first (`count_elements`), so that an array of millions of
    tiny elements is refused without building them; otherwise the limit is checked on
    msgspec's views, before any is copied."""
    if body.count(b",") + 1 > DECODE_AT_ONCE * max_records:
        count = count_elements(body)
        if count > max_records:
            raise TooManyRecords(f"{count} records > limit {max_records}")
    try:
        elements = _array.decode(body)
    except msgspec.ValidationError as exc:
        raise BadBatch(f"not a JSON array of transactions: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadBatch(f"malformed JSON: {exc}") from None
    except RecursionError:  # msgspec's own limit on nesting, even in skipped elements
        raise BadBatch("malformed JSON: nested too deeply") from None
    if len(elements) > max_records:
        raise TooManyRecords(f"{len(elements)} records > limit {max_records}")
    return [bytes(e) for e in elements]


def count_elements(body: bytes) -> int:
    """The top-level elements of a JSON array, counted without decoding it: strings
    emptied (their commas and brackets are not structure), then nested objects and
    arrays collapsed to one value, innermost first, then the commas left counted. Each
    step is C-speed regex passes, and the memory a few copies of the body.

    Exact for valid JSON nested up to MAX_NESTING levels; deeper, the commas still
    inside count too (an upper bound). For malformed JSON it is an estimate: the decode
    that follows, when within the limit, says what is wrong."""
    flat = body.strip()
    flat = flat[flat.startswith(b"["):len(flat) - flat.endswith(b"]")]
    flat, _ = _in_pieces(_STRING, b'""', _unescaped(flat), _outside_strings)
    for _ in range(MAX_NESTING):
        flat, found = _in_pieces(_FLAT, b"0", flat, _after_close)
        if not found:
            break
    return flat.count(b",") + 1 if flat.strip() else 0


def _unescaped(data: bytes) -> bytes:
    """Escaped backslashes, then escaped quotes, dropped: a run of backslashes pairs from
    its start, as JSON reads it, so no quote left is escaped and quotes alternate."""
    return data.replace(b"\\\\", b"").replace(b'\\"', b"")


def _outside_strings(data: bytes, start: int, cut: int) -> int:
    """`cut`, or past the string it falls in (`start` is outside strings)."""
    if data.count(b'"', start, cut) % 2 == 0:
        return cut
    end = data.find(b'"', cut)
    return len(data) if end < 0 else end + 1


def _after_close(data: bytes, start: int, cut: int) -> int:
    """Just after the next closing bracket: never inside a flat object or array."""
    found = _CLOSE.search(data, cut)
    return len(data) if found is None else found.end()


def _in_pieces(pattern: re.Pattern, repl: bytes, data: bytes, safe_cut) -> tuple[bytes, int]:
    """`pattern.subn` a piece of about PASS_BYTES at a time, cut where no match can
    straddle the cut; a piece without a match is kept as a view, not copied."""
    view, pieces, found, start = memoryview(data), [], 0, 0
    while start < len(data):
        end = safe_cut(data, start, min(start + PASS_BYTES, len(data)))
        piece, n = pattern.subn(repl, data[start:end])  # the whole data is not copied
        pieces.append(piece if n else view[start:end])
        found, start = found + n, end
    return (b"".join(pieces), found) if found else (data, 0)


def judge(records: list[bytes]) -> Verdict:
    """Each record decoded as the processor decodes it; the key is the one every source
    uses (`message_key`), so a terminal's events stay in one partition, in order."""
    verdict = Verdict()
    accept, reject = verdict.accepted.append, verdict.rejected.append
    for index, record in enumerate(records):
        try:
            accept((message_key(decode_transaction(record)), record))
        except InvalidTransaction as bad:
            reject(Rejected(index, bad.reason, bad.detail, record))
    return verdict
