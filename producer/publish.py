"""The Kafka edge of the producer: confluent-kafka, tuned for throughput, nothing lost quietly.

Idempotence is on (acks=all, no duplicates on retry, order kept per partition). Batching
and lz4 compression carry the throughput; the queue is deep enough that `produce` rarely
has to wait. Deliveries report only errors (`delivery.report.only.error`), so a healthy
run pays for no per-message callback, yet every failed delivery is counted, and whatever
is still queued when `close` gives up counts as failed too: the caller exits non-zero
saying how many.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Producer

from txmon.config import KafkaSettings
from txmon.contracts import DeadLetter, encode
from txmon.settings import ProducerSettings

log = logging.getLogger(__name__)

#: A producer whose queue stays full this long says why it is not moving, then again
#: every as long while it stays blocked.
BLOCKED_REPORT_S = 5.0


def producer_config(settings: KafkaSettings, **overrides: object) -> dict[str, object]:
    """librdkafka settings; each TXMON_PRODUCER_* variable overrides its default."""
    tuning = ProducerSettings.from_env()
    return settings.confluent(
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": tuning.linger_ms,
            # A batch must stay under the broker's message.max.bytes (1 MB by default)
            # even uncompressed, or the broker rejects all of it.
            "batch.size": tuning.batch_bytes,
            "batch.num.messages": tuning.batch_messages,
            "compression.type": tuning.compression,
            "queue.buffering.max.messages": tuning.queue_messages,
            "queue.buffering.max.kbytes": tuning.queue_kbytes,
            # The broker, not the client, judges record size: an oversized record becomes
            # a counted delivery failure instead of an exception halfway through a batch.
            "message.max.bytes": 16 * 1024 * 1024,
            "message.timeout.ms": tuning.timeout_ms,
            "delivery.report.only.error": True,
            **overrides,
        }
    )


@dataclass
class Publisher:
    """Sends pre-encoded (key, value) pairs to one topic, dead letters to another."""

    settings: KafkaSettings
    topic: str
    dead_letter_topic: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0
    first_error: str | None = None
    _acked: int = field(default=0, repr=False)
    _acked_at: float = field(default_factory=time.monotonic, repr=False)
    _reported_at: float | None = field(default=None, repr=False)

    def __post_init__(self):
        self._producer = Producer(
            producer_config(self.settings, on_delivery=self._on_delivery, **self.overrides)
        )

    def _on_delivery(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = f"{msg.topic()}: {err.str()}"

    def send(self, keys: list[bytes], values: list[bytes], topic: str | None = None) -> None:
        produce = self._producer.produce
        poll = self._producer.poll
        topic = topic or self.topic
        for key, value in zip(keys, values, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                self._when_room(topic, value, key)
        self.sent += len(values)
        poll(0)
        self._watch()

    def _when_room(self, topic: str, value: bytes, key: bytes) -> None:
        """The queue is full: the brokers acknowledge slower than we send, or not at all.
        Wait for room; the records stay queued until acknowledged or timed out."""
        while True:
            try:
                self._producer.produce(topic, value, key)
                return
            except BufferError:
                self._producer.poll(0.05)
                self._watch()

    def _watch(self) -> None:
        """Say when the brokers stop acknowledging (brokers down, or fewer in-sync
        replicas than `min.insync.replicas`: acks=all writes wait), and when they resume.
        Records wait in the queue meanwhile, and fail, counted, only after
        TXMON_PRODUCER_TIMEOUT_MS."""
        now = time.monotonic()
        queued = len(self._producer)
        acked = self.sent - queued - self.failed
        if acked > self._acked or not queued:
            if self._reported_at is not None:
                log.warning("Kafka acknowledges again after %.0fs", now - self._acked_at)
            self._acked, self._acked_at, self._reported_at = acked, now, None
        elif now - self._acked_at >= BLOCKED_REPORT_S and (
                self._reported_at is None or now - self._reported_at >= BLOCKED_REPORT_S):
            self._reported_at = now
            log.warning("Kafka has acknowledged nothing for %.0fs (%d records waiting): brokers"
                        " down or fewer in-sync replicas than min.insync.replicas; waiting, "
                        "nothing is dropped", now - self._acked_at, queued)

    def dead_letter(self, letter: DeadLetter, key: bytes | None = None) -> None:
        if not self.dead_letter_topic:
            raise RuntimeError("no dead-letter topic configured")
        self.send([key or b""], [encode(letter)], topic=self.dead_letter_topic)

    def close(self, timeout: float = 60.0) -> int:
        """Wait for every delivery; returns how many failed (undelivered ones included)."""
        deadline = time.monotonic() + timeout
        remaining = self._producer.flush(timeout)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(max(0.1, deadline - time.monotonic()))
        if remaining and self.first_error is None:
            self.first_error = f"{remaining} still queued after {timeout:.0f} s"
        self.failed += remaining
        return self.failed
