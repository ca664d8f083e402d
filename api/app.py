"""The prototype's HTTP API, kept as its contract: POST /check, GET /history_counts,
plus GET /alerts, and POST /transactions for acquirers that send batches.
Transactions go to Kafka like any other source; answers come from the window-counts and
alerts topics (History), so the API holds no counts of its own."""

from __future__ import annotations

import hmac
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import msgspec
from confluent_kafka import KafkaException
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import batch
from api.history import History, summary
from api.idempotency import Answers, IdempotencyTail
from api.live import LiveFeed, mount_live
from txmon.contracts import (
    Status,
    Topics,
    Transaction,
    encode,
    message_key,
    minute_key,
    topics,
)
from txmon.contracts.minutes import EARLIEST, HOUR_MS, LATEST
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.kafka.aio import AsyncProducer, reason
from txmon.kafka.produce import REQUEST, producer_config
from txmon.kafka.read import read_to_end
from txmon.kafka.transact import TransactionalWriter, transactional_id
from txmon.settings import ApiSettings, KafkaSettings, TopicLayout


class CheckRequest(BaseModel):
    """A transaction as the prototype took it; a timestamp without a zone is UTC."""

    model_config = ConfigDict(extra="forbid")
    status: Status
    timestamp: datetime
    id: str | None = Field(default=None, max_length=128)
    amount: float | None = None
    terminal_id: str | None = Field(default=None, max_length=128)

    @field_validator("timestamp")
    @classmethod
    def utc(cls, ts: datetime) -> datetime:
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
        if not EARLIEST <= ts < LATEST:
            raise ValueError("timestamp out of range")
        return ts


class BodyLimit:
    """Refuses bodies over the limit with 413 before the app reads them, whether the
    client declared a Content-Length or streamed chunks. `per_path` gives a route a limit
    of its own (the batch route takes megabytes, the others a few KiB)."""

    def __init__(self, app, max_bytes: int, per_path: dict[str, int] | None = None):
        self.app, self.max_bytes, self.per_path = app, max_bytes, per_path or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(send, limit)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, limit)


#: Paths anyone may reach when TXMON_API_TOKEN is set: liveness (the Compose health
#: check has no token), Prometheus' scrape of process metrics, the API's own docs, and
#: the live page's HTML and assets (the page sends the token, from its URL fragment,
#: with its data requests). Everything that reads or writes transactions needs it.
OPEN_PATHS = frozenset({"/", "/healthz", "/metrics", "/docs", "/docs/oauth2-redirect",
                        "/redoc", "/openapi.json", "/live"})
OPEN_PREFIXES = ("/metrics/", "/live/static/")


def needs_token(path: str) -> bool:
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


class BearerToken:
    """`Authorization: Bearer <token>` on every path but the open ones: one check in
    front of the routes and the mounted apps alike, so a new route cannot forget it."""

    def __init__(self, app, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not needs_token(scope["path"]):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        await JSONResponse({"detail": "missing or wrong bearer token"}, 401,
                           headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)


class _TooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    await JSONResponse({"detail": f"request body larger than {limit} bytes"}, 413)(
        {"type": "http"}, None, send)


def create_api(settings: KafkaSettings | None = None, api: ApiSettings | None = None) -> FastAPI:
    settings = settings or KafkaSettings.from_env()
    api = api or ApiSettings.from_env()
    names = topics()
    token = api.token
    state: dict = {}
    lifespan = _lifespan(state, settings, api, names)

    app = FastAPI(title="txmon", version="0.1.0", lifespan=lifespan)
    app.mount("/metrics", make_asgi_app())
    mount_live(app, state)

    _mount_check(app, state, names)
    batch.mount(app, state, names, api)

    @app.get("/history_counts")
    async def history_counts(
        since: str | None = Query(None, description="first minute, YYYY-MM-DDTHH:MM (UTC)",
                                  pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$"),
        limit: int = Query(1440, ge=1, le=10_080),
    ):
        return state["history"].minutes(since, limit)

    @app.get("/alerts")
    async def alerts(limit: int = Query(100, ge=1, le=1000)):
        return [
            {**_plain(a), "minute": minute_key(a.window_start)}
            for a in state["history"].recent_alerts(limit)
        ]

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes,
                       per_path={batch.PATH: api.max_batch_bytes})
    if token:  # outermost: nothing is read or written before the token is checked
        app.add_middleware(BearerToken, token=token)
    return app


#: /check's answer when Kafka did not take the transaction, refused as it was queued or
#: unacknowledged by TXMON_API_DELIVERY_TIMEOUT_MS: a 500, as /check has always answered.
CHECK_UNSENT = 500


def _mount_check(app: FastAPI, state: dict, names: Topics) -> None:
    """POST /check; `state` holds the API's "producer", "history" and "reported"."""

    @app.post("/check", responses={CHECK_UNSENT: {"description": "Kafka did not take it"}})
    async def check(body: CheckRequest):
        """Register a transaction. When a newer minute has closed since the previous
        call, answer with that minute's summary and whether it raised an alert."""
        tx = Transaction(id=body.id or str(uuid.uuid4()), status=body.status,
                         timestamp=body.timestamp, amount=body.amount,
                         terminal_id=body.terminal_id)
        try:
            await state["producer"].send(names.transactions, encode(tx), message_key(tx))
        except KafkaException as exc:
            raise HTTPException(CHECK_UNSENT, f"Kafka did not take the transaction "
                                f"({reason(exc)}): it may not be registered, send it again"
                                ) from None
        history: History = state["history"]
        newest = history.newest()
        if newest is not None and (state["reported"] is None or newest.start > state["reported"]):
            state["reported"] = newest.start
            return summary(newest, history.has_alert(newest))
        return {"message": "Transaction registered"}


def _lifespan(state: dict, settings: KafkaSettings, api: ApiSettings, names: Topics):
    """The app's Kafka clients in `state`, for as long as it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ensure_topics(settings, pipeline_topics(names))
        state["producer"] = AsyncProducer(settings,
                                          **{"message.timeout.ms": api.delivery_timeout_ms})
        state["batches"] = batch_writer(settings, api)
        state["answers"] = answers = Answers(TopicLayout.from_env().idempotency_hours * HOUR_MS)
        known = state["idempotency"] = IdempotencyTail(settings, names.idempotency, answers)
        # Every answer so far is known before the first request: a retry after a
        # restart is a replay. The tail then reads on (from the start: cheap, idempotent).
        known.feed(read_to_end(settings, names.idempotency, "txmon-idempotency-load"))
        known.start()
        state["history"] = History(settings, names).start()
        state["live"] = LiveFeed(settings, names).start()
        state["reported"] = None
        yield
        state["live"].stop()
        state["history"].stop()
        state["idempotency"].stop()
        state["batches"].close()
        state["producer"].close()

    return lifespan


def batch_writer(settings: KafkaSettings, api: ApiSettings) -> TransactionalWriter:
    """POST /transactions' writer: a transactional.id of this process's own."""
    config = producer_config(settings, REQUEST, **{
        "transactional.id": transactional_id("txmon-api"),
        "transaction.timeout.ms": api.transaction_timeout_ms})
    timeout_s = api.transaction_timeout_ms / 1000
    return TransactionalWriter(config, commit_timeout_s=timeout_s, init_timeout_s=timeout_s)


def _plain(alert) -> dict:
    return msgspec.to_builtins(alert)
