"""POST /transactions' batch logic (api/batch.py) without a broker: which records go to
the transactions topic and which become dead letters, keyed how, what the answer says,
and that nothing is claimed when Kafka did not take everything. The producer is a
stand-in for the API's AsyncProducer, or the real one on an in-memory client."""

from __future__ import annotations

import asyncio
import json

import httpx
import msgspec
import pytest
from fastapi import FastAPI
from support.fake_kafka import factory, too_large

from api.batch import PATH, mount, register
from txmon.contracts import DeadLetter, Topics, message_key
from txmon.contracts.events import decode_transaction
from txmon.kafka.aio import AsyncProducer, Delivery
from txmon.settings import ApiSettings, KafkaSettings

NAMES = Topics()
NDJSON = "application/x-ndjson"
_dead = msgspec.json.Decoder(DeadLetter)


def tx(i: int, **extra) -> bytes:
    return json.dumps({"id": f"t{i}", "status": "approved",
                       "timestamp": "2026-03-02T16:00:00Z", **extra}).encode()


GOOD = [tx(0, terminal_id="T-1"), tx(2), tx(5, amount=12.5)]
BAD = {1: (b'{"id": "t1", "status": "stolen", "timestamp": "2026-03-02T16:00:00Z"}',
           "unknown_status"),
       3: (b'{"status": "approved", "timestamp": "2026-03-02T16:00:00Z"}', "missing_field"),
       4: (tx(4, timestamp="yesterday"), "bad_timestamp")}


def mixed() -> list[bytes]:
    good = iter(GOOD)
    return [BAD[i][0] if i in BAD else next(good) for i in range(6)]


class Recording:
    """The producer as the batch sees it: `send_all`, answered with `failed` refusals."""

    def __init__(self, failed: int = 0):
        self.calls: list[dict] = []
        self.failed = failed

    async def send_all(self, records) -> Delivery:
        self.calls.append({t: list(pairs) for t, pairs in records.items()})
        total = sum(len(p) for p in records.values())
        error = "transactions: Broker: Not enough in-sync replicas" if self.failed else None
        return Delivery(total - self.failed, self.failed, error)


def run(producer, body: bytes, content_type: str | None = NDJSON, max_records: int = 100):
    return asyncio.run(register(producer, NAMES, body, content_type, max_records))


def test_a_mixed_batch_sends_the_good_records_and_dead_letters_the_bad_by_index():
    producer = Recording()
    status, answer = run(producer, b"\n".join(mixed()) + b"\n")
    assert status == 200
    assert (answer["accepted"], answer["rejected"]) == (3, 3)
    assert [(e["index"], e["reason"]) for e in answer["errors"]] == [
        (i, reason) for i, (_, reason) in sorted(BAD.items())]
    assert all(e["detail"] for e in answer["errors"])
    [call] = producer.calls
    assert call[NAMES.transactions] == [
        (message_key(decode_transaction(r)), r) for r in GOOD], "as sent, keyed, in order"
    assert call[NAMES.transactions][0][0] == b"T-1"
    letters = call[NAMES.dead_letter]
    assert [k for k, _ in letters] == [f"api:{answer['batch_id']}:{i}".encode() for i in BAD]
    for (_, value), (payload, reason) in zip(letters, [BAD[i] for i in sorted(BAD)],
                                             strict=True):
        letter = _dead.decode(value)
        assert (letter.source, letter.reason, letter.payload) == ("api", reason, payload)
        assert letter.topic is None and letter.offset is None


def test_an_array_batch_is_judged_alike_and_each_batch_has_its_own_id():
    producer = Recording()
    array = b"[" + b",\n".join(mixed()) + b"]"
    first = run(producer, array, "application/json; charset=utf-8")
    second = run(producer, array, "application/json")
    assert first[0] == second[0] == 200
    assert first[1]["errors"] == second[1]["errors"]
    assert first[1]["batch_id"] != second[1]["batch_id"]
    assert producer.calls[0][NAMES.transactions] == producer.calls[1][NAMES.transactions]


def test_a_batch_of_only_bad_records_is_handled_and_answered_200():
    producer = Recording()
    status, answer = run(producer, b"\n".join(r for r, _ in BAD.values()))
    assert status == 200 and (answer["accepted"], answer["rejected"]) == (0, 3)
    assert producer.calls[0][NAMES.transactions] == []
    assert len(producer.calls[0][NAMES.dead_letter]) == 3


@pytest.mark.parametrize(("body", "content_type", "status", "says"), [
    (b'[{"id": "t0",', "application/json", 400, "malformed JSON"),
    (b'{"id": "t0"}', "application/json", 400, "not a JSON array"),
    (tx(0), "text/plain", 415, "text/plain"),
    (tx(0), None, 415, "missing"),
    (b"\n".join(tx(i) for i in range(4)), NDJSON, 413, "more than 3 records"),
    (b"[" + b",".join(tx(i) for i in range(4)) + b"]", "application/json", 413, "limit 3"),
])
def test_a_body_that_cannot_be_split_is_refused_whole_and_nothing_is_sent(
        body, content_type, status, says):
    producer = Recording()
    got, answer = run(producer, body, content_type, max_records=3)
    assert got == status and says in answer["detail"]
    assert producer.calls == []


def test_a_batch_kafka_did_not_fully_acknowledge_is_a_503_claiming_nothing():
    status, answer = run(Recording(failed=2), b"\n".join(mixed()))
    assert status == 503
    assert answer.keys() == {"detail"}
    assert "did not acknowledge 2 of 6 records" in answer["detail"]
    assert "Not enough in-sync replicas" in answer["detail"]


def test_the_route_answers_with_what_the_real_async_producer_got_acknowledged():
    """HTTP in, the API's AsyncProducer on an in-memory client out: a refused record
    (larger than the broker takes) turns the whole answer into a 503."""
    make = factory(refuse=too_large, capacity=4)

    async def post_three():
        producer = AsyncProducer(KafkaSettings(), make)
        app = FastAPI()
        mount(app, {"producer": producer}, NAMES, ApiSettings(max_batch_records=100))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return [await client.post(PATH, content=body, headers={"content-type": kind})
                        for body, kind in [
                            (b"\n".join(mixed()), NDJSON),
                            (tx(9, terminal_id="T" + "x" * 1500), NDJSON),
                            (b"[]", "application/json")]]
        finally:
            assert producer.close(1) == 0

    ok, big, empty = asyncio.run(post_three())
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 3 and ok.json()["rejected"] == 3
    assert big.status_code == 503 and "did not acknowledge 1 of 1" in big.json()["detail"]
    assert empty.status_code == 200 and empty.json()["accepted"] == 0
    client_ = make.made[0]
    assert [m.value() for m in client_.on(NAMES.transactions)] == GOOD
    assert [m.key() for m in client_.on(NAMES.dead_letter)] == [
        f"api:{ok.json()['batch_id']}:{i}".encode() for i in BAD]
    assert client_.full_hits > 0, "the queue filled up: records waited for room"
