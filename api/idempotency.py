"""`Idempotency-Key` on POST /transactions: a retry gets the first answer, not a second
write.

An acquirer that lost the answer to a batch (a timeout, a dropped connection, a 503
whose outcome it cannot know) sends it again with the same key. The first answer is
kept in the idempotency topic, written in the same Kafka transaction as the batch's
records, so it exists exactly when they do: a retry after an aborted batch writes it
(nothing of the first is visible), a retry after a committed one is answered from the
topic. Every API process follows the topic from its beginning (`IdempotencyTail`), so
the answer holds across restarts and across `--workers`, for TXMON_IDEMPOTENCY_HOURS
(the topic's retention).

A key names one request: reused with a different body it is refused (422), and while
its first request is still being written in this process a second one waits for none
and gets 409. Two processes given the same key at the same instant can both write it:
each learns of the other's answer only once it is committed (a few milliseconds later).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time

import msgspec

from api.tail import TopicTail
from txmon.settings import KafkaSettings

__all__ = ["HEADER", "Answer", "Answers", "IdempotencyTail", "KeyConflict", "fingerprint"]

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
#: Longer keys are refused: a key is an id (a UUID is 36 characters), not a payload.
MAX_KEY_CHARS = 255


class Answer(msgspec.Struct, kw_only=True):
    """The first answer to a key, as stored in the idempotency topic."""

    key: str
    fingerprint: str
    status: int
    body: dict
    at_ms: int


class KeyConflict(Exception):
    """The key cannot be used for this request: `status` and `detail` say why."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


_decoder = msgspec.json.Decoder(Answer)


def fingerprint(body: bytes, content_type: str | None) -> str:
    """What makes two requests the same request."""
    digest = hashlib.sha256((content_type or "").encode() + b"\0" + body)
    return digest.hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise KeyConflict(400, f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable "
                               "characters")
    return key


class Answers:
    """The answers this process knows: the topic's, and its own as soon as their
    transaction commits. Keys past their time are forgotten, as the topic forgets them."""

    def __init__(self, ttl_ms: int):
        self.ttl_ms = ttl_ms
        self._known: dict[str, Answer] = {}
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    def learn(self, answer: Answer) -> None:
        with self._lock:
            self._known[answer.key] = answer

    def claim(self, key: str, fp: str, now_ms: int | None = None) -> Answer | None:
        """The stored answer to replay, or None once the key is this request's to
        write (`release` it after). KeyConflict for a key in use by another request."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            known = self._known.get(key)
            if known is not None and now_ms - known.at_ms > self.ttl_ms:
                del self._known[key]
                known = None
            if known is not None:
                if known.fingerprint != fp:
                    raise KeyConflict(422, f"{HEADER} {key!r} was used for another request")
                return known
            if key in self._in_flight:
                raise KeyConflict(409, f"a request with {HEADER} {key!r} is in progress")
            self._in_flight.add(key)
            return None

    def release(self, key: str, answer: Answer | None) -> None:
        """The claim is over: `answer` is the committed one, None if nothing was."""
        with self._lock:
            self._in_flight.discard(key)
            if answer is not None:
                self._known[key] = answer

    def __len__(self) -> int:
        return len(self._known)


class IdempotencyTail(TopicTail):
    """Feeds `answers` from the idempotency topic (read_committed: an answer whose
    batch was aborted never arrives)."""

    def __init__(self, settings: KafkaSettings, topic: str, answers: Answers):
        super().__init__(settings, (topic,), "idempotency")
        self.answers = answers

    def apply(self, topic: str, value: bytes | None, at: float) -> None:
        if value is None:
            return
        try:
            self.answers.learn(_decoder.decode(value))
        except msgspec.MsgspecError as exc:
            log.warning("idempotency topic %s: a record that is not an answer (%s): "
                        "ignored", topic, exc)


def encode_answer(answer: Answer) -> bytes:
    return msgspec.json.encode(answer)
