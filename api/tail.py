"""A background reader of whole topics, from their beginning, for the API's in-memory
views (History, LiveFeed).

A reader of txmon.kafka.read (no group, no commits): every API process rebuilds what it
shows from Kafka at start, so any number of them answer the same and none keeps state of
its own.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Iterable
from contextlib import closing
from typing import Protocol

from confluent_kafka import Consumer, KafkaException

from txmon.kafka.read import Ends, Tail, reader, watermarks
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
        self._asked: list[concurrent.futures.Future] = []
        self._asked_lock = threading.Lock()
        self._waiting: list[tuple[concurrent.futures.Future, Ends]] = []
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

    def caught_up(self) -> concurrent.futures.Future:
        """Done once every record in the topics now, committed or not, has been applied
        or passed over: the reader is read_committed, so it passes a transaction's
        records only once the transaction is over, and what it has not applied by then
        was aborted."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._asked_lock:
            self._asked.append(future)
        return future

    def _run(self) -> None:
        try:
            with Tail(reader(self.settings, f"txmon-{self.name}"), self.topics) as tail, \
                    closing(reader(self.settings, f"txmon-{self.name}-ends",
                                   **{"isolation.level": "read_uncommitted"})) as probe:
                for batch in tail.follow(self._stop):
                    self.feed(batch)
                    self._answer(tail, probe)
        except KafkaException as exc:
            log.error("%s reader stopped: %s", self.name, exc)

    def _answer(self, tail: Tail, probe: Consumer) -> None:
        """Settles the `caught_up` futures whose ends the reader has reached."""
        with self._asked_lock:
            asked, self._asked = self._asked, []
        if asked:
            try:
                marks = {(t, p): m for t in self.topics
                         for p, m in (watermarks(probe, t) or {}).items()
                         if (t, p) in tail.assigned}
                self._waiting += [(future, Ends(marks)) for future in asked]
            except KafkaException as exc:  # the broker cannot say now: ask next time
                log.warning("%s: where the topics end is not known yet: %s", self.name, exc)
                with self._asked_lock:
                    self._asked[:0] = asked
        still = []
        for future, ends in self._waiting:
            if ends.check(tail.consumer):
                future.set_result(None)
            else:
                still.append((future, ends))
        self._waiting = still
