"""Reading a topic from its beginning up to where it ends now: state restores, training
from history, one-shot listings. (Live tails belong to consumers of their own.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from txmon.config import KafkaSettings

#: How long to wait for the broker's answer to a metadata or watermark request.
WATERMARK_TIMEOUT_S = 30.0


def _reader(settings: KafkaSettings, purpose: str) -> Consumer:
    """A consumer that is assigned partitions, never subscribes and never commits: the
    group id only names it in the broker's logs."""
    return Consumer(settings.confluent(**{
        "group.id": f"{purpose}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }))


def read_to_end(settings: KafkaSettings, topic: str, purpose: str = "txmon-read",
                timeout: float = 30.0) -> Iterator[Message]:
    """Every record now in `topic`, partition by partition in offset order. Joins no
    group (assigned partitions, no commits), so it disturbs nobody."""
    consumer = _reader(settings, purpose)
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    raise KafkaException(msg.error())
                if msg.offset() < ends.get(msg.partition(), 0):
                    yield msg
                if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                    ends.pop(msg.partition(), None)
    finally:
        consumer.close()


def read_range(settings: KafkaSettings, topic: str, partition: int, start: int, end: int,
               purpose: str = "txmon-read") -> list[Message]:
    """The records of one partition with offsets in [start, end), fewer only where
    retention already deleted the oldest."""
    consumer = _reader(settings, purpose)
    out: list[Message] = []
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                timeout=WATERMARK_TIMEOUT_S)
        start = max(start, low)
        if start >= end:
            return out
        consumer.assign([TopicPartition(topic, partition, start)])
        while True:
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    raise KafkaException(msg.error())
                if msg.offset() >= end:
                    return out
                out.append(msg)
                if msg.offset() + 1 >= end:
                    return out
    finally:
        consumer.close()
