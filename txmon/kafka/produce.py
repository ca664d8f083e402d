"""Producing to Kafka, once for every txmon writer: one librdkafka configuration with a
profile per kind of caller, and one answer to a full local queue and to a refused record.

A record is never dropped on the client side: when librdkafka's queue is full,
`produce` waits for room (the brokers acknowledge slower than we send, or not at all)
instead of failing halfway through a batch. A record the broker refuses, after
librdkafka's own retries, is counted with the first error kept, and each caller decides
what a failure means to it: stage 1 must not checkpoint past it (`settle` raises
DeliveryFailed), the producer CLI reports how many (`close`), the API answers 503
(txmon/kafka/aio.py, on the same `Sender`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Producer

from txmon.settings import KafkaSettings, ProducerSettings

#: Every txmon producer: idempotent, so a retry never writes a record twice and a
#: partition keeps its order (which needs acks=all: nothing is acknowledged that a
#: leader change could lose); lz4, which the merge stage's aiokafka reads too.
COMMON: dict[str, object] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
}

#: The HTTP API: a request waits for its records' acknowledgement, so linger is short
#: (a lone /check waits for it).
REQUEST: dict[str, object] = {"linger.ms": 2}

#: Stage 1's partials, dead letters and state: flushed at every checkpoint (a tick), so
#: batching beyond a few milliseconds would only delay the checkpoint.
PIPELINE: dict[str, object] = {"linger.ms": 5}


def bulk(tuning: ProducerSettings | None = None) -> dict[str, object]:
    """`txmon produce` and `txmon replay`: throughput first, each TXMON_PRODUCER_*
    variable overriding its default. Deliveries report only errors, so a healthy run
    pays for no per-record callback."""
    tuning = tuning or ProducerSettings.from_env()
    return {
        "linger.ms": tuning.linger_ms,
        # A batch must stay under the broker's message.max.bytes (1 MB by default)
        # even uncompressed, or the broker rejects all of it.
        "batch.size": tuning.batch_bytes,
        "batch.num.messages": tuning.batch_messages,
        "compression.type": tuning.compression,
        "queue.buffering.max.messages": tuning.queue_messages,
        "queue.buffering.max.kbytes": tuning.queue_kbytes,
        # The broker, not the client, judges record size: an oversized record becomes a
        # counted delivery failure instead of an exception halfway through a batch.
        "message.max.bytes": 16 * 1024 * 1024,
        "message.timeout.ms": tuning.timeout_ms,
        "delivery.report.only.error": True,
    }


def producer_config(settings: KafkaSettings, profile: Mapping[str, object],
                    **overrides: object) -> dict[str, object]:
    """The librdkafka configuration of a txmon producer: the connection, then COMMON,
    the caller's profile and its own overrides, later ones winning."""
    return settings.confluent(**{**COMMON, **profile, **overrides})


class DeliveryFailed(RuntimeError):
    """The broker did not take a record: whatever was to be written after it must not be."""


class Tally:
    """Delivery reports counted, in librdkafka's poll thread. The first error is kept:
    the ones after it are nearly always the same (the broker down, the record too large)."""

    __slots__ = ("reported", "failed", "first_error")

    def __init__(self) -> None:
        self.reported = self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = f"{msg.topic()}: {err.str()}"
        self.reported += 1


#: How long one wait for room in a full queue serves delivery reports.
FULL_WAIT_S = 0.05

#: confluent_kafka.Producer, or a test's stand-in with its produce/poll/flush/__len__.
ClientFactory = Callable[[dict[str, object]], Any]


class Sender:
    """A producer that waits for room rather than drop a record, and counts deliveries.

    `wait` is what to do while the local queue is full: by default serve delivery
    reports (which frees room); a caller whose reports are served by a thread of its
    own (the API's) only sleeps. `sent` counts the records handed to the client."""

    def __init__(self, conf: Mapping[str, object], client: ClientFactory = Producer,
                 wait: Callable[[], None] | None = None):
        self.tally = Tally()
        self.client = client({**conf, "on_delivery": self.tally})
        self.sent = 0
        self.undelivered = 0
        self._wait = wait or self._serve
        self._failed_settled = 0

    def _serve(self) -> None:
        self.client.poll(FULL_WAIT_S)

    def offer(self, topic: str, value: bytes, key: bytes | None = None,
              on_delivery: Callable | None = None) -> bool:
        """Queue one record if there is room now; False if not (nothing queued): for a
        caller that must not block, the event loop."""
        if not self._try(topic, value, key, on_delivery):
            return False
        self.sent += 1
        return True

    def produce(self, topic: str, value: bytes, key: bytes | None = None,
                on_delivery: Callable | None = None) -> None:
        """Queue one record, waiting for room as long as the queue stays full (records
        fail, counted, only after librdkafka's message.timeout.ms)."""
        self._when_room(topic, value, key, on_delivery)
        self.sent += 1

    def send(self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes]) -> None:
        """Queue many records: the throughput path, one client call per record while
        there is room."""
        produce = self.client.produce
        for key, value in zip(keys, values, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                self._when_room(topic, value, key, None)
        self.sent += len(values)
        self.client.poll(0)

    def _try(self, topic: str, value: bytes, key: bytes | None,
             on_delivery: Callable | None) -> bool:
        try:
            if on_delivery is None:
                self.client.produce(topic, value, key)
            else:  # this record's report goes there, not to the tally
                self.client.produce(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            return False
        return True

    def _when_room(self, topic: str, value: bytes, key: bytes | None,
                   on_delivery: Callable | None) -> None:
        while not self._try(topic, value, key, on_delivery):
            self._wait()

    def poll(self, timeout: float = 0.0) -> None:
        self.client.poll(timeout)

    @property
    def in_flight(self) -> int:
        """Records queued or sent and not yet reported on."""
        return len(self.client)

    @property
    def failed(self) -> int:
        """Records the broker refused, and those `close` gave up waiting for."""
        return self.tally.failed + self.undelivered

    @property
    def delivered(self) -> int:
        """Acknowledged records, counted without a report each (a bulk producer asks
        only for errors)."""
        return self.sent - self.in_flight - self.tally.failed

    @property
    def first_error(self) -> str | None:
        return self.tally.first_error

    def flush(self, timeout: float) -> int:
        """Wait for the reports of everything queued; returns how many are still out."""
        return self.client.flush(timeout)

    def settle(self, timeout: float = 60.0) -> None:
        """Everything queued is acknowledged, or DeliveryFailed: what a checkpoint
        needs before it writes the state that says those records were sent."""
        remaining = self.client.flush(timeout)
        failed = self.tally.failed - self._failed_settled
        self._failed_settled = self.tally.failed
        if remaining or failed:
            raise DeliveryFailed(f"{remaining} undelivered, {failed} refused "
                                 f"(first: {self.tally.first_error})")

    def close(self, timeout: float = 60.0, *, every: float = math.inf,
              waiting: Callable[[], None] | None = None) -> int:
        """Wait up to `timeout` for every delivery; returns how many failed, those
        still queued then included. `waiting` is called every `every` seconds while
        records are still out, so a long wait can say why."""
        deadline = time.monotonic() + timeout
        remaining = self.client.flush(min(timeout, every))
        while remaining and time.monotonic() < deadline:
            if waiting is not None:
                waiting()
            remaining = self.client.flush(max(0.1, min(every, deadline - time.monotonic())))
        if remaining and self.tally.first_error is None:
            self.tally.first_error = f"{remaining} still queued after {timeout:.0f} s"
        self.undelivered += remaining
        return self.failed
