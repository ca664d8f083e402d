"""Reading topics, the one way txmon does it: up to where they end now (state restores,
training, reports, tests) or on and on as they grow (the API's views, `txmon alerts
--follow`, the exporter, watchers in tests and benchmarks).

- `reader_config` / `reader`: a consumer that disturbs nobody (no group, no commits).
- `watermarks` and `Ends`: where a topic ends now, and the one test of having read it
  that far, by offsets (no partition-EOF events: they say nothing of records written
  after the look, and every reader would have to count them per partition again).
- `read_to_end`, `read_range`: a snapshot. `Tail`, `follow`: the records as they come.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from txmon.kafka import TIMED_OUT
from txmon.kafka.admin import NOT_READY as TOPIC_NOT_READY
from txmon.settings import KafkaSettings

#: (topic, partition): a partition, as every reader here keys its bookkeeping.
Key = tuple[str, int]
#: What a reader does with librdkafka's error events (a broker away, reconnecting):
#: they are reports, the client retries by itself. None where one takes it: raise.
OnError = Callable[[KafkaError], object] | None

#: How long to wait for the broker's answer to a metadata or watermark request.
WATERMARK_TIMEOUT_S = 30.0
METADATA_TIMEOUT_S = 10.0
#: A follower looks for partitions it does not read yet (partitions added) this often.
REFRESH_S = 30.0
POLL_S = 0.2
RETRY_S = 0.2
#: A partition without a leader yet (a topic just created, a leader moving), or a new
#: leader without a high watermark yet (KIP-207): no answer yet, ask again.
NOT_READY = TOPIC_NOT_READY | {KafkaError.OFFSET_NOT_AVAILABLE}


def reader_config(settings: KafkaSettings, purpose: str, **overrides: object) -> dict:
    """librdkafka settings of a reader. It is assigned partitions and never subscribes,
    so it joins no group and no rebalance waits for it; it never commits, so it leaves
    no offsets behind; its group id, new each time, only names it (`purpose`) in the
    broker's logs. The end of a topic is known from offsets (`Ends`), so no EOF events
    unless `overrides` (fetch settings, error_cb, logger) ask for them."""
    return settings.confluent(**{
        "group.id": f"{purpose}-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        # Records of aborted or open transactions are never read (librdkafka's default,
        # said here because exactly-once output depends on it).
        "isolation.level": "read_committed",
        **overrides,
    })


def reader(settings: KafkaSettings, purpose: str, **overrides: object) -> Consumer:
    """A consumer with `reader_config`."""
    return Consumer(reader_config(settings, purpose, **overrides))


def retry(call: Callable[[], object], deadline: float):
    """`call()`'s answer, asked again while it raises a not-ready error (NOT_READY)
    and `time.monotonic()` is before `deadline`; then the error is raised."""
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in NOT_READY or time.monotonic() >= deadline:
                raise
        time.sleep(RETRY_S)


def watermarks(consumer: Consumer, topic: str,
               timeout: float = WATERMARK_TIMEOUT_S) -> dict[int, tuple[int, int]] | None:
    """Each partition's (low, high) offsets now, asked of its leader once every partition
    has one: just after a topic is created its partitions may have none, or answer
    NOT_LEADER_FOR_PARTITION, for seconds. None for a topic that does not exist."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(deadline - time.monotonic(), 1.0)

    def leaders() -> list[int] | None:
        meta = consumer.list_topics(topic, timeout=left()).topics.get(topic)
        if meta is None or meta.error is not None and \
                meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        if meta.error is not None:
            raise KafkaException(meta.error)
        if not meta.partitions or min(p.leader for p in meta.partitions.values()) < 0:
            raise KafkaException(KafkaError(KafkaError.LEADER_NOT_AVAILABLE))
        return sorted(meta.partitions)

    def marks(p: int) -> tuple[int, int]:
        found = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=left())
        if found is None:
            raise KafkaException(KafkaError(TIMED_OUT))
        return found

    partitions = retry(leaders, deadline)
    if partitions is None:
        return None
    return {p: retry(lambda p=p: marks(p), deadline) for p in partitions}


class Ends:
    """Where each partition ended when looked at, and which are not read up to there
    yet. A partition is read once the next offset to read reaches its end, as a record
    says (its offset + 1) or the consumer's position, which also moves past offsets no
    record shows (transaction markers): the last offset need not be a record."""

    def __init__(self, marks: Mapping[Key, tuple[int, int]]):
        #: key -> (first offset to read, end offset): watermarks, or a range.
        self.marks = dict(marks)
        #: key -> end, for the partitions with records still to read.
        self.left = {k: end for k, (first, end) in self.marks.items() if end > first}

    def within(self, key: Key, offset: int) -> bool:
        """Whether the record at `offset` was there when the ends were noted."""
        first, end = self.marks.get(key, (0, 0))
        return first <= offset < end

    def reached(self, key: Key, next_offset: int) -> None:
        """The next offset to read of `key` is `next_offset`."""
        if next_offset >= self.left.get(key, math.inf):
            del self.left[key]

    def seen(self, msg: Message) -> None:
        self.reached((msg.topic(), msg.partition()), msg.offset() + 1)

    def check(self, consumer: Consumer) -> bool:
        """True once every partition is read to its end (the positions counted in)."""
        if self.left:
            for tp in consumer.position([TopicPartition(t, p) for t, p in self.left]):
                self.reached((tp.topic, tp.partition), tp.offset)
        return not self.left

    def assignment(self) -> list[TopicPartition]:
        """The partitions still to read, each from its first offset."""
        return [TopicPartition(t, p, self.marks[(t, p)][0]) for t, p in sorted(self.left)]


def _existing(consumer: Consumer, topic: str, timeout: float) -> dict[int, tuple[int, int]]:
    marks = watermarks(consumer, topic, timeout)
    if marks is None:
        raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                        f"topic {topic} does not exist"))
    return marks


def _drain(consumer: Consumer, ends: Ends, deadline: float, on_error: OnError,
           ) -> Iterator[Message]:
    consumer.assign(ends.assignment())
    while not ends.check(consumer):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not read to the end: {ends.left}")
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error() is not None:
                if on_error is None:
                    raise KafkaException(msg.error())
                on_error(msg.error())
                continue
            if ends.within((msg.topic(), msg.partition()), msg.offset()):
                yield msg
            ends.seen(msg)


def read_to_end(settings: KafkaSettings, topic: str, purpose: str = "txmon-read",
                timeout: float = WATERMARK_TIMEOUT_S, *, deadline_s: float | None = None,
                on_error: OnError = None, **overrides: object) -> Iterator[Message]:
    """Every record now in `topic` (none written after the look), in offset order within
    each partition. KafkaException for a topic that does not exist and, unless
    `on_error` takes them, for error events; TimeoutError after `deadline_s`.
    `overrides` are the reader's (`reader_config`)."""
    deadline = math.inf if deadline_s is None else time.monotonic() + deadline_s
    consumer = reader(settings, purpose, **overrides)
    try:
        ends = Ends({(topic, p): m for p, m in _existing(consumer, topic, timeout).items()})
        yield from _drain(consumer, ends, deadline, on_error)
    finally:
        consumer.close()


def read_range(settings: KafkaSettings, topic: str, partition: int, start: int, end: int,
               purpose: str = "txmon-read") -> list[Message]:
    """The records of one partition with offsets in [start, end), fewer only where
    retention already deleted the oldest."""
    consumer = reader(settings, purpose)
    try:
        low, _ = _existing(consumer, topic, WATERMARK_TIMEOUT_S)[partition]
        ends = Ends({(topic, partition): (max(start, low), end)})
        return list(_drain(consumer, ends, math.inf, None))
    finally:
        consumer.close()


class Tail:
    """Whole topics followed by one consumer (a `reader`, or the exporter's own group):
    each partition is assigned from `start` (OFFSET_BEGINNING or OFFSET_END) once the
    metadata shows it, so a topic created later or a partition added is read too.
    `note_ends` and `caught_up` tell when what was there at a moment has been read."""

    def __init__(self, consumer: Consumer, topics: Iterable[str], start: int = OFFSET_BEGINNING):
        self.consumer, self.topics, self.start = consumer, tuple(topics), start
        self.assigned: set[Key] = set()
        self.ends: Ends | None = None
        self._looked = -math.inf

    def __enter__(self) -> Tail:
        return self

    def __exit__(self, *exc) -> None:
        self.consumer.close()

    def due(self) -> bool:
        """Time to look for partitions not read yet (`assign`): at every poll while a
        topic has none (it is being created), else every REFRESH_S."""
        every = REFRESH_S if {t for t, _ in self.assigned} >= set(self.topics) else 0.0
        return time.monotonic() - self._looked >= every

    def assign(self, timeout: float = METADATA_TIMEOUT_S) -> list[Key]:
        """Assigns the partitions of the topics not assigned yet and returns them; a
        topic the metadata has an error for is left for the next look. KafkaException
        when there is no metadata."""
        self._looked = time.monotonic()
        meta = self.consumer.list_topics(timeout=timeout).topics
        new = [(t, p) for t in self.topics if t in meta and meta[t].error is None
               for p in sorted(meta[t].partitions) if (t, p) not in self.assigned]
        if new:
            self.consumer.incremental_assign([TopicPartition(t, p, self.start) for t, p in new])
            self.assigned.update(new)
        return new

    def note_ends(self, topics: Iterable[str] | None = None,
                  timeout: float = WATERMARK_TIMEOUT_S) -> Ends:
        """Where the assigned partitions (of `topics`, default all) end now."""
        marks: dict[Key, tuple[int, int]] = {}
        for topic in topics or self.topics:
            found = watermarks(self.consumer, topic, timeout) or {}
            marks.update({(topic, p): m for p, m in found.items() if (topic, p) in self.assigned})
        self.ends = Ends(marks)
        return self.ends

    def caught_up(self) -> bool:
        """Whether everything there at `note_ends` has been read (False before it)."""
        return self.ends is not None and self.ends.check(self.consumer)

    def poll(self, timeout: float = POLL_S) -> list[Message]:
        """The next records and error events; `ends` learns from the records."""
        batch = self.consumer.consume(1000, timeout=timeout)
        if self.ends is not None:
            for msg in batch:
                if msg.error() is None:
                    self.ends.seen(msg)
        return batch

    def follow(self, stop: threading.Event | None = None,
               timeout: float | None = None) -> Iterator[list[Message]]:
        """The records, batch after batch (empty ones too, so the caller can look at its
        clock), until `stop` is set or `timeout` seconds have passed. Error events are
        left out and a failed look for partitions is tried again: librdkafka reconnects
        by itself, and a follower outlives a broker restart."""
        stop = stop or threading.Event()
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not stop.is_set() and time.monotonic() < deadline:
            if self.due():
                try:
                    self.assign()
                except KafkaException:
                    stop.wait(POLL_S)
                    continue
            yield [msg for msg in self.poll() if msg.error() is None]


def follow(settings: KafkaSettings, topics: Iterable[str], purpose: str, *,
           start: int = OFFSET_BEGINNING, stop: threading.Event | None = None,
           timeout: float | None = None, **overrides: object) -> Iterator[list[Message]]:
    """`Tail.follow` with a reader of its own (`overrides`: its librdkafka settings),
    closed when the iteration ends."""
    with Tail(reader(settings, purpose, **overrides), topics, start) as tail:
        yield from tail.follow(stop, timeout)
