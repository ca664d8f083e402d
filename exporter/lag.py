"""Consumer lag of the processor's group: end offsets minus committed offsets.

Read from the broker, the way `kafka-consumer-groups --describe` does, so it is the truth
even when the processor is dead (that is when it matters). The committed offsets are
fetched with a plain consumer that never subscribes (so it never joins the group): the
admin API's ListConsumerGroupOffsets aborted the whole process on a librdkafka assertion
(`rd_kafka_enq_once_del_source_return`) while the coordinator was reloading after a broker
restart, and an exporter must outlive its broker.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, TopicPartition

from txmon.kafka.read import watermarks
from txmon.settings import KafkaSettings

log = logging.getLogger(__name__)


def lag_consumer(settings: KafkaSettings, group: str) -> Consumer:
    """Not a txmon.kafka.read reader: it carries the processor's group id, the only way
    to be told that group's committed offsets, and must never store or commit any."""
    return Consumer(settings.confluent(**{
        "group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False,
        "error_cb": lambda err: log.debug("lag consumer: %s", err)}))


def group_lag(consumer: Consumer, topic: str, timeout: float = 10.0) -> dict[int, int] | None:
    """Lag per partition of `topic` for the consumer's group, or None when the group has
    committed nothing on it yet (not started: no lag to speak of). A partition without a
    commit counts everything still retained on it as lag."""
    marks = watermarks(consumer, topic, timeout)
    if marks is None:
        return None
    partitions = [TopicPartition(topic, p) for p in sorted(marks)]
    committed = {tp.partition: tp.offset
                 for tp in consumer.committed(partitions, timeout=timeout) if tp.offset >= 0}
    if not committed:
        return None
    return {p: max(high - committed.get(p, low), 0) for p, (low, high) in marks.items()}


class LagPoller(threading.Thread):
    """Polls the lag every `interval` seconds into the exporter's gauges; a broker that is
    down counts an error, and the next round tries again with a fresh client."""

    def __init__(self, settings: KafkaSettings, metrics, group: str, topic: str,
                 interval: float, stop: threading.Event):
        super().__init__(name="lag-poller", daemon=True)
        self.settings, self.metrics = settings, metrics
        self.group, self.topic, self.interval, self.stop = group, topic, interval, stop

    def run(self) -> None:
        consumer = None
        while not self.stop.is_set():
            try:
                consumer = consumer or lag_consumer(self.settings, self.group)
                lags = group_lag(consumer, self.topic)
                self.metrics.set_lag(self.group, self.topic, lags or {})
            except Exception as exc:
                # Never let a broker hiccup end lag reporting: count it, retry next round.
                self.metrics.kafka_error("lag")
                log.warning("consumer lag of %s unavailable: %s", self.group, exc)
                if consumer is not None:
                    consumer.close()
                    consumer = None
            self.stop.wait(self.interval)
        if consumer is not None:
            consumer.close()
