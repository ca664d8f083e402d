"""The API's memory of Idempotency-Keys (api/idempotency.py), without Kafka."""

from __future__ import annotations

import pytest

from api.idempotency import (
    Answer,
    Answers,
    IdempotencyTail,
    KeyConflict,
    check_key,
    encode_answer,
    fingerprint,
)
from txmon.settings import KafkaSettings

HOUR_MS = 3600_000


def answer(key: str = "k1", fp: str = "fp", at_ms: int = 0) -> Answer:
    return Answer(key=key, fingerprint=fp, status=200, at_ms=at_ms,
                  body={"accepted": 1, "rejected": 0, "errors": [], "batch_id": "b"})


def test_a_new_key_is_claimed_once_then_replayed_after_its_commit():
    answers = Answers(ttl_ms=24 * HOUR_MS)
    assert answers.claim("k1", "fp", now_ms=10) is None
    with pytest.raises(KeyConflict) as busy:
        answers.claim("k1", "fp", now_ms=11)
    assert busy.value.status == 409
    answers.release("k1", answer(at_ms=10))
    assert answers.claim("k1", "fp", now_ms=12) == answer(at_ms=10)


def test_a_batch_that_was_not_written_leaves_its_key_free():
    answers = Answers(ttl_ms=HOUR_MS)
    assert answers.claim("k1", "fp", now_ms=0) is None
    answers.release("k1", None)
    assert answers.claim("k1", "fp", now_ms=1) is None


def test_a_key_reused_for_another_body_is_refused():
    answers = Answers(ttl_ms=HOUR_MS)
    answers.learn(answer(fp=fingerprint(b"[1]", "application/json")))
    with pytest.raises(KeyConflict) as other:
        answers.claim("k1", fingerprint(b"[2]", "application/json"), now_ms=1)
    assert other.value.status == 422
    same = answers.claim("k1", fingerprint(b"[1]", "application/json"), now_ms=1)
    assert same is not None and same.status == 200


def test_the_same_body_under_another_media_type_is_another_request():
    assert fingerprint(b"x", "application/json") != fingerprint(b"x", "application/x-ndjson")


def test_keys_are_forgotten_after_their_time_as_the_topic_forgets_them():
    answers = Answers(ttl_ms=HOUR_MS)
    answers.learn(answer(at_ms=0))
    assert answers.claim("k1", "fp", now_ms=HOUR_MS) is not None
    assert answers.claim("k1", "fp", now_ms=HOUR_MS + 1) is None
    assert len(answers) == 0


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey", "new\nline"])
def test_a_key_that_is_not_an_id_is_refused(key):
    with pytest.raises(KeyConflict) as bad:
        check_key(key)
    assert bad.value.status == 400


def test_the_tail_learns_answers_and_skips_a_foreign_record_with_a_warning(caplog):
    answers = Answers(ttl_ms=HOUR_MS)
    tail = IdempotencyTail(KafkaSettings(), "idem", answers)
    tail.apply("idem", encode_answer(answer(key="a")), 0.0)
    tail.apply("idem", b"not json", 0.0)
    tail.apply("idem", None, 0.0)
    assert len(answers) == 1
    assert "not an answer" in caplog.text
