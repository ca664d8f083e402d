"""Stage 2, merging: the partials in, one scored minute and its alerts out, exactly once.

A confluent-kafka loop in its own thread, like stage 1 (docs/decisions/0007: Faust's
agent cannot read its input read_committed, and its exactly_once mode writes topics it
does not read outside the transaction). The partials topic has one partition, so one
worker merges and the others stand by in the group until it goes.

Each step is one Kafka transaction (txmon.kafka.transact.Steps): the window-counts and
alerts of the minutes it closed, the merge state (one record, processor/minutes.py) and
the partials offset after it. So a read_committed reader sees each minute and alert once
through any crash: a step that did not commit left nothing visible, and its successor
starts from the state that did commit. On assignment the loop's producer fences any
older one of its transactional.id (a zombie merging the same partition), reads the
state back read_committed and seeks to the partial after it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from prometheus_client import Counter

from processor.incidents import IncidentTracker, Policy
from processor.minutes import Minutes, MinuteState
from processor.state_schema import StateSchema
from processor.windows import MinuteMerger
from txmon.contracts import Topics, WindowPartial, encode
from txmon.contracts import metrics as m
from txmon.contracts.minutes import minute_id
from txmon.kafka.admin import TopicSpec
from txmon.kafka.produce import PIPELINE, producer_config
from txmon.kafka.read import read_to_end
from txmon.kafka.transact import PlainSteps, StepFailed, Steps
from txmon.settings import KafkaSettings, ProcessorSettings

__all__ = ["Clients", "Merging", "StepFailed", "merge_group", "merge_topics", "state_topic"]

log = logging.getLogger(__name__)

WINDOWS_EMITTED = Counter(m.PROCESSOR_WINDOWS_EMITTED_TOTAL.removesuffix("_total"),
                          "Closed minutes emitted by this worker")

#: The state record's key in the state topic.
MINUTES_KEY = b"minutes"
#: Partials a step takes at most: one transaction, one state record, for all of them.
STEP_PARTIALS = 500
STEP_WAIT_S = 0.2

_states = StateSchema("minutes", MinuteState)
_partial = msgspec.json.Decoder(WindowPartial)

ReadTopic = Callable[[KafkaSettings, str, str], Iterable[Message]]


def state_topic(cfg: ProcessorSettings) -> str:
    """The compacted topic of the merge state: the name Faust gave its table's changelog
    when it hosted the merge, so a worker of this version carries on from its state."""
    return f"{cfg.app_id}-merge-minutes-changelog"


def merge_group(cfg: ProcessorSettings) -> str:
    return f"{cfg.app_id}-merge"


def merge_topics(cfg: ProcessorSettings) -> list[TopicSpec]:
    """Created with the pipeline's topics (and replicated like them): the worker must
    not find its state topic missing."""
    return [TopicSpec(state_topic(cfg), 1, None, {"cleanup.policy": "compact"})]


@dataclass
class Clients:
    """What the loop talks to Kafka with: a test hands in stand-ins."""

    consumer: Consumer
    #: Makes the transactional producer from its configuration.
    producer: Callable[[dict], Producer] = Producer
    #: Reads the state topic back (txmon.kafka.read.read_to_end's signature).
    read: ReadTopic = read_to_end


def merge_consumer(cfg: ProcessorSettings, settings: KafkaSettings) -> Consumer:
    """The group member: offsets go with each step's transaction; read_committed, so an
    aborted partial is never merged."""
    return Consumer(settings.confluent(**{
        "group.id": merge_group(cfg),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": cfg.session_timeout_ms,
        "heartbeat.interval.ms": max(500, cfg.session_timeout_ms // 10),
    }))


class Merging:
    """Stage 2's loop, on `clients` (by default the real ones, from the settings)."""

    def __init__(self, cfg: ProcessorSettings, settings: KafkaSettings, names: Topics,
                 source_partitions: int, clients: Clients | None = None):
        self.cfg, self.settings, self.names = cfg, settings, names
        self.source_partitions = source_partitions
        clients = clients or Clients(merge_consumer(cfg, settings))
        self.consumer = clients.consumer
        self.producer_factory, self.read = clients.producer, clients.read
        self.minutes = Minutes(cfg.model_path, cfg.warmup_windows,
                               Policy(cfg.recovery_window, cfg.runbook_url))
        self.steps: Steps | PlainSteps | None = None
        self.state: MinuteState | None = None
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    # --- assignment ---

    def _on_assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        if not tps:
            return
        if self.steps is None:  # fence a zombie before reading what it left
            self.steps = self._steps(consumer)
        self.state = self._decode(self._load())
        self.minutes.pending_slices.clear()
        for tp in tps:
            tp.offset = self._resume_at()
        log.info("merging from partial %s, minutes emitted before %s",
                 [tp.offset for tp in tps], self._emitted())
        consumer.assign(tps)

    def _steps(self, consumer: Consumer) -> Steps | PlainSteps:
        if self.cfg.processing_guarantee == "at_least_once":
            return PlainSteps(producer_config(self.settings, PIPELINE), consumer,
                              self.producer_factory, self.cfg.transaction_timeout_ms / 1000)
        return Steps(producer_config(self.settings, PIPELINE, **{
            "transactional.id": f"{merge_group(self.cfg)}-p0",
            "transaction.timeout.ms": self.cfg.transaction_timeout_ms}),
            consumer, self.producer_factory, self.stop_event)

    def _on_revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        """Every step committed whole: nothing to save. The producer goes too: the next
        owner's fences it, and this worker's own, if the partition comes back, fences
        that one's."""
        if not tps:
            return
        self.state = None
        if self.steps is not None:
            self.steps.close()
            self.steps = None
        log.info("merge partition revoked")

    def _load(self) -> bytes | None:
        found = None
        for msg in self.read(self.settings, state_topic(self.cfg),
                             f"{self.cfg.app_id}-merge-state"):
            if msg.key() == MINUTES_KEY:
                found = msg.value()
        return found

    def _decode(self, raw: bytes | None) -> MinuteState:
        if raw is not None:
            return _states.decode(raw)
        return MinuteState(
            merger=MinuteMerger(self.source_partitions, self.cfg.max_empty_minutes,
                                int(2 * self.cfg.tick_s * 1000)),
            incidents=IncidentTracker())

    def _emitted(self) -> str:
        until = self.state.merger.emitted_until
        return "none" if until is None else minute_id(until)

    def _resume_at(self) -> int:
        last = self.state.last_offset
        return last + 1 if last >= 0 else OFFSET_BEGINNING

    # --- the work ---

    def step(self, msgs: list[Message]) -> int:
        """Applies a batch of partials and commits what it closed with the state; the
        minutes emitted (0 after an abort, the state and position then rewound)."""
        state, records, emitted = self.state, [], 0
        for msg in msgs:
            if msg.error() is not None:
                log.warning("consumer error: %s", msg.error())
                continue
            if msg.offset() <= state.last_offset:
                continue
            for minute in self._apply(state, msg):
                records.append((self.names.window_counts, minute.window.id.encode(),
                                encode(minute.window)))
                records += [(self.names.alerts, a.id.encode(), encode(a)) for a in minute.alerts]
                emitted += 1
        saved = [(state_topic(self.cfg), MINUTES_KEY, encode(state))]
        position = TopicPartition(self.names.window_partials, 0, state.last_offset + 1)
        if self.steps.commit(records, saved, [position]):
            WINDOWS_EMITTED.inc(emitted)
            return emitted
        # Not known to have committed: what did is in the state topic, read_committed.
        self.state = self._decode(self._load())
        self.minutes.pending_slices.clear()
        log.warning("step not committed: merging again from partial %d, minutes emitted "
                    "before %s", self.state.last_offset + 1, self._emitted())
        self.consumer.seek(TopicPartition(self.names.window_partials, 0, self._resume_at()))
        return 0

    def _apply(self, state: MinuteState, msg: Message):
        try:
            partial = _partial.decode(msg.value())
        except (msgspec.MsgspecError, TypeError):
            log.error("undecodable partial at offset %d: skipped", msg.offset())
            state.last_offset = msg.offset()
            return []
        self.minutes.reload_model()
        return self.minutes.apply(state, msg.offset(), partial)

    def run(self) -> None:
        """The thread's body: merge until stopped; a failed step stops the worker."""
        try:
            self.consumer.subscribe([self.names.window_partials], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_revoke)
            while not self.stop_event.is_set():
                msgs = self.consumer.consume(STEP_PARTIALS, timeout=STEP_WAIT_S)
                if msgs and self.state is not None:
                    self.step(msgs)
        except BaseException as exc:
            self.error = exc
            log.exception("merging stopped")
            raise
        finally:
            self.consumer.close()
            if self.steps is not None:
                self.steps.close()
