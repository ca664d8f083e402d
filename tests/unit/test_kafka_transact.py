"""txmon.kafka.transact's writer thread without a broker: a batch its caller gave up on
before a transaction took it is never written, and an unknown outcome is settled at
once, not at the next batch, retried while the broker cannot answer."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from support.fake_kafka import FakeTransactionalProducer

from txmon.kafka import transact
from txmon.kafka.transact import TransactionalWriter

TOPIC = "transactions"


class Gated(FakeTransactionalProducer):
    """Its first commit waits for `gate`: the writer thread is busy meanwhile."""

    gate = threading.Event()
    entered = threading.Event()

    def commit_transaction(self, timeout: float = -1) -> None:
        if not self.transactions:
            Gated.entered.set()
            Gated.gate.wait(10)
        super().commit_transaction(timeout)


def test_a_batch_cancelled_before_its_transaction_is_never_written():
    made: list[Gated] = []
    writer = TransactionalWriter({"transactional.id": "t"},
                                 lambda conf: made.append(Gated(conf)) or made[-1])
    first = writer.submit({TOPIC: [(b"k", b"first")]})
    assert Gated.entered.wait(10)
    dropped = writer.submit({TOPIC: [(b"k", b"dropped")]})
    assert dropped.cancel()
    Gated.gate.set()
    last = writer.submit({TOPIC: [(b"k", b"last")]})
    assert first.result(10).committed and last.result(10).committed
    writer.close(1)
    assert [m.value() for m in made[0].on(TOPIC)] == [b"first", b"last"]


class Unanswered(FakeTransactionalProducer):
    """Every commit times out (retriable: librdkafka cannot say how it ended)."""

    def commit_transaction(self, timeout: float = -1) -> None:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "commit timed out",  # noqa: SLF001
                                        retriable=True))


def test_an_unknown_outcome_is_settled_without_waiting_for_another_batch(monkeypatch):
    monkeypatch.setattr(transact, "RESOLVE_RETRY_S", 0.01)
    inits = []

    def make(conf: dict):
        inits.append(conf)
        if len(inits) == 1:
            return Unanswered(conf)
        producer = FakeTransactionalProducer(conf)
        if len(inits) < 4:  # the broker is still away for two tries
            producer.init_transactions = _unreachable
        return producer

    writer = TransactionalWriter({"transactional.id": "t"}, make)
    outcome = writer.submit({TOPIC: [(b"k", b"v")]}).result(10)
    assert outcome.state == "unknown"
    writer.settled().result(10)
    assert len(inits) == 4, "settled by the third new producer, the first that could init"
    assert writer.submit({TOPIC: [(b"k", b"next")]}).result(10).committed
    writer.close(1)


def _unreachable(timeout: float = -1) -> None:
    raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))  # noqa: SLF001


@pytest.fixture(autouse=True)
def _fresh_gate():
    Gated.gate.clear()
    Gated.entered.clear()
