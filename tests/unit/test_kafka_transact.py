"""txmon.kafka.transact without a broker: a batch its caller gave up on before a
transaction took it is never written; an unknown outcome is settled at once, not at the
next batch, retried while the broker cannot answer; a step whose call never returns is
given up on, its client left alone and replaced."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from support.fake_kafka import FakeTransactionalProducer

from txmon.kafka import transact
from txmon.kafka.transact import Steps, TransactionalWriter

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


class Stuck(FakeTransactionalProducer):
    """send_offsets_to_transaction blocks past its timeout until `release` (librdkafka
    while the group coordinator is away); every other call on it is recorded."""

    release = threading.Event()

    def __init__(self, conf=None, **kw):
        super().__init__(conf, **kw)
        self.calls_after: list[str] = []
        self.stuck = False

    def send_offsets_to_transaction(self, offsets, group_metadata, timeout: float = -1):
        self.stuck = True
        Stuck.release.wait(30)
        raise KafkaException(KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, "old epoch"))

    def __getattribute__(self, name):
        if name in {"abort_transaction", "purge", "flush", "commit_transaction"} \
                and object.__getattribute__(self, "stuck"):
            object.__getattribute__(self, "calls_after").append(name)
        return object.__getattribute__(self, name)


class Group:
    def consumer_group_metadata(self) -> str:
        return "group-metadata"


def test_a_step_whose_call_never_returns_is_given_up_and_its_client_left_alone(monkeypatch):
    monkeypatch.setattr(transact, "HUNG_MARGIN_S", 0.1)
    made: list[FakeTransactionalProducer] = []

    def make(conf: dict):
        made.append(Stuck(conf) if not made else FakeTransactionalProducer(conf))
        return made[-1]

    steps = Steps({"transactional.id": "m", "transaction.timeout.ms": 100}, Group(), make)
    offsets = [TopicPartition("partials", 0, 5)]
    try:
        assert steps.commit([("out", b"k", b"v")], [], offsets) is False
        assert len(made) == 2 and steps.producer is made[1], "a new producer took over"
        assert made[0].calls_after == [], "nothing else asked of the hung client"
        assert made[0].on("out") == []
        assert steps.commit([("out", b"k", b"v")], [], offsets) is True
        assert [m.value() for m in made[1].on("out")] == [b"v"]
        steps.close()
        assert made[0].calls_after == []
    finally:
        Stuck.release.set()


@pytest.fixture(autouse=True)
def _fresh_gate():
    Gated.gate.clear()
    Gated.entered.clear()
    Stuck.release.clear()
