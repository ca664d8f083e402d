"""Topic creation. Faust does not create source topics, and replay must not race the
processor to create them with the wrong settings, so every component calls this first."""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic, TopicMetadata

from txmon.contracts import Topics
from txmon.errors import UserError
from txmon.kafka import TIMED_OUT, TRANSPORT, probe_logger
from txmon.settings import KafkaSettings, TopicLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create. `replication` None: as TopicLayout says for the cluster found
    (`replicated`), with its `min.insync.replicas`."""

    name: str
    partitions: int
    replication: int | None = None
    config: dict[str, str] = field(default_factory=dict)


def replicated(spec: TopicSpec, brokers: int, layout: TopicLayout | None = None) -> TopicSpec:
    """The spec with its replication and min.insync.replicas decided: three copies and two
    in sync on a cluster of three or more brokers, one otherwise, unless the settings say.
    Two in sync of three is what keeps a write acknowledged by acks=all through the loss
    of any one broker, without blocking producers while it is down."""
    layout = layout or TopicLayout.from_env()
    copies = spec.replication or layout.replication or (3 if brokers >= 3 else 1)
    in_sync = layout.min_insync or (2 if copies >= 3 else 1)
    if copies > brokers:
        raise UserError(f"topic {spec.name}: replication {copies} needs {copies} brokers, "
                        f"the cluster has {brokers} (TXMON_REPLICATION)")
    if in_sync > copies:
        raise UserError(f"topic {spec.name}: min.insync.replicas {in_sync} > replication "
                        f"{copies} (TXMON_MIN_INSYNC_REPLICAS)")
    config = {"min.insync.replicas": str(in_sync), **spec.config}
    return TopicSpec(spec.name, spec.partitions, copies, config)


def pipeline_topics(names: Topics) -> list[TopicSpec]:
    """The pipeline's topics with their settings.

    Transactions are partitioned for scale-out (TXMON_PARTITIONS). Window counts and
    alerts are keyed by deterministic ids and compacted, so a re-emitted minute or alert
    replaces its twin instead of piling up; one partition keeps minutes in order.
    """
    layout = TopicLayout.from_env()
    partitions, replication = layout.partitions, None  # decided for the cluster found
    keep = {"cleanup.policy": "compact,delete", "retention.ms": str(30 * 24 * 3600 * 1000)}
    return [
        TopicSpec(names.transactions, partitions, replication),
        # The merge re-reads it from the start after a restart: keep it bounded.
        TopicSpec(names.window_partials, 1, replication,
                  {"retention.ms": str(layout.partials_retention_hours * 3600_000)}),
        TopicSpec(names.partition_state, 1, replication, {
            "cleanup.policy": "compact", "segment.ms": "60000",
            "min.cleanable.dirty.ratio": "0.1"}),
        TopicSpec(names.window_counts, 1, replication, keep),
        TopicSpec(names.alerts, 1, replication, keep),
        TopicSpec(names.dead_letter, 1, replication),
        # The latest answer per key, for as long as a retry may come.
        TopicSpec(names.idempotency, 1, replication, {
            "cleanup.policy": "compact,delete",
            "retention.ms": str(layout.idempotency_hours * 3600_000),
            "segment.ms": str(3600_000)}),
    ]


#: How long a command gives a broker to answer before saying it is not there.
PROBE_SECONDS = 3.0
#: How often a new topic's leaders are looked for.
LEADER_POLL_SECONDS = 0.1
#: A worker waiting for its broker says so this often.
WAIT_REPORT_SECONDS = 10.0
START_HINT = "start one with `txmon kafka up`, or point KAFKA_BOOTSTRAP_SERVERS at yours"


def _listening(bootstrap: str, timeout: float) -> str | None:
    """None when some bootstrap address accepts a TCP connection, else why not: a
    refused connection is known in a millisecond, where a client would retry it for
    the whole timeout."""
    reasons = []
    for address in filter(None, (a.strip() for a in bootstrap.split(","))):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)),
                                          timeout=timeout):
                return None
        except (OSError, ValueError) as exc:
            reasons.append(getattr(exc, "strerror", None) or str(exc))
    return "; ".join(dict.fromkeys(reasons)) or "no address"


def probe_kafka(settings: KafkaSettings, timeout: float = PROBE_SECONDS) -> str | None:
    """None when the broker answers a metadata request within `timeout`, else why not."""
    reason = _listening(settings.bootstrap, timeout)
    if reason is not None:
        return reason
    try:
        AdminClient(settings.confluent(logger=probe_logger())).list_topics(timeout=timeout)
    except KafkaException as exc:
        return str(exc.args[0])
    return None


def require_kafka(settings: KafkaSettings, timeout: float = PROBE_SECONDS) -> None:
    """A command that needs the broker now says in one line that it is not there, rather
    than letting librdkafka retry (and print) for half a minute."""
    reason = probe_kafka(settings, timeout)
    if reason is not None:
        raise UserError(f"the Kafka broker at {settings.bootstrap} is not reachable "
                        f"({reason}): {START_HINT}")


def wait_for_kafka(settings: KafkaSettings, wait_s: float, probe_s: float = PROBE_SECONDS,
                   report_s: float = WAIT_REPORT_SECONDS) -> None:
    """Services start in any order (Compose, systemd, a broker restarting): a worker
    started before its broker waits for it, saying so once and then how long it has
    waited every `report_s`; only after `wait_s` does it give up with a one-line error."""
    started = time.monotonic()
    reported = None
    while (reason := probe_kafka(settings, probe_s)) is not None:
        waited = time.monotonic() - started
        if waited >= wait_s:
            raise UserError(f"cannot reach Kafka at {settings.bootstrap} after "
                            f"{wait_s:g}s ({reason}): {START_HINT}")
        if reported is None:
            log.warning("waiting for Kafka at %s (not reachable: %s) for up to %gs; %s",
                        settings.bootstrap, reason, wait_s, START_HINT)
            reported = waited
        elif waited - reported >= report_s:
            log.warning("still waiting for Kafka at %s: %.0fs of %gs", settings.bootstrap,
                        waited, wait_s)
            reported = waited
        time.sleep(min(1.0, max(0.0, wait_s - waited)))
    if reported is not None:
        log.info("Kafka at %s answers after %.0fs", settings.bootstrap,
                 time.monotonic() - started)


def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec], timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient(settings.confluent())
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise UserError(f"cannot reach Kafka at {settings.bootstrap}: {exc}") from None
    decided = [replicated(s, len(meta.brokers)) for s in specs if s.name not in meta.topics]
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication,
                    config=s.config) for s in decided]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                raise UserError(f"cannot create topic {name}: {exc}") from None
    deadline = time.monotonic() + timeout
    for spec in decided:
        if wait_for_leaders(admin, spec.name, deadline) is None:
            raise UserError(f"topic {spec.name} was created but has no leader after "
                            f"{timeout:g}s")


#: Errors of a topic not ready yet (just created, a leader moving) or of a broker slow
#: to answer just after its start: worth asking again.
NOT_READY = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                       KafkaError.UNKNOWN_TOPIC_OR_PART, TIMED_OUT, TRANSPORT})


def wait_for_leaders(admin: AdminClient, topic: str, deadline: float) -> TopicMetadata | None:
    """The topic's metadata once every partition has a leader, or None at the deadline
    (`time.monotonic()`).

    A broker learns of a new topic from the metadata log a moment after CreateTopics
    returns (seconds on a loaded machine), and until then says it does not exist: a
    worker that asked at once stopped with "does not exist", and producers started
    alongside delivered to some partitions seconds after others."""
    while True:
        left = deadline - time.monotonic()
        try:
            meta = admin.list_topics(topic, timeout=max(left, 0.1)).topics.get(topic)
        except KafkaException as exc:
            if exc.args[0].code() not in NOT_READY:
                raise UserError(f"cannot read the metadata of topic {topic}: {exc}") from None
            meta = None
        if meta is not None and meta.error is None and meta.partitions and all(
                p.leader >= 0 for p in meta.partitions.values()):
            return meta
        if left <= 0:
            return None
        time.sleep(min(LEADER_POLL_SECONDS, left))


def partition_count(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> int:
    meta = wait_for_leaders(AdminClient(settings.confluent()), topic,
                            time.monotonic() + timeout)
    if meta is None:
        raise UserError(f"topic {topic} does not exist or has no leader after {timeout:g}s")
    return len(meta.partitions)
