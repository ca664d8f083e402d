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
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api import batch
from api.history import History, summary
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
from txmon.contracts.minutes import EARLIEST, LATEST
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.kafka.aio import AsyncProducer
from txmon.settings import ApiSettings, KafkaSettings


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

    async def authorized(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    # Without a token there is nothing to check: no per-request dependency at all.
    app = FastAPI(title="txmon", version="0.1.0", lifespan=lifespan,
                  dependencies=[Depends(authorized)] if token else [])
    app.mount("/metrics", make_asgi_app())
    mount_live(app, state)

    @app.post("/check")
    async def check(body: CheckRequest):
        """Register a transaction. When a newer minute has closed since the previous
        call, answer with that minute's summary and whether it raised an alert."""
        tx = Transaction(id=body.id or str(uuid.uuid4()), status=body.status,
                         timestamp=body.timestamp, amount=body.amount,
                         terminal_id=body.terminal_id)
        await state["producer"].send(names.transactions, encode(tx), message_key(tx))
        history: History = state["history"]
        newest = history.newest()
        if newest is not None and (state["reported"] is None or newest.start > state["reported"]):
            state["reported"] = newest.start
            return summary(newest, history.has_alert(newest))
        return {"message": "Transaction registered"}

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

    @app.get("/healthz", dependencies=[])
    async def healthz():
        return {"ok": True}

    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes,
                       per_path={batch.PATH: api.max_batch_bytes})
    return app


def _lifespan(state: dict, settings: KafkaSettings, api: ApiSettings, names: Topics):
    """The app's Kafka clients in `state`, for as long as it serves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ensure_topics(settings, pipeline_topics(names))
        state["producer"] = AsyncProducer(settings,
                                          **{"message.timeout.ms": api.delivery_timeout_ms})
        state["history"] = History(settings, names).start()
        state["live"] = LiveFeed(settings, names).start()
        state["reported"] = None
        yield
        state["live"].stop()
        state["history"].stop()
        state["producer"].close()

    return lifespan


def _plain(alert) -> dict:
    return msgspec.to_builtins(alert)
