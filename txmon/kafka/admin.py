"""Topic creation. Faust does not create source topics, and replay must not race the
processor to create them with the wrong settings, so every component calls this first."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from txmon.config import KafkaSettings, env_int
from txmon.contracts import Topics
from txmon.errors import UserError
from txmon.kafka import probe_logger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    config: dict[str, str] = field(default_factory=dict)


def pipeline_topics(names: Topics) -> list[TopicSpec]:
    """The pipeline's topics with their settings.

    Transactions are partitioned for scale-out (TXMON_PARTITIONS). Window counts and
    alerts are keyed by deterministic ids and compacted, so a re-emitted minute or alert
    replaces its twin instead of piling up; one partition keeps minutes in order.
    """
    partitions = env_int("TXMON_PARTITIONS", 3)
    replication = env_int("TXMON_REPLICATION", 1)
    keep = {"cleanup.policy": "compact,delete", "retention.ms": str(30 * 24 * 3600 * 1000)}
    return [
        TopicSpec(names.transactions, partitions, replication),
        # The merge re-reads it from the start after a restart: keep it bounded.
        TopicSpec(names.window_partials, 1, replication,
                  {"retention.ms": str(env_int("TXMON_PARTIALS_RETENTION_HOURS", 24) * 3600_000)}),
        TopicSpec(names.partition_state, 1, replication, {
            "cleanup.policy": "compact", "segment.ms": "60000",
            "min.cleanable.dirty.ratio": "0.1"}),
        TopicSpec(names.window_counts, 1, replication, keep),
        TopicSpec(names.alerts, 1, replication, keep),
        TopicSpec(names.dead_letter, 1, replication),
    ]


def wait_for_kafka(settings: KafkaSettings, wait_s: float, probe_s: float = 5.0) -> None:
    """Services start in any order (Compose, systemd, a broker restarting): a worker
    started before its broker waits for it, saying so, rather than exiting; only after
    `wait_s` does it give up with a one-line error."""
    admin = AdminClient(settings.confluent(logger=probe_logger()))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            admin.list_topics(timeout=probe_s)
            return
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise UserError(f"cannot reach Kafka at {settings.bootstrap} after "
                                f"{wait_s:g}s: {exc}") from None
            log.warning("waiting for Kafka at %s (%s)", settings.bootstrap, exc.args[0])


def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient(settings.confluent())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise UserError(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from None
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication,
                 config=s.config)
        for s in specs
        if s.name not in existing
    ]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                raise UserError(f"cannot create topic {name}: {exc}") from None


def partition_count(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> int:
    admin = AdminClient(settings.confluent())
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise UserError(f"topic {topic} does not exist")
    return len(meta.partitions)
