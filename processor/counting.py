"""Stage 1, counting: transactions in, per-partition partial windows out.

This is the hot path, so it reads Kafka with confluent-kafka in batches in its own
thread instead of through Faust's per-event stream machinery (which costs far more per
event than the counting itself, and starved the merge agent during a backlog).

The state of each source partition (its open windows and the offset of the last record
applied) is one record in a compacted state topic, and on assignment the consumer seeks
to the stored offset + 1. Partials and dead letters wait in memory for the next
checkpoint (each tick, on revoke, on stop, and sooner once CHECKPOINT_RECORDS wait),
which writes them, then every owned partition's state, and commits the input offsets:
- exactly_once (TXMON_PROCESSING_GUARANTEE, the default): all of it one Kafka
  transaction (txmon.kafka.transact.Steps, send_offsets_to_transaction with the group's
  metadata, so a member that lost its partitions cannot commit). A read_committed
  reader of the partials or dead letters sees each record once; a checkpoint that did
  not commit left nothing visible, and the worker rewinds to the states that did.
- at_least_once: outputs acknowledged, then the states (transact.PlainSteps). A crash
  between the two can only send partials and dead letters again with the same content
  and key, which the merge drops by their claims.
Either way nothing is lost or counted twice. Checkpointing per tick rather than per
batch keeps a transaction a second, not one per batch, off the hot path; a transaction
begins only when the checkpoint writes, so a worker killed between checkpoints leaves
none open to hold up the partials' readers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
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
from txmon.kafka.produce import PIPELINE, ClientFactory, producer_config
from txmon.kafka.read import read_to_end
from txmon.kafka.transact import PlainSteps, Record, StepFailed, Steps, transactional_id
from txmon.settings import KafkaSettings, ProcessorSettings

log = logging.getLogger(__name__)

#: StepFailed is what stops the worker when checkpoints keep failing.
__all__ = ["Counting", "StepFailed", "counting_consumer", "counting_fetch"]

EVENTS = Counter(m.PROCESSOR_EVENTS_TOTAL.removesuffix("_total"),
                 "Transactions read by the worker, by outcome", ["outcome"])
WATERMARK = Gauge(m.PROCESSOR_WATERMARK, "Event-time watermark per source partition",
                  ["partition"])

_states = StateSchema("partition", PartitionWindows)

#: Outputs waiting that make a checkpoint due before its tick: bounds the memory a
#: flood of dead letters takes, and a transaction's size.
CHECKPOINT_RECORDS = 10_000
#: Checkpoints in a row that did not commit before the worker stops: a record the
#: broker always refuses would otherwise be counted and refused forever.
CHECKPOINT_TRIES = 5


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
    confluent-kafka Consumer, `producer` what makes a producer from its configuration,
    `read` what reads the state topic back; by default the real ones, from the
    settings."""

    def __init__(self, cfg: ProcessorSettings, settings: KafkaSettings, names: Topics, *,
                 consumer: Consumer | None = None, producer: ClientFactory = Producer,
                 read: ReadTopic = read_to_end):
        self.cfg, self.settings, self.names = cfg, settings, names
        self.lateness_ms = int(cfg.lateness_s * 1000)
        self.consumer = consumer if consumer is not None else counting_consumer(cfg, settings)
        self.producer_factory, self.read = producer, read
        self.output: Steps | PlainSteps | None = None
        self.states: dict[int, PartitionWindows] = {}
        #: Each partition's partials and dead letters since the last checkpoint.
        self.pending: dict[int, list[Record]] = {}
        self.waiting = 0
        self.failures = 0
        self.parser = EventParser(int(cfg.max_future_s * 1000))
        self.last_arrival: dict[int, float] = {}
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def _output(self) -> Steps | PlainSteps:
        """Made at the first assignment, not before: it needs the consumer's group."""
        config = producer_config(self.settings, PIPELINE)
        timeout_ms = self.cfg.transaction_timeout_ms
        if self.cfg.processing_guarantee == "at_least_once":
            return PlainSteps(config, self.consumer, self.producer_factory, timeout_ms / 1000)
        # An id of its own per process: a transaction is open only while a checkpoint
        # writes, so a dead worker's rarely outlives it, and never by more than its timeout.
        config.update({"transactional.id": transactional_id(f"{self.cfg.app_id}-count"),
                       "transaction.timeout.ms": timeout_ms})
        return Steps(config, self.consumer, self.producer_factory, self.stop_event)

    # --- state ---

    def _load_states(self, partitions: list[int]) -> dict[int, PartitionWindows]:
        """Latest committed state of these partitions, read from the compacted topic."""
        wanted = {str(p).encode() for p in partitions}
        found: dict[int, PartitionWindows] = {}
        for msg in self.read(self.settings, self.names.partition_state,
                             f"{self.cfg.app_id}-state"):
            if msg.key() in wanted and msg.value() is not None:
                found[int(msg.key())] = _states.decode(msg.value())
        return found

    def _restore(self, tps: list[TopicPartition]) -> None:
        """Each partition's stored state, and `tp.offset` set to the record after it."""
        stored = self._load_states([tp.partition for tp in tps])
        now = time.time()
        for tp in tps:
            state = stored.get(tp.partition) or PartitionWindows(self.lateness_ms)
            self.states[tp.partition] = state
            self.pending[tp.partition] = []
            self.last_arrival[tp.partition] = now  # it was moving, not silent
            tp.offset = state.last_offset + 1 if state.last_offset >= 0 else OFFSET_BEGINNING

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if self.output is None:
            self.output = self._output()
        self._restore(tps)
        log.info("assigned %s", {tp.partition: tp.offset for tp in tps})
        consumer.assign(tps)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        owned = [tp.partition for tp in tps if tp.partition in self.states]
        if owned and not self._checkpoint(rewind=False):
            log.warning("revoked without a checkpoint: the next owner resumes from the "
                        "last one")
        self._drop(owned)
        log.info("revoked %s", owned)

    def _on_lost(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        # Someone else may own them now: drop their outputs and states, write nothing.
        self._drop([tp.partition for tp in tps])
        log.warning("lost %s", [tp.partition for tp in tps])

    def _drop(self, partitions: list[int]) -> None:
        for p in partitions:
            self.states.pop(p, None)
            self.waiting -= len(self.pending.pop(p, ()))
            self.last_arrival.pop(p, None)

    # --- outputs ---

    def _dead_letter(self, msg, reason: str, detail: str) -> None:
        record = DeadLetter.of(
            msg.value() or b"", reason=reason, detail=detail, source="processor",
            topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
        )
        key = f"{msg.topic()}:{msg.partition()}:{msg.offset()}".encode()
        self._send(msg.partition(), (self.names.dead_letter, key, encode(record)))

    def _send_partial(self, partition: int, state: PartitionWindows, idle: bool) -> None:
        windows = state.drain_closed()
        partial = WindowPartial(partition=partition, closed_until=state.closed_until,
                                idle=idle, windows=windows, slices=state.drain_slices(windows),
                                sent_ms=int(time.time() * 1000))
        self._send(partition, (self.names.window_partials, str(partition).encode(),
                               encode(partial)))

    def _send(self, partition: int, record: Record) -> None:
        self.pending[partition].append(record)
        self.waiting += 1

    def _checkpoint(self, rewind: bool = True) -> bool:
        """Every owned partition's waiting outputs, then its state, then its input
        offset, committed together (or, at least once, in that order). True once
        committed; else, if the partitions stay (`rewind`), they go back to their last
        committed states."""
        outputs = [r for p in self.states for r in self.pending[p]]
        saved, offsets = [], []
        for p, state in self.states.items():
            state.pack()
            saved.append((self.names.partition_state, str(p).encode(), encode(state)))
            if state.last_offset >= 0:
                offsets.append(TopicPartition(self.names.transactions, p, state.last_offset + 1))
        if self.output.commit(outputs, saved, offsets):
            for p, state in self.states.items():
                self.pending[p] = []
                if state.watermark is not None:
                    WATERMARK.labels(str(p)).set(state.watermark / 1000)
            self.waiting, self.failures = 0, 0
            return True
        self.failures += 1
        if self.failures >= CHECKPOINT_TRIES:
            raise StepFailed(f"{self.failures} checkpoints in a row not committed")
        if rewind:
            self._rewind()
        return False

    def _rewind(self) -> None:
        """Back to the last committed states: what was counted since is counted again."""
        tps = [TopicPartition(self.names.transactions, p) for p in self.states]
        self._restore(tps)
        self.waiting = 0
        for tp in tps:
            self.consumer.seek(tp)
        log.warning("checkpoint not committed: counting again from %s",
                    {tp.partition: tp.offset for tp in tps})

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
        self._checkpoint()

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
                elif self.waiting >= CHECKPOINT_RECORDS:
                    self._checkpoint()
            if self.states and not self._checkpoint(rewind=False):
                log.warning("stopped without a last checkpoint: resuming from the one before")
        except BaseException as exc:  # the worker must stop, not count on without state
            self.error = exc
            log.exception("counting stopped")
            raise
        finally:
            self.consumer.close()
            if self.output is not None:
                self.output.close()
