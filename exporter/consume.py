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

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, KafkaException

from exporter.metrics import PipelineMetrics
from txmon.contracts import Topics
from txmon.errors import UserError
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.kafka.read import METADATA_TIMEOUT_S, Tail, read_to_end
from txmon.settings import KafkaSettings

log = logging.getLogger(__name__)

DEFAULT_GROUP = "txmon-exporter"
LOG_EVERY_S = 30.0


class TopicReader:
    """Feeds `metrics` from the pipeline's output topics until `stop` is set."""

    def __init__(self, settings: KafkaSettings, names: Topics, metrics: PipelineMetrics,
                 stop: threading.Event, group: str = DEFAULT_GROUP, retry_s: float = 2.0):
        self.settings, self.names, self.metrics, self.stop = settings, names, metrics, stop
        self.group, self.retry_s = group, retry_s
        self.kinds = {names.window_counts: "window-counts", names.alerts: "alerts",
                      names.dead_letter: "dead-letter"}
        self._next: dict[tuple[str, int], int] = {}
        self.assigned = threading.Event()
        self._logged: dict[str, float] = {}
        #: Its partitions and, once noted, the end offsets to reach before ready.
        self._tail: Tail | None = None

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

    def _assign_new(self, tail: Tail) -> None:
        try:
            new = tail.assign(METADATA_TIMEOUT_S)
        except KafkaException as exc:
            self.metrics.kafka_error("metadata")
            log.warning("metadata refresh failed: %s", exc)
            return
        if new:
            log.info("reading %s", ", ".join(f"{t}[{p}]" for t, p in new))

    def consumer(self) -> Consumer:
        """Not a txmon.kafka.read reader: the exporter's own named group
        (TXMON_EXPORTER_GROUP), which commits how far it read for an operator to see
        (kafka-consumer-groups). It is still assigned, never subscribed: a rebalance
        never rewinds it."""
        return Consumer(self.settings.confluent(**{
            "group.id": self.group,
            "enable.auto.commit": True,
            "enable.partition.eof": False,
            "auto.offset.reset": "earliest",
            "error_cb": self._on_error,
        }))

    def run(self) -> None:
        self._wait_for_topics()
        if self.stop.is_set():
            return
        with Tail(self.consumer(), self.kinds) as tail:
            self._tail = tail
            self._assign_new(tail)
            self.assigned.set()
            while not self.stop.is_set():
                if not self.metrics.ready.is_set():
                    self._check_caught_up(tail)
                if tail.due():
                    self._assign_new(tail)
                try:
                    batch = tail.poll(timeout=0.5)
                except KafkaException as exc:
                    self.metrics.kafka_error("consume")
                    log.warning("consume failed: %s", exc)
                    self.stop.wait(self.retry_s)
                    continue
                for msg in batch:
                    self._handle(msg)

    def _check_caught_up(self, tail: Tail) -> None:
        """Mark the metrics ready once window-counts and alerts are read up to where they
        ended when first looked at (dead letters are not waited for)."""
        if tail.ends is None:
            try:
                tail.note_ends([self.names.window_counts, self.names.alerts], timeout=10)
            except KafkaException as exc:
                self.metrics.kafka_error("watermarks")
                log.warning("end offsets unavailable, retrying: %s", exc)
                return
        if tail.caught_up():
            self.metrics.mark_ready()
            log.info("caught up with %s and %s: ready", self.names.window_counts,
                     self.names.alerts)

    def progress(self) -> str:
        """How far the catch-up is, for /ready's 503 answer."""
        ends = self._tail.ends if self._tail is not None else None
        if ends is None:
            return "end offsets not known yet"
        return ", ".join(f"{t}[{p}] at {self._next.get((t, p), 0)} of {end}"
                         for (t, p), end in sorted(dict(ends.left).items())) or "done"

    def _handle(self, msg) -> None:
        err = msg.error()
        if err is not None:
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
    import msgspec

    decoder = msgspec.json.Decoder(kind)
    out: list = []
    try:
        for msg in read_to_end(settings, topic, "txmon-read", timeout, deadline_s=timeout,
                               on_error=log.debug):
            if msg.value() is None:
                continue
            try:
                out.append(decoder.decode(msg.value()))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if on_bad is not None:
                    on_bad(msg.value(), exc)
        return out
    except TimeoutError:
        raise UserError(f"timed out reading {topic} from {settings.bootstrap}") from None
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise UserError(f"topic {topic} does not exist on {settings.bootstrap}") from None
        raise UserError(f"cannot read {topic} from {settings.bootstrap}: {exc}") from None
