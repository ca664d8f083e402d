"""Consumer lag of the processor's group: end offsets minus committed offsets.

Read from the broker with the admin API, the way `kafka-consumer-groups --describe` does,
so it is the truth even when the processor is dead (that is when it matters).
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from txmon.config import KafkaSettings

log = logging.getLogger(__name__)


def group_lag(admin: AdminClient, group: str, topic: str, timeout: float = 10.0
              ) -> dict[int, int] | None:
    """Lag per partition of `topic` for `group`, or None when the group has committed
    nothing on it yet (not started: no lag to speak of). A partition without a commit
    counts everything still retained on it as lag."""
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    partitions = [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    result = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group]
    committed = {tp.partition: tp.offset
                 for tp in result.result(timeout).topic_partitions if tp.offset >= 0}
    if not committed:
        return None
    latest = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions},
                                request_timeout=timeout)
    earliest = admin.list_offsets({tp: OffsetSpec.earliest() for tp in partitions},
                                  request_timeout=timeout)
    lags = {}
    for tp in partitions:
        end = latest[tp].result(timeout).offset
        start = earliest[tp].result(timeout).offset
        lags[tp.partition] = max(end - committed.get(tp.partition, start), 0)
    return lags


class LagPoller(threading.Thread):
    """Polls the lag every `interval` seconds into the exporter's gauges; a broker that is
    down counts an error and the next round tries again."""

    def __init__(self, settings: KafkaSettings, metrics, group: str, topic: str,
                 interval: float, stop: threading.Event):
        super().__init__(name="lag-poller", daemon=True)
        self.settings, self.metrics = settings, metrics
        self.group, self.topic, self.interval, self.stop = group, topic, interval, stop

    def run(self) -> None:
        admin = AdminClient(self.settings.confluent(
            **{"error_cb": lambda err: log.debug("lag admin: %s", err)}))
        while not self.stop.is_set():
            try:
                lags = group_lag(admin, self.group, self.topic)
                self.metrics.set_lag(self.group, self.topic, lags or {})
            except Exception as exc:
                # Never let a broker hiccup end lag reporting: count it, retry next round.
                self.metrics.kafka_error("lag")
                log.warning("consumer lag of %s unavailable: %s", self.group, exc)
            self.stop.wait(self.interval)
