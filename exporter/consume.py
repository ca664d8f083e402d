"""The exporter's Kafka edge: reads window-counts, alerts and dead-letter into the metrics.

Every start reads the three topics from the beginning (window-counts and alerts are
compacted and keyed by deterministic ids), so counters, open incidents and freshness are a
function of the topics' content: restarting the exporter neither resets nor double counts
them. Partitions are assigned, not subscribed, so a broker restart or a group rebalance
never rewinds us; librdkafka reconnects by itself and we only count the errors meanwhile.

Ready means caught up: the end offsets of window-counts and alerts are noted once the
partitions are assigned, and the metrics read from the topics are served (and /ready
answers 200) only when every partition has been read up to them. A restarted exporter
thus never shows an open incident as gone, which would resolve its alert. Dead letters
are not waited for: they are not compacted (long to read) and no alert resolves on them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from exporter.metrics import PipelineMetrics
from txmon.config import KafkaSettings
from txmon.contracts import Topics
from txmon.errors import UserError
from txmon.kafka import PARTITION_EOF
from txmon.kafka.admin import ensure_topics, pipeline_topics

log = logging.getLogger(__name__)

DEFAULT_GROUP = "txmon-exporter"
METADATA_REFRESH_S = 30.0
LOG_EVERY_S = 30.0
_QUIET_ERRORS = {PARTITION_EOF}


class TopicReader:
    """Feeds `metrics` from the pipeline's output topics until `stop` is set."""

    def __init__(self, settings: KafkaSettings, names: Topics, metrics: PipelineMetrics,
                 stop: threading.Event, group: str = DEFAULT_GROUP, retry_s: float = 2.0):
        self.settings, self.names, self.metrics, self.stop = settings, names, metrics, stop
        self.group, self.retry_s = group, retry_s
        self.kinds = {names.window_counts: "window-counts", names.alerts: "alerts",
                      names.dead_letter: "dead-letter"}
        self._next: dict[tuple[str, int], int] = {}
        self._assigned: set[tuple[str, int]] = set()
        self.assigned = threading.Event()
        self._logged: dict[str, float] = {}
        #: (topic, partition) -> end offset still to reach before ready; None: not noted.
        self._pending: dict[tuple[str, int], int] | None = None

    def _on_error(self, err: KafkaError) -> None:
        # Broker down, connection refused...: librdkafka retries on its own. Every error is
        # counted; the log says each kind once per LOG_EVERY_S, not once per connection try.
        kind = err.name().lstrip("_").lower() or "client"
        self.metrics.kafka_error(kind)
        now = time.monotonic()
        if now - self._logged.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[kind] = now
            log.warning("kafka: %s", err)

    def _wait_for_topics(self) -> None:
        while not self.stop.is_set():
            try:
                specs = [s for s in pipeline_topics(self.names) if s.name in self.kinds]
                ensure_topics(self.settings, specs, timeout=10)
                self.metrics.kafka_ok()
                return
            except UserError as exc:
                self.metrics.kafka_error("connect")
                log.warning("waiting for Kafka: %s", exc)
                self.stop.wait(self.retry_s)

    def _assign_new(self, consumer: Consumer) -> None:
        try:
            meta = consumer.list_topics(timeout=10)
        except KafkaException as exc:
            self.metrics.kafka_error("metadata")
            log.warning("metadata refresh failed: %s", exc)
            return
        new = []
        for topic in self.kinds:
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                continue
            for p in tmeta.partitions:
                if (topic, p) not in self._assigned:
                    new.append(TopicPartition(topic, p, OFFSET_BEGINNING))
                    self._assigned.add((topic, p))
        if new:
            consumer.incremental_assign(new)
            log.info("reading %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in new))

    def run(self) -> None:
        self._wait_for_topics()
        if self.stop.is_set():
            return
        consumer = Consumer(self.settings.confluent(**{
            "group.id": self.group,
            "enable.auto.commit": True,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "error_cb": self._on_error,
        }))
        try:
            self._assign_new(consumer)
            self.assigned.set()
            refreshed = time.monotonic()
            while not self.stop.is_set():
                if not self.metrics.ready.is_set():
                    self._check_caught_up(consumer)
                if time.monotonic() - refreshed > METADATA_REFRESH_S:
                    self._assign_new(consumer)
                    refreshed = time.monotonic()
                try:
                    batch = consumer.consume(1000, timeout=0.5)
                except KafkaException as exc:
                    self.metrics.kafka_error("consume")
                    log.warning("consume failed: %s", exc)
                    self.stop.wait(self.retry_s)
                    continue
                for msg in batch:
                    self._handle(msg)
        finally:
            consumer.close()

    def _note_ends(self, consumer: Consumer) -> None:
        """The end offsets of window-counts and alerts as the exporter starts reading."""
        ends = {}
        for topic, partition in sorted(self._assigned):
            if self.kinds[topic] == "dead-letter":
                continue
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10, cached=False)
            except KafkaException as exc:
                self.metrics.kafka_error("watermarks")
                log.warning("end offsets unavailable, retrying: %s", exc)
                return
            if high > low:
                ends[(topic, partition)] = high
        self._pending = ends

    def _check_caught_up(self, consumer: Consumer) -> None:
        """Mark the metrics ready once every noted end offset is reached. The consumer's
        position counts too: it moves past records the fetch skips (transaction markers)."""
        if self._pending is None:
            self._note_ends(consumer)
            if self._pending is None:
                return
        left = {k: end for k, end in self._pending.items() if self._next.get(k, 0) < end}
        if left:
            for tp in consumer.position([TopicPartition(t, p) for t, p in left]):
                if tp.offset >= left[(tp.topic, tp.partition)]:
                    del left[(tp.topic, tp.partition)]
        self._pending = left
        if not left:
            self.metrics.mark_ready()
            log.info("caught up with %s and %s: ready", self.names.window_counts,
                     self.names.alerts)

    def progress(self) -> str:
        """How far the catch-up is, for /ready's 503 answer."""
        if self._pending is None:
            return "end offsets not known yet"
        return ", ".join(f"{t}[{p}] at {self._next.get((t, p), 0)} of {end}"
                         for (t, p), end in sorted(self._pending.items())) or "done"

    def _handle(self, msg) -> None:
        err = msg.error()
        if err is not None:
            if err.code() not in _QUIET_ERRORS:
                self.metrics.kafka_error(err.name().lstrip("_").lower() or "message")
                log.warning("kafka message error: %s", err)
            return
        self.metrics.kafka_ok()
        key = (msg.topic(), msg.partition())
        if msg.offset() < self._next.get(key, 0):
            return  # already applied (a refetch after a reconnect)
        self._next[key] = msg.offset() + 1
        ts_type, ts_ms = msg.timestamp()
        emitted = ts_ms / 1000.0 if ts_type != TIMESTAMP_NOT_AVAILABLE else None
        self.metrics.apply_record(self.kinds[msg.topic()], msg.value(), emitted)


@dataclass(frozen=True)
class ExporterOptions:
    """Where the exporter serves, its consumer group, and whose lag it watches."""

    host: str
    port: int
    group: str
    processor_group: str
    lag_interval: float


def run_exporter(settings: KafkaSettings, names: Topics, *,
                 stop: threading.Event | None = None, **options) -> int:
    """Serve /metrics and /ready and keep them fed until SIGTERM/SIGINT (or `stop`).

    `options`: the fields of ExporterOptions, by name (as the CLI passes them)."""
    import signal

    from exporter.http import serve
    from exporter.lag import LagPoller

    opts = ExporterOptions(**options)
    host, port, group, processor_group = opts.host, opts.port, opts.group, opts.processor_group
    stop = stop or threading.Event()
    metrics = PipelineMetrics(ready=False)
    reader = TopicReader(settings, names, metrics, stop, group)
    try:
        server = serve(host, port, metrics, reader.progress)
    except OSError as exc:
        raise UserError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("exporter serving http://%s:%d/metrics and /ready (topics %s, %s, %s; "
             "lag of %s)", host, port, names.window_counts, names.alerts, names.dead_letter,
             processor_group)
    lag = LagPoller(settings, metrics, processor_group, names.transactions, opts.lag_interval,
                    stop)
    lag.start()
    try:
        reader.run()
    finally:
        stop.set()
        server.shutdown()
        lag.join(timeout=5)
    return 0


def read_topic(settings: KafkaSettings, topic: str, kind: type, *, timeout: float = 60.0,
               on_bad=None) -> list:
    """Every decodable record of `topic` from the beginning to its end at call time.

    For the report and the Grafana sync: a snapshot, not a stream. Undecodable records
    are passed to `on_bad(value, exc)` (counted by the caller), never fatal."""
    import uuid

    import msgspec

    decoder = msgspec.json.Decoder(kind)
    consumer = Consumer(settings.confluent(**{
        "group.id": f"txmon-read-{uuid.uuid4()}", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest"}))
    out: list = []

    def keep(value: bytes) -> None:
        try:
            out.append(decoder.decode(value))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if on_bad is not None:
                on_bad(value, exc)

    try:
        ends = _end_offsets(consumer, settings, topic, timeout)
        if ends and not _read_until(consumer, topic, ends, keep, time.monotonic() + timeout):
            raise UserError(f"timed out reading {topic} from {settings.bootstrap}")
        return out
    except KafkaException as exc:
        raise UserError(f"cannot read {topic} from {settings.bootstrap}: {exc}") from None
    finally:
        consumer.close()


def _end_offsets(consumer: Consumer, settings: KafkaSettings, topic: str,
                 timeout: float) -> dict[int, int]:
    """The end offset of each partition of `topic` that has records."""
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        raise UserError(f"topic {topic} does not exist on {settings.bootstrap}")
    ends: dict[int, int] = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        if high > low:
            ends[p] = high
    return ends


def _read_until(consumer: Consumer, topic: str, ends: dict[int, int], keep,
                deadline: float) -> bool:
    """Pass each record's value, up to `ends`, to `keep`; False when the deadline came
    first."""
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    pending = dict(ends)
    while pending and time.monotonic() < deadline:
        for msg in consumer.consume(1000, timeout=0.5):
            if msg.error() is not None:
                if msg.error().code() == PARTITION_EOF:
                    pending.pop(msg.partition(), None)
                continue
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                pending.pop(msg.partition(), None)
            if msg.value() is not None:
                keep(msg.value())
    return not pending
