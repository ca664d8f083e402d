"""A background reader of whole topics, from their beginning, for the API's in-memory
views (History, LiveFeed).

A reader of txmon.kafka.read (no group, no commits): every API process rebuilds what it
shows from Kafka at start, so any number of them answer the same and none keeps state of
its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

from confluent_kafka import KafkaException

from txmon.kafka.read import follow
from txmon.settings import KafkaSettings

log = logging.getLogger(__name__)


class Record(Protocol):
    """What `feed` takes of a record: confluent_kafka.Message's accessors."""

    def topic(self) -> str: ...

    def value(self) -> bytes | None: ...

    def timestamp(self) -> tuple[int, int]: ...


class TopicTail:
    """Applies every record of `topics`, then each new one, in a daemon thread; a
    subclass says what a record does to its view (`apply`) under `self.lock`. Nothing
    here talks to Kafka before `start`: a test feeds records to `feed` itself."""

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

    def feed(self, records: Iterable[Record]) -> None:
        """Applies records as they come from Kafka, in order."""
        for msg in records:
            self.apply(msg.topic(), msg.value(), msg.timestamp()[1] / 1000)

    def _run(self) -> None:
        try:
            for batch in follow(self.settings, self.topics, f"txmon-{self.name}",
                                stop=self._stop):
                self.feed(batch)
        except KafkaException as exc:
            log.error("%s reader stopped: %s", self.name, exc)
