"""The Kafka edge of the producer: confluent-kafka, tuned for throughput, nothing lost quietly.

Idempotence is on (acks=all, no duplicates on retry, order kept per partition). Batching
and lz4 compression carry the throughput; the queue is deep enough that `produce` rarely
has to wait. Deliveries report only errors (`delivery.report.only.error`), so a healthy
run pays for no per-message callback, yet every failed delivery is counted, and whatever
is still queued when `close` gives up counts as failed too: the caller exits non-zero
saying how many.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Producer

from txmon.config import KafkaSettings
from txmon.contracts import DeadLetter, encode
from txmon.settings import ProducerSettings


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
                poll(0.05)
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        poll(0.05)
        self.sent += len(values)
        poll(0)

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
