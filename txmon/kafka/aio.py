"""An asyncio face on confluent-kafka's producer: `await send(...)` resolves when the
broker has acknowledged the record, so an HTTP 200 means the record is durable.

`send_all` does the same for a whole batch with one future: the delivery reports are
counted in the poll thread and the request is woken once, by the last of them. A
future per record would cost a cross-thread wake-up per record; a blocking `flush` per
request would make concurrent requests wait for each other's records.

The configuration, the wait for room in a full queue and the counting of delivery
reports are txmon/kafka/produce.py's, as for every txmon producer; the futures are this
module's. A record that finds the queue full is queued from a worker thread, so the
event loop serves the other requests meanwhile. A record the client refuses as it is
queued (larger than message.max.bytes, an unknown topic: librdkafka raises
KafkaException at once) fails as one the broker refused would: `send` raises
KafkaException, `send_all` counts it, so a request gets its documented answer, not a
crash halfway through a batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer

from txmon.kafka.produce import COMMON, REQUEST, ClientFactory, Sender, Tally, producer_config
from txmon.settings import KafkaSettings

#: The API's producer settings without the connection: the benchmark's bare-producer
#: baseline (bench/ingest_api.py) uses the same. Build with
#: `producer_config(settings, REQUEST)`.
PRODUCER_CONFIG: dict[str, object] = {**COMMON, **REQUEST}

#: How long a record waiting for room sleeps between tries: the poll thread drains the
#: queue meanwhile.
_ROOM_WAIT_S = 0.005


class AsyncProducer:
    def __init__(self, settings: KafkaSettings, client: ClientFactory = Producer,
                 **overrides: object):
        self._sender = Sender(producer_config(settings, REQUEST, **overrides), client,
                              wait=lambda: time.sleep(_ROOM_WAIT_S))
        self._producer = self._sender.client
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

        await self._queue(topic, value, key, on_delivery)
        await done

    async def send_all(self, records: Mapping[str, Sequence[tuple[bytes, bytes]]]) -> Delivery:
        """Produce every (key, value) to its topic; returns once the broker has answered
        for all of them. The event loop gets a turn between chunks, so a large batch
        does not stall the other requests while it is being queued."""
        acks = _Acks(asyncio.get_running_loop())
        offer = self._sender.offer
        for topic, pairs in records.items():
            for start in range(0, len(pairs), _CHUNK):
                for key, value in pairs[start:start + _CHUNK]:
                    try:
                        if not offer(topic, value, key, acks):
                            await self._queue(topic, value, key, acks)
                    except KafkaException as exc:
                        acks.refuse(topic, exc)
                await asyncio.sleep(0)
        return await acks.sealed(sum(len(p) for p in records.values()))

    async def _queue(self, topic: str, value: bytes, key: bytes | None, on_delivery) -> None:
        """Queue one record; if the queue is full, wait for room off the event loop."""
        if not self._sender.offer(topic, value, key, on_delivery):
            await asyncio.to_thread(self._sender.produce, topic, value, key, on_delivery)

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
    (refused by the client as they were queued, or by the broker after librdkafka's own
    retries) and the first error, a refusal's if there was one."""

    acked: int
    failed: int
    first_error: str | None


def reason(exc: KafkaException) -> str:
    """librdkafka's words for a KafkaException."""
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


class _Acks(Tally):
    """One batch's delivery reports, counted as every producer's are (`Tally`), in the
    poll thread; `refuse` and `sealed` run in the event loop. Each writes only its own
    counters and reads the other's, so whichever sees the last report second wakes the
    batch (twice is harmless, never is not). A refused record gets no report: the
    reports expected are the records minus the refused."""

    __slots__ = ("loop", "future", "expected", "refused", "refusal")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.expected: int | None = None
        self.refused = 0
        self.refusal: str | None = None

    def refuse(self, topic: str, exc: KafkaException) -> None:
        """A record the client would not queue."""
        self.refused += 1
        if self.refusal is None:
            self.refusal = f"{topic}: {reason(exc)}"

    def __call__(self, err, msg) -> None:
        Tally.__call__(self, err, msg)
        if self.reported == self.expected:
            self.loop.call_soon_threadsafe(_settle, self.future, None)

    async def sealed(self, records: int) -> Delivery:
        self.expected = reports = records - self.refused
        if self.reported == reports:
            _settle(self.future, None)
        await self.future
        failed = self.failed + self.refused
        return Delivery(records - failed, failed, self.refusal or self.first_error)
