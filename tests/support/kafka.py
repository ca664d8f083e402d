"""Reading topics back in tests: the only way to know what really reached the broker."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from txmon.config import KafkaSettings
from txmon.kafka.admin import NOT_READY, wait_for_leaders


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: tuple = ()


#: Also a new leader with no high watermark yet (KIP-207): ask again.
_NOT_READY = NOT_READY | {KafkaError.OFFSET_NOT_AVAILABLE}


def leaders(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Each partition's leader, once the metadata has the topic's partitions and every one
    has a leader (right after creation, or while a leader moves, it may not)."""
    meta = wait_for_leaders(AdminClient(settings.confluent()), topic,
                            time.monotonic() + timeout)
    if meta is None:
        raise AssertionError(f"{topic}: no leader for every partition after {timeout}s")
    return {p: part.leader for p, part in meta.partitions.items()}


def end_offsets(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Each partition's end offset, once every partition has a leader to ask; {} for a
    topic that does not exist (yet): nothing to read."""
    consumer = Consumer(settings.confluent(**{"group.id": f"probe-{uuid.uuid4()}"}))
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                if meta.error is not None and \
                        meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    return {}
                if meta.partitions and min(p.leader for p in meta.partitions.values()) >= 0:
                    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                              timeout=10)[1]
                            for p in meta.partitions}
            except KafkaException as exc:
                if exc.args[0].code() not in _NOT_READY:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: no end offsets after {timeout}s")
            time.sleep(0.2)
    finally:
        consumer.close()


def consume_all(
    settings: KafkaSettings,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 60.0,
    idle: float = 3.0,
) -> list[Record]:
    """Everything in `topic` from the beginning up to its end offsets at call time,
    or until `expected` records arrived (waiting up to `timeout` for them)."""
    consumer = Consumer(
        settings.confluent(
            **{
                "group.id": f"test-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
    )
    records: list[Record] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        ends = None
        while time.monotonic() < deadline:
            batch = consumer.consume(10000, timeout=0.5)
            for msg in batch:
                if msg.error():
                    continue
                records.append(
                    Record(msg.key(), msg.value(), msg.partition(), msg.offset(),
                           tuple(msg.headers() or ()))
                )
            if batch:
                last = time.monotonic()
            if expected is not None:
                if len(records) >= expected and time.monotonic() - last > 0.5:
                    break
                continue
            if ends is None:
                ends = end_offsets(settings, topic)
            seen: dict[int, int] = {}
            for r in records:
                seen[r.partition] = max(seen.get(r.partition, -1), r.offset + 1)
            if all(seen.get(p, 0) >= end for p, end in ends.items()) and (
                time.monotonic() - last > 0.2 or not batch
            ):
                break
            if not batch and time.monotonic() - last > idle and not any(ends.values()):
                break
        return records
    finally:
        consumer.close()
