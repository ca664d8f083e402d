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
    """The elements' own bytes. msgspec has to build the whole list before its length is
    known, so the record limit is checked on the views, before any is copied."""
    try:
        elements = _array.decode(body)
    except msgspec.ValidationError as exc:
        raise BadBatch(f"not a JSON array of transactions: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadBatch(f"malformed JSON: {exc}") from None
    if len(elements) > max_records:
        raise TooManyRecords(f"{len(elements)} records > limit {max_records}")
    return [bytes(e) for e in elements]


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
