"""An asyncio face on confluent-kafka's producer: `await send(...)` resolves when the
broker has acknowledged the record, so an HTTP 200 means the record is durable.

`send_all` does the same for a whole batch with one future: the delivery reports are
counted in the poll thread and the request is woken once, by the last of them. A
future per record would cost a cross-thread wake-up per record; a blocking `flush` per
request would make concurrent requests wait for each other's records.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer

from txmon.config import KafkaSettings

#: The API's producer: idempotent (no duplicate on a retry), short linger (a lone /check
#: waits for it), lz4. The benchmark's bare-producer baseline uses the same.
PRODUCER_CONFIG: dict[str, object] = {
    "enable.idempotence": True,
    "linger.ms": 2,
    "compression.type": "lz4",
}


class AsyncProducer:
    def __init__(self, settings: KafkaSettings, **overrides: object):
        conf = settings.confluent(**{**PRODUCER_CONFIG, **overrides})
        self._producer = Producer(conf)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll",
                                        daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def on_delivery(err, msg):
            if err is not None:
                result = KafkaException(err)
                loop.call_soon_threadsafe(_settle, done, result)
            else:
                loop.call_soon_threadsafe(_settle, done, None)

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let the poller drain it
                await asyncio.sleep(0.01)
        await done

    async def send_all(self, records: Mapping[str, Sequence[tuple[bytes, bytes]]]) -> Delivery:
        """Produce every (key, value) to its topic; returns once the broker has answered
        for all of them. The event loop gets a turn between chunks, so a large batch
        does not stall the other requests while it is being queued."""
        acks = _Acks(asyncio.get_running_loop())
        produce, delivered = self._producer.produce, acks.delivered
        for topic, pairs in records.items():
            for start in range(0, len(pairs), _CHUNK):
                for key, value in pairs[start:start + _CHUNK]:
                    try:
                        produce(topic, value, key, on_delivery=delivered)
                    except BufferError:  # local queue full: wait for the poller, once more
                        await self._produce_when_room(topic, key, value, delivered)
                await asyncio.sleep(0)
        return await acks.sealed(sum(len(p) for p in records.values()))

    async def _produce_when_room(self, topic: str, key: bytes, value: bytes, cb) -> None:
        while True:
            await asyncio.sleep(0.005)
            try:
                self._producer.produce(topic, value, key, on_delivery=cb)
                return
            except BufferError:
                continue

    def close(self, timeout: float = 10.0) -> int:
        """Flush and stop; returns how many records were still undelivered."""
        remaining = self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout=1.0)
        return remaining


def _settle(future: asyncio.Future, error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


#: Records queued between two turns of the event loop.
_CHUNK = 2000


@dataclass(frozen=True)
class Delivery:
    """A batch's outcome: how many records the broker acknowledged, how many it did not
    (after librdkafka's own retries) and the first error."""

    acked: int
    failed: int
    first_error: str | None


class _Acks:
    """One batch's delivery reports. `delivered` runs in the poll thread, `sealed` in the
    event loop; each writes only its own counter and reads the other's, so whichever
    sees the last report second wakes the batch (twice is harmless, never is not)."""

    __slots__ = ("loop", "future", "reported", "failed", "first_error", "expected")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.reported = self.failed = 0
        self.first_error: str | None = None
        self.expected: int | None = None

    def delivered(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = f"{msg.topic()}: {err.str()}"
        self.reported += 1
        if self.reported == self.expected:
            self.loop.call_soon_threadsafe(_settle, self.future, None)

    async def sealed(self, expected: int) -> Delivery:
        self.expected = expected
        if self.reported == expected:
            _settle(self.future, None)
        await self.future
        return Delivery(expected - self.failed, self.failed, self.first_error)
