"""A background reader of whole topics, from their beginning, for the API's in-memory
views (History, LiveFeed).

A fresh group id and no commits: every API process rebuilds what it shows from Kafka at
start, so any number of them answer the same and none keeps state of its own.
"""

from __future__ import annotations

import logging
import threading
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from txmon.config import KafkaSettings

log = logging.getLogger(__name__)


class TopicTail:
    """Applies every record of `topics`, then each new one, in a daemon thread; a
    subclass says what a record does to its view (`apply`) under `self.lock`."""

    def __init__(self, settings: KafkaSettings, topics: tuple[str, ...], name: str):
        self.settings, self.topics, self.name = settings, topics, name
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def apply(self, topic: str, value: bytes | None, at: float) -> None:
        """One record of `topic`, written to Kafka at `at` (epoch seconds)."""
        raise NotImplementedError

    def _run(self) -> None:
        consumer = Consumer(self.settings.confluent(**{
            "group.id": f"txmon-{self.name}-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }))
        try:
            parts = []
            for topic in self.topics:
                meta = consumer.list_topics(topic, timeout=30).topics[topic]
                parts += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions]
            consumer.assign(parts)
            while not self._stop.is_set():
                for msg in consumer.consume(1000, timeout=0.2):
                    if msg.error() is None:
                        self.apply(msg.topic(), msg.value(), msg.timestamp()[1] / 1000)
        except KafkaException as exc:
            log.error("%s reader stopped: %s", self.name, exc)
        finally:
            consumer.close()
