"""The Faust worker: the only module of the processor that touches Faust.

- Stage 1, counting (processor.counting), runs in a thread hosted by CountingService:
  batches of transactions per source partition into partial windows.
- Stage 2 is the `merge_minutes` agent: it reads the per-partition partials (one tiny
  partition) and emits one window-count per minute once every active partition has
  closed it, then scores it and emits alerts (Minutes). Its state is one record in a
  changelog-backed table, with the offset of the last partial applied; a partial at or
  below that offset was already applied (we crashed before Faust committed): skipped.

Faust's windowed tables and exactly-once mode are not used: windows close on our own
watermark (event time across partitions), which Faust's wall-clock windows cannot.
Ordering rule: everything a state change implies (window counts, alerts) is acknowledged
by Kafka *before* the state is written, so a crash can only cause a re-emission with the
same id and content, never a loss.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import faust
import msgspec
from prometheus_client import Counter

from processor.counting import Counting
from processor.incidents import IncidentTracker, Policy
from processor.minutes import Minutes, MinuteState
from processor.state_schema import StateSchema
from processor.windows import MinuteMerger
from txmon.contracts import Topics, WindowPartial, encode
from txmon.contracts import metrics as m
from txmon.kafka.admin import TopicSpec
from txmon.kafka.read import read_range
from txmon.settings import KafkaSettings, ProcessorSettings

log = logging.getLogger(__name__)

WINDOWS_EMITTED = Counter(m.PROCESSOR_WINDOWS_EMITTED_TOTAL.removesuffix("_total"),
                          "Closed minutes emitted by this worker")

MINUTES_KEY = b"minutes"
_minutes_schema = StateSchema("minutes", MinuteState)
_partial_decoder = msgspec.json.Decoder(WindowPartial)


def raw_topic(app: faust.App, name: str, partitions: int | None = None) -> faust.TopicT:
    # Raw bytes in and out: decoding is ours, so a bad record is a dead letter, not a
    # Faust deserialization crash.
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


def raw_table(app: faust.App, name: str, partitions: int) -> faust.Table:
    """A table whose records are our own msgspec bytes, stored and logged as they are.

    Faust derives a table's codec, and its changelog topic's, from the key and value
    types: `bytes` means "raw" (since Faust 1.4; checked against faust-streaming 0.15.3).
    With any other type the changelog would be JSON and recovery would try to parse our
    bytes as JSON. tests/unit/test_faust_contract.py fails if Faust stops doing this."""
    return app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes)


class StateTable:
    """A Faust table used as a durable key-value record per partition.

    Writes go through `send_changelog` with an explicit partition so that the timer
    (which has no current event) can persist too.
    """

    def __init__(self, table: faust.Table, schema: StateSchema):
        self.table = table
        self.schema = schema

    def load(self, key: bytes):
        raw = self.table.data.get(key)
        return None if raw is None else self.schema.decode(raw)

    def save(self, partition: int, key: bytes, state) -> None:
        raw = encode(state)
        self.table.data[key] = raw
        self.table.send_changelog(partition, key, raw)


class CountingService(faust.Service):
    """Hosts stage 1 (processor.counting, a thread) inside the Faust worker, so one
    process runs both stages and stops them together."""

    def __init__(self, counting: Counting, **kwargs):
        super().__init__(**kwargs)
        self.counting = counting
        self.thread = threading.Thread(target=self._run, name="counting", daemon=True)

    def _run(self) -> None:
        try:
            self.counting.run()
        except BaseException:
            # Counting without its state would lose or double-count: die, and let the
            # restart resume from the stored state.
            log.critical("counting thread failed: stopping the worker", exc_info=True)
            logging.shutdown()
            os._exit(1)

    async def on_start(self) -> None:
        self.thread.start()

    async def on_stop(self) -> None:
        self.counting.stop_event.set()
        await asyncio.get_running_loop().run_in_executor(None, self.thread.join, 30)


class Merging:
    """Stage 2: one record per minute, scored, with its alerts."""

    def __init__(self, settings: KafkaSettings, cfg: ProcessorSettings, table: StateTable,
                 source_partitions: int, counts: faust.TopicT, alerts: faust.TopicT):
        self.settings = settings
        self.cfg, self.table = cfg, table
        self.source_partitions = source_partitions
        self.counts, self.alerts = counts, alerts
        self.minutes = Minutes(cfg.model_path, cfg.warmup_windows,
                               Policy(cfg.recovery_window, cfg.runbook_url))

    def load(self) -> MinuteState:
        state = self.table.load(MINUTES_KEY)
        if state is None:
            state = MinuteState(
                merger=MinuteMerger(self.source_partitions, self.cfg.max_empty_minutes,
                                    int(2 * self.cfg.tick_s * 1000)),
                incidents=IncidentTracker(),
            )
        return state

    async def process(self, event) -> None:
        """Apply one partial; first any the state has not applied yet.

        Faust can commit an offset beyond what its changelog holds, so the state's own
        offset decides: a gap is read straight from Kafka and applied first, and no
        minute loses a partition's counts (docs/decisions/0001).
        """
        state = self.load()
        message = event.message
        expected = state.last_offset + 1
        if message.offset < expected:
            return
        loop = asyncio.get_running_loop()
        if message.offset > expected:
            missed = await loop.run_in_executor(
                None, read_range, self.settings, message.topic, message.partition, expected,
                message.offset, f"{self.cfg.app_id}-catch-up")
            log.warning("partials %s: state applied up to %d, stream resumed at %d: "
                        "applying %d skipped partials first", message.topic,
                        state.last_offset, message.offset, len(missed))
            for msg in missed:
                await self.apply(state, message.partition, msg.offset(), msg.value())
        await self.apply(state, message.partition, message.offset, event.value)

    async def apply(self, state: MinuteState, partition: int, offset: int,
                    value: bytes | None) -> None:
        try:
            partial = _partial_decoder.decode(value)
        except (msgspec.MsgspecError, TypeError):
            log.error("undecodable partial at offset %d: skipped", offset)
            state.last_offset = offset
            self.table.save(partition, MINUTES_KEY, state)
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.minutes.reload_model)
        closed = await loop.run_in_executor(None, self.minutes.apply, state, offset, partial)
        pending = []
        for minute in closed:
            window = minute.window
            pending.append(await self.counts.send(key=window.id.encode(), value=encode(window)))
            for alert in minute.alerts:
                pending.append(await self.alerts.send(key=alert.id.encode(), value=encode(alert)))
        if pending:
            await asyncio.gather(*pending)
        WINDOWS_EMITTED.inc(len(closed))
        self.table.save(partition, MINUTES_KEY, state)


def faust_topics(cfg: ProcessorSettings) -> list[TopicSpec]:
    """The topics Faust would create lazily for the merge app. Created up front: when
    partials arrived before Faust had created its changelog, the merge stalled for good
    ("Topic ...-minutes-changelog not found ... Ignoring missing topic")."""
    app_id = f"{cfg.app_id}-merge"
    return [  # replicated like the pipeline's own (txmon.kafka.admin.replicated)
        TopicSpec(f"{app_id}-minutes-changelog", 1, None, {"cleanup.policy": "compact"}),
        TopicSpec(f"{app_id}-__assignor-__leader", 1, None),
    ]


def create_app(cfg: ProcessorSettings, settings: KafkaSettings, names: Topics,
               source_partitions: int) -> faust.App:
    app = faust.App(
        f"{cfg.app_id}-merge",
        broker=settings.faust_url(),
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        datadir=cfg.data_dir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=cfg.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.5, cfg.session_timeout_ms / 10_000),
        table_standby_replicas=0,
    )
    partials = raw_topic(app, names.window_partials)
    counts = raw_topic(app, names.window_counts)
    alerts = raw_topic(app, names.alerts)
    minute_table = raw_table(app, "minutes", 1)
    merging = Merging(settings, cfg, StateTable(minute_table, _minutes_schema),
                      source_partitions, counts, alerts)

    @app.agent(partials, name="merge-minutes")
    async def merge_minutes(stream):
        async for event in stream.events():
            await merging.process(event)

    return app


def create_worker(cfg: ProcessorSettings, settings: KafkaSettings, names: Topics,
                  source_partitions: int, loglevel: str = "INFO") -> faust.Worker:
    app = create_app(cfg, settings, names, source_partitions)
    counting = CountingService(Counting(cfg, settings, names), loop=None)
    return faust.Worker(app, counting, loglevel=loglevel)
