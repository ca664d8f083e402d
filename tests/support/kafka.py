"""Reading topics back in tests: the only way to know what really reached the broker."""

from __future__ import annotations

import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient

from devstack.kafka.fetch import fetch, java_executable
from txmon.kafka.admin import wait_for_leaders
from txmon.kafka.read import follow, read_to_end, reader, watermarks
from txmon.settings import KafkaSettings

UNCOMMITTED = "read_uncommitted"
SETTLE_POLL_S = 0.1


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: tuple = ()

    @classmethod
    def of(cls, msg: Message) -> Record:
        return cls(msg.key(), msg.value(), msg.partition(), msg.offset(),
                   tuple(msg.headers() or ()))


def leaders(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[int, int]:
    """Each partition's leader, once the metadata has the topic's partitions and every one
    has a leader (right after creation, or while a leader moves, it may not)."""
    meta = wait_for_leaders(AdminClient(settings.confluent()), topic,
                            time.monotonic() + timeout)
    if meta is None:
        raise AssertionError(f"{topic}: no leader for every partition after {timeout}s")
    return {p: part.leader for p, part in meta.partitions.items()}


def end_offsets(settings: KafkaSettings, topic: str, timeout: float = 30.0,
                **overrides: object) -> dict[int, int]:
    """Each partition's end offset, once every partition has a leader to ask; {} for a
    topic that does not exist (yet): nothing to read. A read_committed reader's end is
    the last stable offset, before the first transaction still open."""
    with closing(reader(settings, "probe", **overrides)) as consumer:
        marks = watermarks(consumer, topic, timeout) or {}
    return {p: high for p, (_, high) in marks.items()}


def settle(settings: KafkaSettings, topic: str, timeout: float = 60.0) -> None:
    """Waits until no transaction is open on `topic`: a commit returns once the
    coordinator decided it, and the markers that make its records visible to
    read_committed readers reach the partitions a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        stable = end_offsets(settings, topic, timeout)
        if stable == end_offsets(settings, topic, timeout, **{"isolation.level": UNCOMMITTED}):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic}: transactions still open after {timeout}s")
        time.sleep(SETTLE_POLL_S)


def consume_all(
    settings: KafkaSettings,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 60.0,
    **overrides: object,
) -> list[Record]:
    """Everything in `topic` from the beginning up to its end offsets at call time (none
    for a topic that does not exist yet), or, with `expected`, the records as they come
    until that many arrived and then none for half a second (waiting up to `timeout`)."""
    if expected is None:
        if overrides.get("isolation.level") != UNCOMMITTED:
            settle(settings, topic, timeout)
        try:
            return [Record.of(msg) for msg in read_to_end(
                settings, topic, "test", deadline_s=timeout, on_error=lambda err: None,
                **overrides)]
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return []
            raise
    records: list[Record] = []
    last = time.monotonic()
    with closing(follow(settings, [topic], "test", timeout=timeout)) as batches:
        for batch in batches:
            records += [Record.of(msg) for msg in batch]
            if batch:
                last = time.monotonic()
            if len(records) >= expected and time.monotonic() - last > 0.5:
                break
    return records


#: Kafka's Java consumer, read_committed: the outside reader of exactly-once tests.
READ_COMMITTED_JAVA = Path(__file__).parent / "java" / "ReadCommitted.java"


def java_read_keys(settings: KafkaSettings, *topics: str, timeout: float = 120.0,
                   ) -> list[tuple[str, str]]:
    """(topic, key) of every record of `topics`, in each partition's order, as Kafka's
    own Java client with isolation.level=read_committed reads them (once no transaction
    is open on them): what a consumer outside txmon sees, duplicates included."""
    for topic in topics:
        settle(settings, topic, timeout)
    libs = fetch().libs
    proc = subprocess.run(
        [java_executable(), "-cp", f"{libs}/*", str(READ_COMMITTED_JAVA),
         settings.bootstrap, *topics],
        capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"the Java reader failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [tuple(line.split("\t", 1)) for line in proc.stdout.splitlines() if "\t" in line]
