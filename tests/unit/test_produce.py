"""txmon's one producer (txmon/kafka/produce.py) and its users' faces on it, the
producer CLI's Publisher and the API's AsyncProducer, against an in-memory client: a
full queue loses nothing, refusals are counted with the first error, and each caller
hears of a failure its own way."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from confluent_kafka import KafkaException
from support.fake_kafka import FakeProducer, factory, too_large

from producer import publish
from producer.publish import Publisher
from txmon.contracts import DeadLetter, DeadLetterReason
from txmon.kafka.aio import PRODUCER_CONFIG, AsyncProducer
from txmon.kafka.produce import (
    PIPELINE,
    REQUEST,
    DeliveryFailed,
    Sender,
    bulk,
    producer_config,
)
from txmon.settings import KafkaSettings, ProducerSettings

SETTINGS = KafkaSettings(bootstrap="broker.invalid:9092")
BIG = b"x" * 2000


def records(n: int, prefix: str = "k") -> tuple[list[bytes], list[bytes]]:
    return [f"{prefix}{i}".encode() for i in range(n)], [f"v{i}".encode() for i in range(n)]


def test_every_profile_is_idempotent_and_keeps_its_callers_settings():
    api = producer_config(SETTINGS, REQUEST, **{"message.timeout.ms": 5000})
    stage = producer_config(SETTINGS, PIPELINE)
    tuning = ProducerSettings(linger_ms=7.0, compression="zstd", batch_bytes=500_000)
    cli = producer_config(SETTINGS, bulk(tuning))
    for conf in (api, stage, cli):
        assert (conf["enable.idempotence"], conf["acks"]) == (True, "all")
        assert conf["bootstrap.servers"] == "broker.invalid:9092"
    assert (api["linger.ms"], api["compression.type"], api["message.timeout.ms"]) == \
        (2, "lz4", 5000)
    assert (stage["linger.ms"], stage["compression.type"]) == (5, "lz4")
    assert "delivery.report.only.error" not in stage  # stage 1 hears every report
    assert (cli["linger.ms"], cli["compression.type"], cli["batch.size"]) == \
        (7.0, "zstd", 500_000)
    assert cli["delivery.report.only.error"] is True
    assert cli["message.max.bytes"] == 16 * 1024 * 1024
    assert cli["queue.buffering.max.messages"] == tuning.queue_messages
    # The bare-producer baseline of bench/ingest_api.py is the API's profile.
    assert {k: api[k] for k in PRODUCER_CONFIG} == PRODUCER_CONFIG


def test_a_full_queue_waits_for_room_and_loses_nothing():
    make = factory(capacity=3)
    sender = Sender(producer_config(SETTINGS, PIPELINE), make)
    keys, values = records(10)
    sender.send("t", keys, values)
    sender.produce("t", b"last", b"kl")
    assert sender.flush(1) == 0
    client = make.made[0]
    assert client.full_hits > 0, "the queue was full at least once"
    assert [(m.key(), m.value()) for m in client.on("t")] == [
        *zip(keys, values, strict=True), (b"kl", b"last")]
    assert (sender.sent, sender.delivered, sender.failed) == (11, 11, 0)


def test_offer_never_blocks_and_a_waiting_caller_chooses_how_to_wait():
    waits = []
    make = factory(capacity=1)
    sender = Sender({}, make, wait=lambda: (waits.append(1), make.made[0].poll()))
    assert sender.offer("t", b"a") and not sender.offer("t", b"b")
    assert sender.sent == 1 and len(make.made[0]) == 1
    sender.produce("t", b"b")
    assert waits == [1] and sender.sent == 2
    sender.flush(1)
    assert [m.value() for m in make.made[0].on("t")] == [b"a", b"b"]


def test_refused_records_are_counted_and_the_first_error_kept():
    sender = Sender(producer_config(SETTINGS, bulk(ProducerSettings())),
                    factory(refuse=too_large))
    sender.send("t", [b"a", b"b", b"c", b"d"], [b"ok", BIG, b"ok", BIG + b"!"])
    assert sender.close(1) == 2
    assert (sender.sent, sender.delivered, sender.failed) == (4, 2, 2)
    assert sender.first_error == "t: Broker: Message size too large"


def test_settle_raises_for_each_new_failure_once():
    sender = Sender({}, factory(refuse=too_large))
    sender.produce("t", b"fine")
    sender.settle(1)
    sender.produce("t", BIG)
    sender.produce("t", b"fine")
    with pytest.raises(DeliveryFailed, match=r"0 undelivered, 1 refused .*too large"):
        sender.settle(1)
    sender.produce("t", b"fine again")
    sender.settle(1)  # the failure was reported; what came after it was delivered


def test_records_still_queued_at_close_count_as_failed():
    make = factory()
    sender = Sender({}, make)
    make.made[0].stuck = True
    sender.send("t", *records(3))
    with pytest.raises(DeliveryFailed, match="3 undelivered"):
        sender.settle(0.1)
    assert sender.close(0.2) == 3
    assert sender.first_error == "3 still queued after 0 s"
    assert (sender.sent, sender.delivered, sender.failed) == (3, 0, 3)


def test_publisher_counts_failures_and_sends_dead_letters_to_their_topic():
    make = factory(refuse=too_large)
    pub = Publisher(SETTINGS, "tx", dead_letter_topic="dlq",
                    overrides={"message.timeout.ms": 1234}, client=make)
    client = make.made[0]
    assert client.conf["message.timeout.ms"] == 1234
    assert client.conf["delivery.report.only.error"] is True
    keys, values = records(5)
    pub.send(keys, values)
    pub.send([b"big"], [BIG])
    letter = DeadLetter(reason=DeadLetterReason.MALFORMED_JSON, detail="row 3", source="replay")
    pub.dead_letter(letter, b"row-3")
    assert pub.close(1) == 1
    assert (pub.sent, pub.failed) == (7, 1) and "too large" in pub.first_error
    assert [m.key() for m in client.on("tx")] == keys
    [dead] = client.on("dlq")
    assert dead.key() == b"row-3" and b"row 3" in dead.value()
    with pytest.raises(RuntimeError, match="no dead-letter topic"):
        Publisher(SETTINGS, "tx", client=factory()).dead_letter(letter)


def test_publisher_says_when_the_brokers_stop_and_resume_acknowledging(monkeypatch, caplog):
    monkeypatch.setattr(publish, "BLOCKED_REPORT_S", 0.0)
    make = factory()
    pub = Publisher(SETTINGS, "tx", client=make)
    make.made[0].stuck = True
    with caplog.at_level(logging.WARNING, logger="producer.publish"):
        pub.send(*records(3))
        pub.send(*records(2, "j"))
        assert "acknowledged nothing" in caplog.text and "3 records waiting" in caplog.text
        make.made[0].stuck = False
        make.made[0].poll()
        pub.send(*records(1, "i"))
        assert "acknowledges again" in caplog.text
    assert pub.close(1) == 0


def test_publisher_close_waits_as_long_as_librdkafka_keeps_a_record(monkeypatch, caplog):
    monkeypatch.setattr(publish, "BLOCKED_REPORT_S", 0.0)
    monkeypatch.setattr(publish, "CLOSE_MARGIN_S", 0.0)
    make = factory()
    pub = Publisher(SETTINGS, "tx", overrides={"message.timeout.ms": 1500}, client=make)
    client = make.made[0]
    client.stuck = True
    pub.send(*records(3))
    threading.Timer(0.5, lambda: setattr(client, "stuck", False)).start()
    with caplog.at_level(logging.WARNING, logger="producer.publish"):
        assert pub.close() == 0  # the broker came back within message.timeout.ms
    assert "acknowledged nothing" in caplog.text and len(client.on("tx")) == 3

    pub = Publisher(SETTINGS, "tx", overrides={"message.timeout.ms": 200}, client=make)
    make.made[1].stuck = True
    pub.send(*records(2))
    started = time.monotonic()
    assert pub.close() == 2
    assert time.monotonic() - started < 5, "bounded by message.timeout.ms, not a fixed wait"
    assert pub.first_error == "2 still queued after 0 s"  # 0.2 s, rounded


def test_async_producer_answers_a_batch_once_every_record_is_reported():
    async def scenario():
        make = factory(refuse=too_large, capacity=5)
        producer = AsyncProducer(SETTINGS, make, **{"message.timeout.ms": 999})
        try:
            keys, values = records(40)
            good = await producer.send_all({"tx": list(zip(keys, values, strict=True)),
                                            "dlq": [(b"d", b"letter")]})
            bad = await producer.send_all({"tx": [(b"a", b"ok"), (b"b", BIG)]})
            await producer.send("tx", b"single", b"s")
            with pytest.raises(KafkaException):
                await producer.send("tx", BIG, b"s")
        finally:
            assert producer.close(1) == 0
        return make.made[0], keys, good, bad

    client, keys, good, bad = asyncio.run(scenario())
    assert client.conf["message.timeout.ms"] == 999 and client.conf["linger.ms"] == 2
    assert client.full_hits > 0, "a record waited for room, off the event loop"
    assert (good.acked, good.failed, good.first_error) == (41, 0, None)
    assert (bad.acked, bad.failed) == (1, 1) and bad.first_error.startswith("tx: ")
    assert [m.key() for m in client.on("tx")][:40] == keys
    assert client.on("dlq")[0].value() == b"letter"


def test_fake_producer_reports_like_librdkafka():
    """The stand-in's own contract: a record's callback overrides the default one, and
    with delivery.report.only.error only failures are reported."""
    seen = []
    p = FakeProducer({"on_delivery": lambda e, m: seen.append(("default", m.value())),
                      "delivery.report.only.error": True}, refuse=too_large)
    p.produce("t", b"ok")
    p.produce("t", BIG)
    p.produce("t", b"own", on_delivery=lambda e, m: seen.append(("own", m.value())))
    assert p.flush() == 0
    assert seen == [("default", BIG)]
