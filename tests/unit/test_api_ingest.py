"""POST /transactions' batch rules, without HTTP or Kafka: what a record is, which index it
has, and that each is judged exactly as the processor judges the transactions topic."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from api.ingest import (
    DECODE_AT_ONCE,
    BadBatch,
    TooManyRecords,
    UnsupportedMediaType,
    count_elements,
    judge,
    media_type,
    split,
)
from txmon.contracts import DeadLetterReason, decode_transaction
from txmon.contracts.events import InvalidTransaction

NDJSON = "application/x-ndjson"


def tx(i: int, **extra) -> bytes:
    return json.dumps({"id": f"t{i}", "status": "approved",
                       "timestamp": "2026-03-02T16:00:00Z", **extra}).encode()


def test_ndjson_records_are_non_blank_lines_indexed_as_records():
    body = b"\n" + tx(0) + b"\r\n\n   \n" + tx(1) + b"\n" + tx(2)  # no final newline
    assert split(body, NDJSON, 10) == [tx(0), tx(1), tx(2)]
    assert split(b"", NDJSON, 10) == [] and split(b"\n\n", NDJSON, 10) == []
    assert split(b' {"id": 1 \r\n', NDJSON, 10) == [b' {"id": 1 ']  # as sent


def test_array_records_are_its_elements_as_sent():
    body = b' [ {"id": "a" , "x": [1, 2]} ,5,\n"s"] '
    assert split(body, "application/json; charset=utf-8", 10) == [
        b'{"id": "a" , "x": [1, 2]}', b"5", b'"s"']
    assert split(b"[]", "application/json", 10) == []


@pytest.mark.parametrize("body", [b'{"id": "a"}', b"5", b"", b'[{"id": 1}', b"[1,]"])
def test_a_body_that_is_not_an_array_is_refused_whole(body):
    with pytest.raises(BadBatch):
        split(body, "application/json", 10)


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/xml"])
def test_other_content_types_are_refused(content_type):
    with pytest.raises(UnsupportedMediaType):
        split(b"[]", content_type, 10)


def test_the_record_limit_counts_records_not_lines():
    assert len(split(b"\n".join([tx(0)] * 3) + b"\n\n\n", NDJSON, 3)) == 3
    with pytest.raises(TooManyRecords):
        split(b"\n".join([tx(0)] * 4), NDJSON, 3)
    with pytest.raises(TooManyRecords):
        split(b"[1,2,3,4]", "application/json", 3)
    # Many tiny lines: refused without building them all (counted up to one over).
    assert len(split(b"\n".join([tx(0)] * 3) + b"\n \r\n\n" * 10, NDJSON, 3)) == 3
    with pytest.raises(TooManyRecords, match="more than 100000 records"):
        split(b"1\n" * 8_000_000, NDJSON, 100_000)


def test_media_type_ignores_parameters_and_case():
    assert media_type("Application/X-NDJSON ; charset=utf-8") == NDJSON
    assert media_type(None) == ""


def test_each_record_is_judged_as_the_processor_does():
    records = [
        tx(0),
        tx(1, terminal_id="T-9", amount=12.5),
        b'{"id": "t2", "status": "approved"',  # malformed
        b'{"status": "approved", "timestamp": "2026-03-02T16:00:00Z"}',  # no id
        tx(4, status="stolen"),
        tx(5, timestamp="yesterday"),
        tx(6, timestamp="1900-01-01T00:00:00"),
        tx(7, terminal_id="x" * 5000),
        b"5",
        tx(9, timestamp="2026-03-02T18:00:00+02:00"),
    ]
    verdict = judge(records)
    assert verdict.accepted == [(b"t0", tx(0)), (b"T-9", records[1]), (b"t9", records[9])]
    assert [(r.index, r.reason) for r in verdict.rejected] == [
        (2, DeadLetterReason.MALFORMED_JSON), (3, DeadLetterReason.MISSING_FIELD),
        (4, DeadLetterReason.UNKNOWN_STATUS), (5, DeadLetterReason.BAD_TIMESTAMP),
        (6, DeadLetterReason.BAD_TIMESTAMP), (7, DeadLetterReason.OVERSIZED),
        (8, DeadLetterReason.INVALID_FIELD)]
    assert [r.payload for r in verdict.rejected] == [records[i] for i in (2, 3, 4, 5, 6, 7, 8)]
    assert verdict.total == len(records)
    for r in verdict.rejected:  # the same reason and words the processor would give
        with pytest.raises(InvalidTransaction) as caught:
            decode_transaction(r.payload)
        assert (caught.value.reason, caught.value.detail) == (r.reason, r.detail)


MIB = 1024 * 1024
#: What splitting a 16 MiB body may cost: decoding 8 million tiny elements first cost
#: 473 MB (a view of ~56 bytes each), one re.sub over millions of strings about 1 GB.
PEAK_LIMIT = 64 * MIB


@pytest.mark.parametrize("element", [b"1", b'""', b'{"a":1,"b":[1,2]}'])
def test_an_array_of_millions_of_tiny_elements_is_refused_before_it_is_decoded(element):
    body = b"[" + b",".join([element] * (16 * MIB // (len(element) + 1))) + b"]"
    tracemalloc.start()
    try:
        with pytest.raises(TooManyRecords, match=r"^\d+ records > limit 100000$"):
            split(body, "application/json", 100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"{peak / MIB:.0f} MiB"


AWKWARD = [
    [],
    [1],
    ["a,b", "[", "]", "{", "}", ",,,", ""],
    ['say "hi", then [go]', "\\", "\\\"", 'ends with a backslash \\', "é,ü"],
    [{"a": [1, 2, {"b": "x,]"}], "c": {}}, [[], [[]], [1, [2, [3, "4,5"]]]], {}],
    [{"id": "t,0", "status": "approved", "nested": {"k": ["v", "w", {"z": "}{"}]}}] * 5,
    [[[[[[[[[[1, 2], 3], 4], 5], 6], 7], 8], 9], 10], [1, 2]],
]


@pytest.mark.parametrize("array", AWKWARD)
@pytest.mark.parametrize("indent", [None, 2])
def test_elements_are_counted_exactly_whatever_their_strings_and_nesting(array, indent):
    body = json.dumps(array, indent=indent).encode()
    assert count_elements(body) == len(array)
    assert count_elements(b" \n" + body + b"\n ") == len(array)


def test_counted_arrays_within_the_limit_are_split_as_before():
    commas = json.dumps(["," * 40, "x", {"a": [1, 2, 3], "b": "]]]"}]).encode()
    assert commas.count(b",") + 1 > DECODE_AT_ONCE * 3, "the counting path is taken"
    assert split(commas, "application/json", 3) == [
        json.dumps("," * 40).encode(), b'"x"', b'{"a": [1, 2, 3], "b": "]]]"}']
    with pytest.raises(TooManyRecords, match="^3 records > limit 2$"):
        split(commas, "application/json", 2)
    assert split(b"[" + b" " * 100 + b"]", "application/json", 0) == []


@pytest.mark.parametrize("body", [
    b'["' + b"," * 40 + b'" oops]',  # counted as one, then the decoder finds the error
    b'{"a": "' + b"," * 40 + b'"}',
    b"[" + b"[" * 5000 + b"]" * 5000 + b"]",  # deeper than msgspec goes: was a 500
    b"[" + b"[" * 100 + b"," * 40 + b"]" * 100 + b"]",
])
def test_malformed_bodies_within_the_limit_are_still_bad_batches(body):
    with pytest.raises(BadBatch):
        split(body, "application/json", 2)
