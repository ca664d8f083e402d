"""In-memory stand-ins for confluent-kafka's clients, for unit tests of the code around
them (stage 1's counting, the producer wrapper, the API's batches): they record what
was produced, in order, and deliver it when polled or flushed, as librdkafka does.

Only what txmon calls is there. A broker's own behaviour (partitioning, compaction,
rebalances) is the integration tests' business, against a real one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException


@dataclass
class FakeMessage:
    """confluent_kafka.Message's accessors over plain fields."""

    topic_: str
    partition_: int
    offset_: int
    value_: bytes | None
    key_: bytes | None = None
    error_: KafkaError | None = None

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def value(self) -> bytes | None:
        return self.value_

    def key(self) -> bytes | None:
        return self.key_

    def error(self) -> KafkaError | None:
        return self.error_


class FakeProducer:
    """confluent_kafka.Producer built from its config: `on_delivery` there is the default
    report callback, a record's own overrides it. `capacity` bounds the local queue
    (BufferError beyond it); `refuse(topic, key, value)` returns the error the broker
    answers a record with, or None. Thread-safe, as the API's poll thread needs."""

    def __init__(self, conf: dict | None = None, capacity: int | None = None,
                 refuse: Callable[[str, bytes | None, bytes], KafkaError | None] | None = None):
        self.conf = dict(conf or {})
        self.capacity = capacity
        self.refuse = refuse or (lambda topic, key, value: None)
        self.queue: list[tuple[FakeMessage, Callable | None]] = []
        self.delivered: list[FakeMessage] = []
        self.failed: list[FakeMessage] = []
        self.full_hits = 0
        self.stuck = False  # True: nothing is delivered (a broker that went away)
        self._offsets: dict[str, int] = {}
        self._lock = threading.Lock()

    def produce(self, topic, value=None, key=None, on_delivery=None, partition=0, **_):
        with self._lock:
            if self.capacity is not None and len(self.queue) >= self.capacity:
                self.full_hits += 1
                raise BufferError("Local: Queue full")
            offset = self._offsets.get(topic, 0)
            self._offsets[topic] = offset + 1
            msg = FakeMessage(topic, partition, offset, value, key)
            self.queue.append((msg, on_delivery or self.conf.get("on_delivery")))

    def poll(self, timeout: float = 0.0) -> int:
        with self._lock:
            ready, self.queue = ([], self.queue) if self.stuck else (self.queue, [])
        for msg, callback in ready:
            err = self.refuse(msg.topic(), msg.key(), msg.value())
            (self.delivered if err is None else self.failed).append(msg)
            report = err is not None or not self.conf.get("delivery.report.only.error")
            if callback is not None and report:
                callback(err, msg)
        if not ready and timeout:
            time.sleep(min(timeout, 0.005))
        return len(ready)

    def flush(self, timeout: float = 0.0) -> int:
        self.poll()
        return len(self)

    def __len__(self) -> int:
        return len(self.queue)

    def on(self, topic: str) -> list[FakeMessage]:
        """What the broker holds of `topic`, in order."""
        return [m for m in self.delivered if m.topic() == topic]


def factory(cls: type[FakeProducer] | None = None, **kw) -> Callable[[dict], FakeProducer]:
    """A client factory (txmon.kafka.produce.ClientFactory) making `cls` (FakeProducer
    unless said) that keeps what it made in `.made`."""
    made: list[FakeProducer] = []

    def make(conf: dict) -> FakeProducer:
        made.append((cls or FakeProducer)(conf, **kw))
        return made[-1]

    make.made = made  # type: ignore[attr-defined]
    return make


def too_large(topic: str, key, value) -> KafkaError | None:
    """A broker refusing records over 1,000 bytes, as message.max.bytes would."""
    return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if len(value) > 1000 else None


class FakeConsumer:
    """confluent_kafka.Consumer in a group that assigns it `partitions` when first
    consumed from, then hands out the scripted `batches`; `high` is each partition's
    end offset (get_watermark_offsets)."""

    def __init__(self, batches: list[list[FakeMessage]] | None = None,
                 partitions: list[int] | None = None):
        self.batches = list(batches or [])
        self.partitions = partitions or [0]
        self.high: dict[int, int] = {}
        self.assigned: list = []
        self.commits: list = []
        self.seeks: list = []
        self.callbacks: dict[str, Callable] = {}
        self.closed = False
        self.on_empty: Callable[[], None] | None = None

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None) -> None:
        self.topics = list(topics)
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if not self.assigned:
            from confluent_kafka import TopicPartition

            self.callbacks["assign"](self, [TopicPartition(self.topics[0], p)
                                            for p in self.partitions])
        if self.batches:
            return self.batches.pop(0)
        if self.on_empty is not None:
            self.on_empty()
        return []

    def assign(self, tps) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in tps]

    def commit(self, offsets=None, asynchronous: bool = True) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def get_watermark_offsets(self, tp, timeout=None, cached=False) -> tuple[int, int]:
        return 0, self.high.get(tp.partition, 0)

    def seek(self, tp) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        self.closed = True


class FakeTransactionalProducer(FakeProducer):
    """A transactional producer: what a transaction produced is held back until its
    commit, and dropped by an abort or by a commit that finds a refused record (which
    raises, as librdkafka does, an error that requires an abort)."""

    def __init__(self, conf: dict | None = None, **kw):
        super().__init__(conf, **kw)
        self.committed: list[FakeMessage] = []
        self.aborted: list[FakeMessage] = []
        self._start = (0, 0)
        self.transactions = 0
        #: The input offsets each committed transaction carried (send_offsets_to_transaction).
        self.offsets: list[list[tuple[str, int, int]]] = []
        self._offsets_sent: list[tuple[str, int, int]] = []

    def init_transactions(self, timeout: float = -1) -> None:
        pass

    def purge(self, *_, **__) -> None:
        with self._lock:
            self.queue = []

    def begin_transaction(self) -> None:
        self.poll()
        self._start = (len(self.delivered), len(self.failed))
        self._offsets_sent = []

    def send_offsets_to_transaction(self, offsets, group_metadata, timeout: float = -1) -> None:
        self._offsets_sent = [(tp.topic, tp.partition, tp.offset) for tp in offsets]

    def _this_transaction(self) -> tuple[list[FakeMessage], list[FakeMessage]]:
        self.poll()
        ok, failed = self._start
        return self.delivered[ok:], self.failed[failed:]

    def commit_transaction(self, timeout: float = -1) -> None:
        ok, refused = self._this_transaction()
        if refused:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE,
                                            "a record was refused", txn_requires_abort=True))
        self.committed += ok
        self.transactions += 1
        if self._offsets_sent:
            self.offsets.append(self._offsets_sent)

    def abort_transaction(self, timeout: float = -1) -> None:
        ok, refused = self._this_transaction()
        self.aborted += ok + refused

    def on(self, topic: str) -> list[FakeMessage]:
        """What read_committed readers see of `topic`, in order."""
        return [m for m in self.committed if m.topic() == topic]
