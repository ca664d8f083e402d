"""POST /transactions: an acquirer's batch, answered once Kafka holds every record of it.

The HTTP side only: status codes, the answer, the dead letters' shape. Splitting and
judging the records is api/ingest.py; waiting for the broker's
acknowledgements is txmon/kafka/aio.py.

Status codes: 200 once every record was judged and acknowledged, accepted or refused
(the answer says which, by index; a batch of only bad records is still a 200: each was
handled, as a dead letter). 400 when the body cannot be split into records (not JSON,
not an array), 413 over TXMON_API_MAX_BATCH_BYTES or TXMON_API_MAX_BATCH_RECORDS, 415
for a content type that is neither, 503 when the broker did not acknowledge every
record: the answer then claims none, and a retry may write some records twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel

from api import ingest
from txmon.contracts import STATUSES, DeadLetter, Topics, encode
from txmon.kafka.aio import Delivery
from txmon.settings import ApiSettings

PATH = "/transactions"

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
OPENAPI = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _BATCH},
    # One transaction a line; the schema is that of the lines taken together.
    "application/x-ndjson": {"schema": _BATCH},
}}}
RESPONSES = {400: {"model": Problem}, 413: {"model": Problem}, 415: {"model": Problem},
             503: {"model": Problem}, 200: {"model": IngestReport}}


class SendsAll(Protocol):
    """What a batch needs of the producer (txmon.kafka.aio.AsyncProducer): every record
    to its topic, answered once the broker has answered for all."""

    async def send_all(self, records: Mapping[str, Sequence[tuple[bytes, bytes]]],
                       ) -> Delivery: ...


def mount(app: FastAPI, state: dict, names: Topics, api: ApiSettings) -> None:
    @app.post(PATH, openapi_extra=OPENAPI, responses=RESPONSES, response_model=None)
    async def transactions(request: Request) -> Response:
        """Register a batch: a JSON array, or NDJSON (one transaction a line, blank lines
        ignored). Valid records go to the transactions topic, the others to the dead
        letters; the answer comes once Kafka has acknowledged all of them."""
        status, body = await register(state["producer"], names, await request.body(),
                                      request.headers.get("content-type"),
                                      api.max_batch_records)
        return _answer(status, body)


async def register(producer: SendsAll, names: Topics, body: bytes, content_type: str | None,
                   max_records: int) -> tuple[int, dict]:
    """A batch's status code and answer, its records sent: the route without HTTP, so
    that it can be tested with any producer."""
    try:
        records = ingest.split(body, content_type, max_records)
    except ingest.Unreadable as exc:
        return _STATUS[type(exc)], {"detail": str(exc)}
    verdict = ingest.judge(records)
    batch_id = uuid.uuid4().hex
    delivery = await producer.send_all({
        names.transactions: verdict.accepted,
        names.dead_letter: dead_letters(verdict.rejected, batch_id),
    })
    if delivery.failed:
        return 503, {"detail": f"Kafka did not acknowledge {delivery.failed} of "
                               f"{verdict.total} records ({delivery.first_error}); "
                               "none is reported accepted, a retry may repeat some"}
    return 200, report(verdict, batch_id)


def dead_letters(rejected: list[ingest.Rejected], batch_id: str) -> list[tuple[bytes, bytes]]:
    """Keyed `api:<batch_id>:<index>`: the answer's batch_id finds a batch's dead letters,
    and the index says which record each one was."""
    return [(f"api:{batch_id}:{r.index}".encode(),
             encode(DeadLetter(reason=r.reason, detail=r.detail, source="api",
                               payload_b64=DeadLetter.wrap(r.payload))))
            for r in rejected]


def report(verdict: ingest.Verdict, batch_id: str) -> dict:
    return {"accepted": len(verdict.accepted), "rejected": len(verdict.rejected),
            "errors": [{"index": r.index, "reason": r.reason, "detail": r.detail}
                       for r in verdict.rejected],
            "batch_id": batch_id}


def _answer(status: int, body: dict) -> Response:
    """msgspec rather than FastAPI's encoder: a batch of bad records is a long answer."""
    return Response(_encoder.encode(body), status, media_type="application/json")
