"""POST /transactions' batch logic (api/batch.py) without a broker: which records go to
the transactions topic and which become dead letters, keyed how, what the answer says,
that nothing is claimed when the transaction did not commit, and how an Idempotency-Key
replays. The writer is a stand-in for the API's TransactionalWriter, or the real one on
an in-memory transactional client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import httpx
import msgspec
import pytest
from fastapi import FastAPI
from support.fake_kafka import FakeTransactionalProducer, too_large

from api.batch import PATH, Request, mount, register
from api.idempotency import Answers
from txmon.contracts import DeadLetter, Topics, message_key
from txmon.contracts.events import decode_transaction
from txmon.kafka.transact import Outcome, TransactionalWriter
from txmon.settings import ApiSettings

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
    """The writer as the batch sees it: `submit`, each batch's outcome `state`."""

    def __init__(self, state: str = "committed"):
        self.calls: list[dict] = []
        self.state = state

    def submit(self, records) -> concurrent.futures.Future:
        self.calls.append({t: list(pairs) for t, pairs in records.items()})
        total = sum(len(p) for p in records.values())
        error = None if self.state == "committed" else "Broker: Not enough in-sync replicas"
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result(Outcome(self.state, total, error))
        return done

    def settled(self) -> concurrent.futures.Future:
        return done()


class Stalled(Recording):
    """A writer whose transaction has begun and not ended: its caller times out."""

    def __init__(self):
        super().__init__()
        self.futures: list[concurrent.futures.Future] = []
        self.settle = concurrent.futures.Future()

    def submit(self, records) -> concurrent.futures.Future:
        self.calls.append(records)
        self.futures.append(concurrent.futures.Future())
        self.futures[-1].set_running_or_notify_cancel()
        return self.futures[-1]

    def settled(self) -> concurrent.futures.Future:
        return self.settle


def done() -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(None)
    return future


class Known:
    """The idempotency keys as a started IdempotencyTail has them, caught up at once."""

    def __init__(self):
        self.answers = Answers(ttl_ms=3600_000)

    def caught_up(self) -> concurrent.futures.Future:
        return done()


def run(writer, body: bytes, content_type: str | None = NDJSON, max_records: int = 100,
        key: str | None = None, keys: Known | None = None, timeout_s: float = 30.0):
    answer = asyncio.run(register(writer, NAMES, Request(body, content_type, key),
                                  max_records, keys, timeout_s))
    return answer.status, answer.body


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


def test_a_batch_whose_transaction_aborted_is_a_503_saying_nothing_was_written():
    status, answer = run(Recording("aborted"), b"\n".join(mixed()))
    assert status == 503
    assert answer.keys() == {"detail"}
    assert "batch of 6 records was not written" in answer["detail"]
    assert "Not enough in-sync replicas" in answer["detail"]


def test_a_batch_whose_outcome_is_unknown_says_to_retry_with_the_same_key():
    status, answer = run(Recording("unknown"), b"\n".join(mixed()))
    assert status == 503 and "may or may not have been written" in answer["detail"]
    assert "Idempotency-Key" in answer["detail"]


def test_a_key_is_written_with_its_batch_and_a_retry_replays_the_first_answer():
    writer, keys = Recording(), Known()
    body = b"\n".join(mixed())
    first = run(writer, body, key="order-1", keys=keys)
    again = run(writer, body, key="order-1", keys=keys)
    assert first == again and first[0] == 200
    [call] = writer.calls
    [(key, stored)] = call[NAMES.idempotency]
    assert key == b"order-1" and json.loads(stored)["body"] == first[1]
    assert run(writer, tx(7), key="order-1", keys=keys)[0] == 422
    assert run(writer, body, key="", keys=keys)[0] == 400


def test_a_key_whose_batch_was_not_written_may_be_sent_again():
    keys = Known()
    body = b"\n".join(mixed())
    assert run(Recording("aborted"), body, key="k", keys=keys)[0] == 503
    retry = Recording()
    assert run(retry, body, key="k", keys=keys)[0] == 200
    assert len(retry.calls) == 1


def test_a_key_whose_outcome_is_unknown_is_held_not_written_twice():
    keys = Known()
    body = b"\n".join(mixed())
    assert run(Recording("unknown"), body, key="k", keys=keys)[0] == 503
    retry = Recording()
    assert run(retry, body, key="k", keys=keys)[0] == 409
    assert retry.calls == []


async def post(writer, keys, body: bytes, timeout_s: float = 0.05):
    answer = await register(writer, NAMES, Request(body, NDJSON, "k"), 100, keys, timeout_s)
    await asyncio.sleep(0)  # the settling task's turn
    return answer


def test_a_held_key_replays_once_its_late_transaction_commits():
    async def scenario():
        writer, keys = Stalled(), Known()
        first = await post(writer, keys, tx(1))
        while_open = await post(writer, keys, tx(1))
        writer.futures[0].set_result(Outcome("committed", 1))
        for _ in range(3):
            await asyncio.sleep(0)
        return first, while_open, await post(writer, keys, tx(1)), writer

    first, while_open, after, writer = asyncio.run(scenario())
    assert first.status == 503 and "may or may not" in first.body["detail"]
    assert while_open.status == 409
    assert (after.status, after.replayed, after.body["accepted"]) == (200, True, 1)
    assert len(writer.calls) == 1


def test_a_held_key_is_free_once_the_writer_settled_and_no_answer_came():
    async def scenario():
        writer, keys = Stalled(), Known()
        await post(writer, keys, tx(1))
        writer.futures[0].set_result(Outcome("unknown", 1, "no answer"))
        for _ in range(3):
            await asyncio.sleep(0)
        held = await post(writer, keys, tx(1))
        writer.settle.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)
        writer.futures.clear()
        retry = asyncio.create_task(post(writer, keys, tx(1), timeout_s=5))
        while not writer.futures:
            await asyncio.sleep(0)
        writer.futures[0].set_result(Outcome("committed", 1))
        return held, await retry, writer

    held, retry, writer = asyncio.run(scenario())
    assert held.status == 409
    assert retry.status == 200 and not retry.replayed
    assert len(writer.calls) == 2


def test_a_batch_no_transaction_took_in_time_is_surely_not_written():
    class Queued(Recording):
        def submit(self, records) -> concurrent.futures.Future:
            self.future = concurrent.futures.Future()
            return self.future

    writer, keys = Queued(), Known()
    status, body = run(writer, tx(1), key="k", keys=keys, timeout_s=0.05)
    assert status == 503 and "was not written" in body["detail"]
    assert writer.future.cancelled(), "a writer never takes a cancelled batch"
    assert keys.answers.claim("k", "any") is None, "the key is free at once"


def test_the_route_answers_with_what_the_real_writer_committed():
    """HTTP in, the API's TransactionalWriter on an in-memory transactional client out:
    a refused record (larger than the broker takes) aborts its whole batch."""
    made: list[FakeTransactionalProducer] = []

    def make(conf: dict) -> FakeTransactionalProducer:
        made.append(FakeTransactionalProducer(conf, refuse=too_large))
        return made[-1]

    async def post_three():
        writer = TransactionalWriter({"transactional.id": "unit"}, make)
        app = FastAPI()
        mount(app, {"batches": writer}, NAMES, ApiSettings(max_batch_records=100))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return [await client.post(PATH, content=body, headers={"content-type": kind})
                        for body, kind in [
                            (b"\n".join(mixed()), NDJSON),
                            (b"\n".join([tx(8), tx(9, terminal_id="T" + "x" * 1500)]), NDJSON),
                            (b"[]", "application/json")]]
        finally:
            writer.close(1)

    ok, big, empty = asyncio.run(post_three())
    assert ok.status_code == 200, ok.text
    assert ok.json()["accepted"] == 3 and ok.json()["rejected"] == 3
    assert big.status_code == 503 and "batch of 2 records was not written" in big.json()["detail"]
    assert empty.status_code == 200 and empty.json()["accepted"] == 0
    def seen(topic: str) -> list:  # an abort starts a new client: read them all
        return [m for client in made for m in client.on(topic)]

    assert [m.value() for m in seen(NAMES.transactions)] == GOOD, "tx 8 aborted too"
    assert [m.key() for m in seen(NAMES.dead_letter)] == [
        f"api:{ok.json()['batch_id']}:{i}".encode() for i in BAD]
    assert [m.value() for client in made for m in client.aborted] == [
        tx(8), tx(9, terminal_id="T" + "x" * 1500)]
