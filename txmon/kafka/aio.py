"""An asyncio face on confluent-kafka's producer: `await send(...)` resolves when the
broker has acknowledged the record, so an HTTP 200 means the record is durable."""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import KafkaException, Producer

from txmon.config import KafkaSettings


class AsyncProducer:
    def __init__(self, settings: KafkaSettings, **overrides: object):
        conf = settings.confluent(**{
            "enable.idempotence": True,
            "linger.ms": 2,
            "compression.type": "lz4",
            **overrides,
        })
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
