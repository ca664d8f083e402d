"""A dead letter keeps at most DEAD_LETTER_PAYLOAD_MAX bytes of its record, with the
record's size, whoever writes it (the API, stage 1, replay): a 750 KB record copied whole
made a dead letter over the producer's 1,000,000-byte limit, which the client refused
and the request answered with a 500. Dead letters written before the fields existed
still decode."""

from __future__ import annotations

import json
from types import SimpleNamespace

import msgspec
from support.stage1 import NAMES, T0, Rig, tx

from api import ingest
from api.batch import dead_letters
from producer.cli import _dead_letter_bad_rows
from producer.replay import BadRow
from txmon.contracts import DeadLetter, DeadLetterReason, encode
from txmon.contracts.events import DEAD_LETTER_PAYLOAD_MAX

#: librdkafka's default message.max.bytes: what a producer sends at most.
PRODUCER_MAX = 1_000_000
HUGE = b'{"id": "big", "status": "approved", "note": "' + b"x" * 750_000 + b'"}'
_read = msgspec.json.Decoder(DeadLetter)


def test_a_small_record_is_kept_whole_and_a_huge_one_cut_with_its_size():
    small = DeadLetter.of(b"\xff\xfe not utf-8", reason=DeadLetterReason.MALFORMED_JSON,
                          detail="d", source="api")
    assert (small.payload, small.payload_bytes, small.truncated) == (
        b"\xff\xfe not utf-8", 12, False)
    big = _read.decode(encode(DeadLetter.of(HUGE, reason=DeadLetterReason.OVERSIZED,
                                            detail="d", source="api")))
    assert big.payload == HUGE[:DEAD_LETTER_PAYLOAD_MAX]
    assert (big.payload_bytes, big.truncated) == (len(HUGE), True)
    edge = DeadLetter.of(HUGE[:DEAD_LETTER_PAYLOAD_MAX], reason=DeadLetterReason.OVERSIZED,
                         detail="d", source="api")
    assert not edge.truncated and edge.payload_bytes == DEAD_LETTER_PAYLOAD_MAX


def test_a_dead_letter_written_before_the_size_was_recorded_still_decodes():
    old = json.dumps({"reason": "late", "detail": "d", "source": "processor",
                      "topic": "tx", "partition": 0, "offset": 3, "payload_b64": "e30=",
                      "at": "2026-03-02T16:00:00Z"}).encode()
    letter = _read.decode(old)
    assert (letter.payload, letter.payload_bytes, letter.truncated) == (b"{}", None, False)


def test_the_api_dead_letters_a_huge_record_under_the_producer_limit():
    [rejected] = ingest.judge([HUGE]).rejected
    [(_, value)] = dead_letters([rejected], "b1")
    assert len(value) < PRODUCER_MAX // 10
    letter = _read.decode(value)
    assert (letter.reason, letter.payload_bytes, letter.truncated) == (
        "oversized", len(HUGE), True)


def test_stage_1_dead_letters_a_huge_record_under_the_producer_limit():
    rig = Rig()
    rig.assign(0)
    rig.feed(0, tx(T0 + 1_000), HUGE)
    [(key, letter)] = rig.dead()
    assert key == f"{NAMES.transactions}:0:1".encode()
    assert (letter.reason, letter.payload_bytes, letter.truncated) == (
        "oversized", len(HUGE), True)
    assert letter.payload == HUGE[:DEAD_LETTER_PAYLOAD_MAX]
    assert all(len(m.value()) < PRODUCER_MAX // 10 for m in rig.sent(NAMES.dead_letter))


def test_replay_dead_letters_a_huge_row_cut_with_its_size():
    sent = []
    publisher = SimpleNamespace(dead_letter=lambda letter, key: sent.append((key, letter)))
    bad = SimpleNamespace(bad=[BadRow("day.csv", 7, "unknown status", HUGE)])
    assert _dead_letter_bad_rows(publisher, [bad], "dlq") == 1
    [(key, letter)] = sent
    assert key == b"day.csv:7"
    assert (letter.reason, letter.payload_bytes, letter.truncated) == (
        DeadLetterReason.BAD_ROW, len(HUGE), True)
    assert len(encode(letter)) < PRODUCER_MAX // 10
