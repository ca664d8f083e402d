"""The Kafka edge of the producer: throughput first, nothing lost quietly.

The producer is txmon's (txmon/kafka/produce.py) with its bulk profile: idempotent,
batched, lz4, a deep queue, deliveries reporting only errors. Every failed delivery is
counted, and whatever is still queued when `close` gives up counts as failed too: the
caller exits non-zero saying how many. What this module adds is saying so while the
brokers stop acknowledging, since records then wait, and a user sees nothing move.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import Producer

from txmon.contracts import DeadLetter, encode
from txmon.kafka.produce import FULL_WAIT_S, ClientFactory, Sender, bulk, producer_config
from txmon.settings import KafkaSettings

log = logging.getLogger(__name__)

#: A producer whose queue stays full this long says why it is not moving, then again
#: every as long while it stays blocked.
BLOCKED_REPORT_S = 5.0
#: `close` waits this long past message.timeout.ms for librdkafka's last reports.
CLOSE_MARGIN_S = 5.0


@dataclass
class Publisher:
    """Sends pre-encoded (key, value) pairs to one topic, dead letters to another."""

    settings: KafkaSettings
    topic: str
    dead_letter_topic: str | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    client: ClientFactory = field(default=Producer, repr=False)
    _acked: int = field(default=0, repr=False)
    _acked_at: float = field(default_factory=time.monotonic, repr=False)
    _reported_at: float | None = field(default=None, repr=False)

    def __post_init__(self):
        config = producer_config(self.settings, bulk(), **self.overrides)
        self._message_timeout_s = int(config["message.timeout.ms"]) / 1000
        self._sender = Sender(config, self.client, wait=self._wait_for_room)

    @property
    def sent(self) -> int:
        return self._sender.sent

    @property
    def failed(self) -> int:
        return self._sender.failed

    @property
    def first_error(self) -> str | None:
        return self._sender.first_error

    def send(self, keys: list[bytes], values: list[bytes], topic: str | None = None) -> None:
        self._sender.send(topic or self.topic, keys, values)
        self._watch()

    def _wait_for_room(self) -> None:
        self._sender.poll(FULL_WAIT_S)
        self._watch()

    def _watch(self) -> None:
        """Say when the brokers stop acknowledging (brokers down, or fewer in-sync
        replicas than `min.insync.replicas`: acks=all writes wait), and when they resume.
        Records wait in the queue meanwhile, and fail, counted, only after
        TXMON_PRODUCER_TIMEOUT_MS."""
        now = time.monotonic()
        queued = self._sender.in_flight
        acked = self._sender.delivered
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

    def close(self, timeout: float | None = None) -> int:
        """Wait for every delivery; returns how many failed (undelivered ones included).
        By default as long as librdkafka may keep a record (message.timeout.ms) and a
        margin: it reports each record it gives up on by then, while a shorter wait would
        call failed what a broker back in a moment still takes (a replay ending while
        its broker restarts). The wait says, as sending does, that nothing is acknowledged."""
        if timeout is None:
            timeout = self._message_timeout_s + CLOSE_MARGIN_S
        return self._sender.close(timeout, every=BLOCKED_REPORT_S,
                                  waiting=self._watch)
