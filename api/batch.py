"""POST /transactions: an acquirer's batch, answered once Kafka holds all of it or none.

The HTTP side only: status codes, the answer, the dead letters' shape, the idempotency
key. Splitting and judging the records is api/ingest.py; the batch is written in one
Kafka transaction by txmon/kafka/transact.py, with its dead letters and, when the
request has an `Idempotency-Key`, its answer (api/idempotency.py).

Status codes: 200 once every record was judged and committed, accepted or refused (the
answer says which, by index; a batch of only bad records is still a 200: each was
handled, as a dead letter). 400 when the body cannot be split into records (not JSON,
not an array) or the key is not an id; 409 while a request with the same key is being
written, or its 503's outcome is not known yet; 413 over TXMON_API_MAX_BATCH_BYTES or
TXMON_API_MAX_BATCH_RECORDS; 415 for a content type that is neither; 422 for a key
already used with another body; 503 when the transaction did not commit within
TXMON_API_TRANSACTION_TIMEOUT_MS. The 503 says whether nothing of the batch was
written (it never will be) or the outcome is unknown (it is settled in the background,
and a retry with the same key then writes it once or replays the answer). A replayed
answer carries `Idempotent-Replayed: true`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
from fastapi import FastAPI, Response
from fastapi import Request as Request_
from pydantic import BaseModel

from api import ingest
from api.idempotency import (
    HEADER,
    MAX_KEY_CHARS,
    Answers,
    KeyConflict,
    check_key,
    encode_answer,
    fingerprint,
)
from api.idempotency import Answer as StoredAnswer
from txmon.contracts import STATUSES, DeadLetter, Topics, encode
from txmon.kafka.transact import Outcome
from txmon.settings import ApiSettings

PATH = "/transactions"
#: Says an answer is the stored first answer to an Idempotency-Key, not a new write.
REPLAYED = "Idempotent-Replayed"

_STATUS = {ingest.BadBatch: 400, ingest.TooManyRecords: 413, ingest.UnsupportedMediaType: 415}
_encoder = msgspec.json.Encoder()


class IngestError(BaseModel):
    index: int
    reason: str
    detail: str


class IngestReport(BaseModel):
    accepted: int
    rejected: int
    errors: list[IngestError]
    batch_id: str


class Problem(BaseModel):
    detail: str


_TRANSACTION = {
    "type": "object",
    "required": ["id", "status", "timestamp"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "timestamp": {"type": "string", "format": "date-time"},
        "amount": {"type": ["number", "null"]},
        "terminal_id": {"type": ["string", "null"]},
    },
}
_BATCH = {"type": "array", "items": _TRANSACTION}
OPENAPI = {"parameters": [{
    "name": HEADER, "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
    "description": "makes a retry safe: the same key and body get the first answer "
                   "instead of a second write"}],
    "requestBody": {"required": True, "content": {
    "application/json": {"schema": _BATCH},
    # One transaction a line; the schema is that of the lines taken together.
    "application/x-ndjson": {"schema": _BATCH},
}}}
RESPONSES = {400: {"model": Problem}, 409: {"model": Problem}, 413: {"model": Problem},
             415: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem},
             200: {"model": IngestReport}}


class Writes(Protocol):
    """What a batch needs of Kafka (txmon.kafka.transact.TransactionalWriter): every
    record to its topic in one transaction, the outcome as a future (cancelled: not
    written), and when an unknown outcome has been settled."""

    def submit(self, records: Mapping[str, Sequence[tuple[bytes, bytes]]],
               ) -> concurrent.futures.Future: ...

    def settled(self) -> concurrent.futures.Future: ...


class Keys(Protocol):
    """The idempotency keys' memory (api.idempotency.IdempotencyTail): the answers, and
    when everything now in the idempotency topic has reached them."""

    answers: Answers

    def caught_up(self) -> concurrent.futures.Future: ...


@dataclass(frozen=True)
class Request:
    """A batch as it came: its body, its media type and its idempotency key, if any."""

    body: bytes
    content_type: str | None
    key: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    replayed: bool = False
    #: A 503 whose batch may yet have been written: its writer's future (an `Outcome`),
    #: and the answer it gets if it commits.
    pending: concurrent.futures.Future | None = None
    if_committed: dict | None = None

    def response(self) -> Response:
        """msgspec rather than FastAPI's encoder: a batch of bad records is a long answer."""
        headers = {REPLAYED: "true"} if self.replayed else None
        return Response(_encoder.encode(self.body), self.status, headers=headers,
                        media_type="application/json")


def mount(app: FastAPI, state: dict, names: Topics, api: ApiSettings) -> None:
    @app.post(PATH, openapi_extra=OPENAPI, responses=RESPONSES, response_model=None)
    async def transactions(request: Request_) -> Response:
        """Register a batch: a JSON array, or NDJSON (one transaction a line, blank lines
        ignored). Valid records go to the transactions topic, the others to the dead
        letters, all in one Kafka transaction; the answer comes once it has committed.
        Send an `Idempotency-Key` to make a retry safe."""
        batch = Request(await request.body(), request.headers.get("content-type"),
                        request.headers.get(HEADER))
        answer = await register(state["batches"], names, batch, api.max_batch_records,
                                state.get("idempotency"), api.transaction_timeout_ms / 1000)
        return answer.response()


#: The tasks that learn what became of batches answered 503 with an unknown outcome.
_settling: set[asyncio.Task] = set()


async def register(writer: Writes, names: Topics, batch: Request, max_records: int,
                   keys: Keys | None = None, timeout_s: float = 30.0) -> Answer:
    """A batch's answer, its records written (or not): the route without HTTP, so that
    it can be tested with any writer."""
    try:
        key = None if batch.key is None else check_key(batch.key)
        records = ingest.split(batch.body, batch.content_type, max_records)
    except ingest.Unreadable as exc:
        return Answer(_STATUS[type(exc)], {"detail": str(exc)})
    except KeyConflict as exc:
        return Answer(exc.status, {"detail": exc.detail})
    if key is None or keys is None:
        return await _write(writer, names, records, None, timeout_s)
    fp = fingerprint(batch.body, batch.content_type)
    try:
        stored = keys.answers.claim(key, fp)
    except KeyConflict as exc:
        return Answer(exc.status, {"detail": exc.detail})
    if stored is not None:
        return Answer(stored.status, stored.body, replayed=True)
    answer = None
    try:
        answer = await _write(writer, names, records, (key, fp), timeout_s)
    finally:
        if answer is not None and answer.pending is not None:
            task = asyncio.create_task(_settle(writer, keys, key, fp, answer))
            _settling.add(task)
            task.add_done_callback(_settling.discard)
        else:
            keys.answers.release(key, _stored(answer, key, fp))
    return answer


async def _settle(writer: Writes, keys: Keys, key: str, fp: str, answer: Answer) -> None:
    """Keeps `key` taken (a retry gets 409) until the outcome of its 503 is known: the
    transaction's own, or else the writer's settling it and the idempotency topic read
    past it, where a committed batch left its answer."""
    outcome: Outcome = await asyncio.wrap_future(answer.pending)
    if outcome.committed:
        keys.answers.release(key, _stored(Answer(200, answer.if_committed), key, fp))
        return
    if outcome.state == "unknown":
        await asyncio.wrap_future(writer.settled())
        await asyncio.wrap_future(keys.caught_up())
    keys.answers.release(key, None)


async def _write(writer: Writes, names: Topics, records: list[bytes],
                 key: tuple[str, str] | None, timeout_s: float) -> Answer:
    verdict = ingest.judge(records)
    batch_id = uuid.uuid4().hex
    body = report(verdict, batch_id)
    out = {names.transactions: verdict.accepted,
           names.dead_letter: dead_letters(verdict.rejected, batch_id)}
    if key is not None:
        stored = StoredAnswer(key=key[0], fingerprint=key[1], status=200, body=body,
                              at_ms=int(time.time() * 1000))
        out[names.idempotency] = [(key[0].encode(), encode_answer(stored))]
    future = writer.submit(out)
    outcome = await _outcome(future, verdict.total, timeout_s)
    if outcome.committed:
        return Answer(200, body)
    detail = {"detail": _unwritten(outcome, verdict.total)}
    if outcome.state == "aborted":
        return Answer(503, detail)
    return Answer(503, detail, pending=future, if_committed=body)


async def _outcome(future: concurrent.futures.Future, records: int,
                   timeout_s: float) -> Outcome:
    """The batch's outcome, or after `timeout_s` what can be said: not written if it
    never got into a transaction (it never will), else unknown."""
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
    except TimeoutError:
        if future.cancel():
            return Outcome("aborted", records,
                           f"Kafka could not take it within {timeout_s:.0f} s")
        return Outcome("unknown", records, f"no outcome within {timeout_s:.0f} s")


def _unwritten(outcome: Outcome, total: int) -> str:
    if outcome.state == "aborted":
        return (f"the batch of {total} records was not written ({outcome.error}): "
                "nothing of it is visible; send it again")
    return (f"the batch of {total} records may or may not have been written "
            f"({outcome.error}): send it again with the same {HEADER} to find out")


def _stored(answer: Answer | None, key: str, fp: str) -> StoredAnswer | None:
    if answer is None or answer.status != 200:
        return None
    return StoredAnswer(key=key, fingerprint=fp, status=200, body=answer.body,
                        at_ms=int(time.time() * 1000))


def dead_letters(rejected: list[ingest.Rejected], batch_id: str) -> list[tuple[bytes, bytes]]:
    """Keyed `api:<batch_id>:<index>`: the answer's batch_id finds a batch's dead letters,
    and the index says which record each one was."""
    return [(f"api:{batch_id}:{r.index}".encode(),
             encode(DeadLetter.of(r.payload, reason=r.reason, detail=r.detail, source="api")))
            for r in rejected]


def report(verdict: ingest.Verdict, batch_id: str) -> dict:
    return {"accepted": len(verdict.accepted), "rejected": len(verdict.rejected),
            "errors": [{"index": r.index, "reason": r.reason, "detail": r.detail}
                       for r in verdict.rejected],
            "batch_id": batch_id}
