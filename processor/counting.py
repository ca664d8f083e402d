"""Stage 1, counting: transactions in, per-partition partial windows out.

This is the hot path, so it reads Kafka with confluent-kafka in batches in its own
thread instead of through Faust's per-event stream machinery (which costs far more per
event than the counting itself, and starved the merge agent during a backlog).

Exactly once, without transactions: the state of each source partition (its open
windows and the offset of the last record applied) is one record in a compacted state
topic. Order of writes, every checkpoint (each tick, on revoke and on stop): partials and
dead letters are acknowledged by the broker first, then the state. On assignment the
consumer seeks to the stored offset + 1, so committed group offsets are informational
only (the exporter reads them for lag). A crash can therefore only re-send partials and
dead letters with the same content and key (every decision depends only on the order of
a partition's events), which the merge overwrites and consumers deduplicate; nothing is
lost or counted twice. Checkpointing per tick rather than per batch keeps two broker
round trips a second, not two per batch, off the hot path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge

from processor.parse import EventParser
from processor.state_schema import StateSchema
from processor.windows import PartitionWindows
from txmon.contracts import (
    DeadLetter,
    DeadLetterReason,
    Topics,
    WindowPartial,
    encode,
)
from txmon.contracts import metrics as m
from txmon.contracts.minutes import minute_id
from txmon.kafka import PARTITION_EOF
from txmon.kafka.produce import PIPELINE, DeliveryFailed, Sender, producer_config
from txmon.kafka.read import read_to_end
from txmon.settings import KafkaSettings, ProcessorSettings

log = logging.getLogger(__name__)

#: DeliveryFailed is what a failed checkpoint raises (txmon.kafka.produce.Sender.settle).
__all__ = ["Counting", "DeliveryFailed", "counting_consumer", "counting_fetch"]

EVENTS = Counter(m.PROCESSOR_EVENTS_TOTAL.removesuffix("_total"),
                 "Transactions read by the worker, by outcome", ["outcome"])
WATERMARK = Gauge(m.PROCESSOR_WATERMARK, "Event-time watermark per source partition",
                  ["partition"])

_states = StateSchema("partition", PartitionWindows)


def counting_fetch(cfg: ProcessorSettings) -> dict[str, int]:
    """The counting consumer's prefetch: librdkafka's defaults (100,000 messages a
    partition, up to 64 MiB) made the worker's peak memory grow with the backlog, and
    its 1 s fetch back-off once that smaller prefetch is full left it waiting on the
    broker through a backlog (bench/README.md)."""
    return {
        "queued.max.messages.kbytes": cfg.prefetch_kbytes,
        "queued.min.messages": cfg.prefetch_messages,
        "fetch.queue.backoff.ms": cfg.fetch_backoff_ms,
    }


def counting_consumer(cfg: ProcessorSettings, settings: KafkaSettings) -> Consumer:
    """The group member: offsets are the state's (see above), committed only for the
    exporter's lag."""
    return Consumer(settings.confluent(**{
        "group.id": cfg.app_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": cfg.session_timeout_ms,
        "heartbeat.interval.ms": max(500, cfg.session_timeout_ms // 10),
        "enable.partition.eof": False,
        **counting_fetch(cfg),
    }))


#: What restores the state: every record now in a topic (txmon.kafka.read.read_to_end's
#: signature: settings, topic, purpose).
ReadTopic = Callable[[KafkaSettings, str, str], Iterable[Message]]


class Counting:
    """Stage 1. Its clients can be handed in (a test's stand-ins): `consumer` a
    confluent-kafka Consumer, `producer` a txmon Sender, `read` what reads the state
    topic back; by default the real ones, from the settings."""

    def __init__(self, cfg: ProcessorSettings, settings: KafkaSettings, names: Topics, *,
                 consumer: Consumer | None = None, producer: Sender | None = None,
                 read: ReadTopic = read_to_end):
        self.cfg, self.settings, self.names = cfg, settings, names
        self.lateness_ms = int(cfg.lateness_s * 1000)
        self.consumer = consumer if consumer is not None else counting_consumer(cfg, settings)
        self.producer = producer if producer is not None else Sender(
            producer_config(settings, PIPELINE))
        self.read = read
        self.states: dict[int, PartitionWindows] = {}
        self.parser = EventParser(int(cfg.max_future_s * 1000))
        self.last_arrival: dict[int, float] = {}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    # --- state ---

    def _load_states(self, partitions: list[int]) -> dict[int, PartitionWindows]:
        """Latest stored state of these partitions, read from the compacted state topic."""
        wanted = {str(p).encode() for p in partitions}
        found: dict[int, PartitionWindows] = {}
        for msg in self.read(self.settings, self.names.partition_state,
                             f"{self.cfg.app_id}-state"):
            if msg.key() in wanted and msg.value() is not None:
                found[int(msg.key())] = _states.decode(msg.value())
        return found

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        stored = self._load_states([tp.partition for tp in tps])
        now = time.time()
        for tp in tps:
            state = stored.get(tp.partition) or PartitionWindows(self.lateness_ms)
            self.states[tp.partition] = state
            self.last_arrival[tp.partition] = now  # it was moving, not silent
            tp.offset = state.last_offset + 1 if state.last_offset >= 0 else OFFSET_BEGINNING
        log.info("assigned %s", {tp.partition: tp.offset for tp in tps})
        consumer.assign(tps)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        owned = [tp.partition for tp in tps if tp.partition in self.states]
        if owned:
            self._persist(owned)
        for p in owned:
            self.states.pop(p, None)
            self.last_arrival.pop(p, None)
        log.info("revoked %s", owned)

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        # Someone else may own them now: drop, don't write.
        for tp in tps:
            self.states.pop(tp.partition, None)
            self.last_arrival.pop(tp.partition, None)
        log.warning("lost %s", [tp.partition for tp in tps])

    # --- I/O helpers ---

    def _dead_letter(self, msg, reason: str, detail: str) -> None:
        record = DeadLetter.of(
            msg.value() or b"", reason=reason, detail=detail, source="processor",
            topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
        )
        key = f"{msg.topic()}:{msg.partition()}:{msg.offset()}".encode()
        self.producer.produce(self.names.dead_letter, encode(record), key)

    def _send_partial(self, partition: int, state: PartitionWindows, idle: bool) -> None:
        windows = state.drain_closed()
        partial = WindowPartial(partition=partition, closed_until=state.closed_until,
                                idle=idle, windows=windows, slices=state.drain_slices(windows),
                                sent_ms=int(time.time() * 1000))
        self.producer.produce(self.names.window_partials, encode(partial), str(partition).encode())

    def _persist(self, partitions: list[int]) -> None:
        """Partials and dead letters acknowledged, then the state; then the group offset."""
        self.producer.settle()
        offsets = []
        for p in partitions:
            state = self.states[p]
            state.pack()
            self.producer.produce(self.names.partition_state, encode(state), str(p).encode())
            if state.last_offset >= 0:
                offsets.append(TopicPartition(self.names.transactions, p, state.last_offset + 1))
            if state.watermark is not None:
                WATERMARK.labels(str(p)).set(state.watermark / 1000)
        self.producer.settle()
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:  # informational only: lag monitoring
                log.warning("offset commit failed: %s", exc)

    # --- the work ---

    def process(self, msgs) -> None:
        """Count a batch: split it by partition, then parse and count each partition's
        run of events in one pass (processor/parse.py, PartitionWindows.add_many). Every
        decision depends only on a partition's own order, as with one event at a time."""
        now = time.time()
        counted = late = dead = 0
        for p, run in self._by_partition(msgs).items():
            state = self.states[p]
            self.last_arrival[p] = now
            if run[0].offset() <= state.last_offset:  # re-read after a crash: applied
                run = [m for m in run if m.offset() > state.last_offset]
                if not run:
                    continue
            before = state.closed_until
            times, statuses, terminals, rejected = self.parser.parse_many(
                [m.value() for m in run], int(now * 1000))
            for i, exc in rejected:
                self._dead_letter(run[i], exc.reason, exc.detail)
            if rejected:
                bad = {i for i, _ in rejected}
                run_ok = [m for i, m in enumerate(run) if i not in bad]
            else:
                run_ok = run
            late_ones = state.add_many(times, statuses)
            for i, closed_then in late_ones:
                self._dead_letter(run_ok[i], DeadLetterReason.LATE,
                                  f"window {minute_id(times[i])} already closed "
                                  f"(closed until {minute_id(closed_then)})")
            late += len(late_ones)
            state.slice_batch(times, statuses, terminals, late_ones)
            state.last_offset = run[-1].offset()
            counted += len(times)
            dead += len(rejected)
            if state.closed or state.closed_until != before:
                self._send_partial(p, state, idle=False)
        EVENTS.labels("counted").inc(counted - late)
        EVENTS.labels("late").inc(late)
        EVENTS.labels("dead_letter").inc(dead)

    def _by_partition(self, msgs) -> dict[int, list]:
        """The batch's records per owned partition, in order; consumer errors logged."""
        runs: dict[int, list] = {}
        states = self.states
        current, run = None, None
        for msg in msgs:
            if msg.error() is not None:
                if msg.error().code() != PARTITION_EOF:
                    log.warning("consumer error: %s", msg.error())
                continue
            p = msg.partition()
            if p != current:
                current = p
                run = runs.get(p) if p in states else None  # None: revoked meanwhile
                if run is None and p in states:
                    run = runs[p] = []
            if run is not None:
                run.append(msg)
        return runs

    def tick(self) -> None:
        """Heartbeat every owned partition; let the clock advance the idle ones."""
        now = time.time()
        if not self.states:
            return
        for p, state in self.states.items():
            tp = TopicPartition(self.names.transactions, p)
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            caught_up = high is not None and high >= 0 and state.last_offset + 1 >= high
            silent = now - self.last_arrival.setdefault(p, now)
            # Also for a partition that never had an event: producers started with the
            # worker get the timeout to deliver their first records to it.
            idle = caught_up and silent >= self.cfg.idle_timeout_s
            if idle:
                state.advance_idle(int(silent * 1000))
            self._send_partial(p, state, idle=idle)
        self._persist(list(self.states))

    def run(self) -> None:
        """The thread's body: consume, count, heartbeat, until stopped."""
        try:
            self.consumer.subscribe([self.names.transactions], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_lost)
            next_tick = time.monotonic() + self.cfg.tick_s
            while not self.stop_event.is_set():
                msgs = self.consumer.consume(self.cfg.batch_size,
                                             timeout=self.cfg.batch_within_s)
                if msgs:
                    self.process(msgs)
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick = time.monotonic() + self.cfg.tick_s
            if self.states:
                self._persist(list(self.states))
        except BaseException as exc:  # the worker must stop, not count on without state
            self.error = exc
            log.exception("counting stopped")
            raise
        finally:
            self.consumer.close()
            self.producer.flush(10)
