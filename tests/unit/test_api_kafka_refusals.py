"""A record the Kafka client refuses as it is produced (librdkafka raises KafkaException
at once: MSG_SIZE_TOO_LARGE over message.max.bytes, an unknown topic) gets the API's
documented answer, never a crash: POST /transactions a 503 saying nothing was written,
/check a 500 saying the transaction may not be registered; AsyncProducer.send_all counts
it as a failed record of its batch."""

from __future__ import annotations

import asyncio
import json

import httpx
from confluent_kafka import KafkaError, KafkaException
from fastapi import FastAPI
from support.fake_kafka import FakeProducer, FakeTransactionalProducer, too_large

from api.app import CHECK_UNSENT, _mount_check
from api.batch import Request, register
from api.history import History
from txmon.contracts import Topics
from txmon.kafka.aio import AsyncProducer
from txmon.kafka.transact import TransactionalWriter
from txmon.settings import KafkaSettings

NAMES = Topics()
NDJSON = "application/x-ndjson"
#: What the stand-in clients take as they are produced; larger raises at once.
CLIENT_MAX = 1000


def refusing(base: type[FakeProducer], limit: int = CLIENT_MAX) -> type[FakeProducer]:
    """`base` whose produce raises, as librdkafka's does, for a record over `limit`."""

    class Refusing(base):
        def produce(self, topic, value=None, key=None, **kw):
            if len(value) > limit:
                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
            return super().produce(topic, value, key, **kw)

    return Refusing


def tx(i: int, **extra) -> bytes:
    return json.dumps({"id": f"t{i}", "status": "approved",
                       "timestamp": "2026-03-02T16:00:00Z", **extra}).encode()


def test_a_batch_with_a_record_the_client_refuses_is_a_503_saying_why():
    made: list[FakeTransactionalProducer] = []

    def make(conf: dict) -> FakeTransactionalProducer:
        made.append(refusing(FakeTransactionalProducer)(conf))
        return made[-1]

    writer = TransactionalWriter({"transactional.id": "unit"}, make)
    try:  # the oversized record's dead letter is over CLIENT_MAX
        body = b"\n".join([tx(0), tx(1, terminal_id="x" * 5000), tx(2)])
        answer = asyncio.run(register(writer, NAMES, Request(body, NDJSON), 100))
        again = asyncio.run(register(writer, NAMES, Request(tx(3), NDJSON), 100))
    finally:
        writer.close(1)
    assert answer.status == 503, answer.body
    assert "batch of 3 records was not written" in answer.body["detail"]
    assert "Message size too large" in answer.body["detail"]
    assert again.status == 200, "the writer carries on"
    assert [m.value() for m in made[-1].on(NAMES.transactions)] == [tx(3)]


def test_send_all_counts_a_record_the_client_refuses_and_sends_the_others():
    make_client = refusing(FakeProducer)

    async def scenario():
        producer = AsyncProducer(KafkaSettings(), lambda conf: make_client(conf, refuse=too_large))
        try:
            delivery = await producer.send_all({
                "tx": [(b"a", b"ok"), (b"b", b"x" * (CLIENT_MAX + 1)), (b"c", b"ok")],
                "dlq": [(b"d", b"letter")]})
            everything = await producer.send_all({"tx": [(b"e", b"y" * (CLIENT_MAX + 1))]})
            return producer._producer, delivery, everything
        finally:
            producer.close(1)

    client, delivery, everything = asyncio.run(scenario())
    assert (delivery.acked, delivery.failed) == (3, 1)
    assert delivery.first_error == "tx: Broker: Message size too large"
    assert (everything.acked, everything.failed) == (0, 1), "nothing to wait for"
    assert [m.key() for m in client.on("tx")] == [b"a", b"c"]


def check_answers(client_factory) -> list[httpx.Response]:
    """POST /check twice, its producer an AsyncProducer on `client_factory`'s client."""

    async def post():
        producer = AsyncProducer(KafkaSettings(), client_factory)
        app = FastAPI()
        _mount_check(app, {"producer": producer, "reported": None,
                           "history": History(KafkaSettings(), NAMES)}, NAMES)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return [await client.post("/check", json={
                    "status": "approved", "timestamp": "2026-03-02T16:00:00",
                    "terminal_id": terminal}) for terminal in ("T-1", "T" + "x" * 120)]
        finally:
            producer.close(1)

    return asyncio.run(post())


def test_check_answers_500_with_the_reason_when_kafka_does_not_take_the_transaction():
    small = 150  # the first transaction fits, the second does not

    def reported(topic, key, value):
        return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if len(value) > small else None

    for client in (refusing(FakeProducer, small),  # as it is produced
                   lambda conf: FakeProducer(conf, refuse=reported)):  # delivery
        ok, refused = check_answers(client)
        assert ok.status_code == 200 and ok.json() == {"message": "Transaction registered"}
        assert refused.status_code == CHECK_UNSENT == 500
        assert "Kafka did not take the transaction (Broker: Message size too large)" in \
            refused.json()["detail"]
