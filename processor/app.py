"""The Faust worker: the only module of the processor that touches Faust.

Two agents, one concern each:
- `count_transactions` reads the transactions topic and keeps, per source partition,
  the open windows (PartitionWindows) in a changelog-backed table, together with the
  offset of the last record applied. A record at or below that offset was already
  counted (we crashed before Faust committed): it is skipped.
- `merge_minutes` reads the per-partition partials (one tiny partition) and emits one
  window-count per minute once every active partition has closed it, then scores it and
  emits alerts (Minutes).

Faust's windowed tables and exactly-once mode are not used (see issue 3): windows are
closed by our own watermark, driven by events and by `tick` for idle partitions.
Ordering rule: everything a state change implies (partials, dead letters, window counts,
alerts) is acknowledged by Kafka *before* the state is written, so a crash can only
cause a re-emission with the same id and content, never a loss.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
import msgspec
from prometheus_client import Counter, Gauge

from processor.config import ProcessorConfig
from processor.incidents import IncidentTracker
from processor.minutes import Minutes, MinuteState
from processor.windows import STATUS_INDEX, MinuteMerger, PartitionWindows, minute_id, to_ms
from txmon.config import KafkaSettings
from txmon.contracts import DeadLetter, DeadLetterReason, Topics, WindowPartial, encode
from txmon.contracts import metrics as m
from txmon.contracts.events import InvalidTransaction, decode_transaction

log = logging.getLogger(__name__)

EVENTS = Counter(m.PROCESSOR_EVENTS_TOTAL.removesuffix("_total"),
                 "Transactions read by the worker, by outcome", ["outcome"])
WATERMARK = Gauge(m.PROCESSOR_WATERMARK, "Event-time watermark per source partition",
                  ["partition"])
WINDOWS_EMITTED = Counter(m.PROCESSOR_WINDOWS_EMITTED_TOTAL.removesuffix("_total"),
                          "Closed minutes emitted by this worker")

MINUTES_KEY = "minutes"
_partition_decoder = msgspec.json.Decoder(PartitionWindows)
_minutes_decoder = msgspec.json.Decoder(MinuteState)
_partial_decoder = msgspec.json.Decoder(WindowPartial)


def raw_topic(app: faust.App, name: str, partitions: int | None = None) -> faust.TopicT:
    # Raw bytes in and out: decoding is ours, so a bad record is a dead letter, not a
    # Faust deserialization crash.
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


def raw_table(app: faust.App, name: str, partitions: int) -> faust.Table:
    table = app.Table(name, partitions=partitions, key_type=str, value_type=bytes)
    # Our records are already encoded (msgspec): store the bytes as they are.
    table.key_serializer = table.value_serializer = "raw"
    return table


class StateTable:
    """A Faust table used as a durable key-value record per partition.

    Writes go through `send_changelog` with an explicit partition so that the timer
    (which has no current event) can persist too.
    """

    def __init__(self, table: faust.Table, decoder: msgspec.json.Decoder):
        self.table = table
        self.decoder = decoder

    def load(self, key: str):
        raw = self.table.data.get(key)
        return None if raw is None else self.decoder.decode(raw)

    def save(self, partition: int, key: str, state) -> None:
        raw = encode(state)
        self.table.data[key] = raw
        self.table.send_changelog(partition, key, raw)


class Counting:
    """Stage 1: per-partition windows, dead letters, partials."""

    def __init__(self, app: faust.App, cfg: ProcessorConfig, names: Topics,
                 table: StateTable, partials: faust.TopicT, dead: faust.TopicT):
        self.app, self.cfg, self.names = app, cfg, names
        self.table, self.partials, self.dead = table, partials, dead
        self.lock = asyncio.Lock()
        self.last_arrival: dict[int, float] = {}
        self.lateness_ms = int(cfg.lateness_s * 1000)

    def load(self, partition: int) -> PartitionWindows:
        return self.table.load(str(partition)) or PartitionWindows(self.lateness_ms)

    async def dead_letter(self, event, reason: str, detail: str):
        msg = event.message
        record = DeadLetter(
            reason=reason, detail=detail, source="processor", topic=msg.topic,
            partition=msg.partition, offset=msg.offset,
            payload_b64=DeadLetter.wrap(event.value or b""),
        )
        EVENTS.labels("dead_letter" if reason != DeadLetterReason.LATE else "late").inc()
        key = f"{msg.topic}:{msg.partition}:{msg.offset}".encode()
        return await self.dead.send(key=key, value=encode(record))

    async def process(self, events) -> None:
        now = time.time()
        future_ms = int((now + self.cfg.max_future_s) * 1000)
        by_partition: dict[int, list] = {}
        for event in events:
            by_partition.setdefault(event.message.partition, []).append(event)
        async with self.lock:
            for partition, batch in by_partition.items():
                state = self.load(partition)
                before = state.closed_until
                pending = []
                counted = 0
                for event in batch:
                    offset = event.message.offset
                    if state.seen(offset):
                        continue
                    try:
                        if event.value is None:
                            raise InvalidTransaction(DeadLetterReason.MALFORMED_JSON, "empty value")
                        tx = decode_transaction(event.value)
                        ts_ms = to_ms(tx.timestamp)
                        if ts_ms > future_ms:
                            raise InvalidTransaction(
                                DeadLetterReason.FUTURE,
                                f"{tx.timestamp.isoformat()} is more than "
                                f"{self.cfg.max_future_s:g}s ahead of the clock")
                    except InvalidTransaction as exc:
                        state.skip(offset)
                        pending.append(await self.dead_letter(event, exc.reason, exc.detail))
                        continue
                    if state.add(offset, ts_ms, STATUS_INDEX[tx.status]):
                        counted += 1
                    else:
                        pending.append(await self.dead_letter(
                            event, DeadLetterReason.LATE,
                            f"window {minute_id(ts_ms)} closed (watermark "
                            f"{minute_id(state.closed_until)})"))
                EVENTS.labels("counted").inc(counted)
                self.last_arrival[partition] = now
                await self.flush(partition, state, pending, before, idle=False)

    async def flush(self, partition: int, state: PartitionWindows, pending: list,
                    before: int | None, idle: bool, heartbeat: bool = False) -> None:
        closed = state.drain_closed()
        if closed or heartbeat or state.closed_until != before:
            partial = WindowPartial(partition=partition, closed_until=state.closed_until,
                                    idle=idle, windows=closed, sent_ms=int(time.time() * 1000))
            pending.append(await self.partials.send(key=str(partition).encode(),
                                                    value=encode(partial)))
        if pending:
            await asyncio.gather(*pending)
        self.table.save(partition, str(partition), state)
        if state.watermark is not None:
            WATERMARK.labels(str(partition)).set(state.watermark / 1000)

    def ready(self) -> bool:
        app = self.app
        return not (app.rebalancing or app.in_recovery
                    or not app.tables.recovery.completed.is_set())

    async def tick(self) -> None:
        """Heartbeat every owned partition; advance the ones that are idle."""
        if not self.ready():
            return
        consumer = self.app.consumer
        now = time.time()
        owned = [tp for tp in consumer.assignment() if tp.topic == self.names.transactions]
        async with self.lock:
            for tp in owned:
                p = tp.partition
                state = self.load(p)
                silent = now - self.last_arrival.setdefault(p, now)
                highwater = consumer.highwater(tp)
                caught_up = highwater is not None and state.last_offset + 1 >= highwater
                # A partition that never had an event has nothing to wait for.
                idle = caught_up and (silent >= self.cfg.idle_timeout_s
                                      or state.max_event_ms is None)
                before = state.closed_until
                if idle:
                    state.advance_idle(int(silent * 1000))
                await self.flush(p, state, [], before, idle=idle, heartbeat=True)

    def on_assigned(self) -> None:
        # A partition just (re)assigned has not been silent: it was moving.
        self.last_arrival.clear()


class Merging:
    """Stage 2: one record per minute, scored, with its alerts."""

    def __init__(self, cfg: ProcessorConfig, table: StateTable, source_partitions: int,
                 counts: faust.TopicT, alerts: faust.TopicT):
        self.cfg, self.table = cfg, table
        self.source_partitions = source_partitions
        self.counts, self.alerts = counts, alerts
        self.minutes = Minutes(cfg.model_path, cfg.warmup_windows)

    def load(self) -> MinuteState:
        state = self.table.load(MINUTES_KEY)
        if state is None:
            state = MinuteState(
                merger=MinuteMerger(self.source_partitions, self.cfg.max_empty_minutes,
                                    int(2 * self.cfg.tick_s * 1000)),
                incidents=IncidentTracker(self.cfg.resolve_after),
            )
        return state

    async def process(self, event) -> None:
        state = self.load()
        offset = event.message.offset
        if offset <= state.last_offset:
            return
        try:
            partial = _partial_decoder.decode(event.value)
        except msgspec.MsgspecError:
            log.error("undecodable partial at offset %d: skipped", offset)
            state.last_offset = offset
            self.table.save(event.message.partition, MINUTES_KEY, state)
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
        self.table.save(event.message.partition, MINUTES_KEY, state)


def create_app(cfg: ProcessorConfig, settings: KafkaSettings, names: Topics,
               source_partitions: int) -> faust.App:
    app = faust.App(
        cfg.app_id,
        broker=settings.faust_url(),
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        datadir=cfg.data_dir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        topic_allow_declare=True,
        table_standby_replicas=0,
    )
    transactions = raw_topic(app, names.transactions)
    partials = raw_topic(app, names.window_partials)
    dead = raw_topic(app, names.dead_letter)
    counts = raw_topic(app, names.window_counts)
    alerts = raw_topic(app, names.alerts)
    partition_table = raw_table(app, "partition-windows", source_partitions)
    minute_table = raw_table(app, "minutes", 1)
    counting = Counting(app, cfg, names, StateTable(partition_table, _partition_decoder),
                        partials, dead)
    merging = Merging(cfg, StateTable(minute_table, _minutes_decoder), source_partitions,
                      counts, alerts)

    @app.agent(transactions, name="count-transactions")
    async def count_transactions(stream):
        async for events in stream.take_events(cfg.batch_size, within=cfg.batch_within_s):
            await counting.process(events)

    @app.agent(partials, name="merge-minutes")
    async def merge_minutes(stream):
        async for event in stream.events():
            await merging.process(event)

    @app.timer(cfg.tick_s)
    async def tick():
        await counting.tick()

    @app.on_rebalance_complete.connect
    async def on_rebalanced(sender, **kwargs):
        counting.on_assigned()

    return app
