"""Stage 1 (processor/counting.py) on in-memory clients (support/fake_kafka.py), for
the unit tests of counting and of counting and merging together."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import msgspec
from confluent_kafka import TopicPartition

from processor.counting import Counting
from processor.windows import LATE, WINDOW_MS, PartitionWindows, window_start
from support.fake_kafka import (
    FakeConsumer,
    FakeMessage,
    FakeProducer,
    FakeTransactionalProducer,
    factory,
)
from txmon.contracts import STATUS_INDEX, DeadLetter, Topics, WindowPartial
from txmon.settings import KafkaSettings, ProcessorSettings

M = WINDOW_MS
#: A minute boundary an hour ago: recent enough to be no `future`, old enough for idling.
T0 = window_start(int(time.time() * 1000)) - 60 * M
NAMES = Topics()
CFG = ProcessorSettings(app_id="unit", lateness_s=10.0, idle_timeout_s=15.0)
#: The same without transactions (TXMON_PROCESSING_GUARANTEE=at_least_once).
AT_LEAST_ONCE = CFG.model_copy(update={"processing_guarantee": "at_least_once"})

_partial = msgspec.json.Decoder(WindowPartial)
_state = msgspec.json.Decoder(PartitionWindows)
_dead = msgspec.json.Decoder(DeadLetter)


def tx(ts_ms: int, status: str = "approved", i: int = 0, terminal: str | None = None) -> bytes:
    stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    return json.dumps({"id": f"t{i}", "status": status, "timestamp": stamp + "Z",
                       "terminal_id": terminal}).encode()


def counts(**by_status: int) -> list[int]:
    out = [0] * (LATE + 1)
    for status, n in by_status.items():
        out[LATE if status == "late" else STATUS_INDEX[status]] = n
    return out


class Rig:
    """A Counting on stand-ins. `store` is where its state is read back from: by
    default what its own producers committed (the compacted state topic, uncompacted).
    `cfg` chooses the processing guarantee (exactly once, in transactions, by default);
    `producer_kw` is handed to each fake producer (a `refuse` function, a `capacity`)."""

    def __init__(self, store=None, producer_kw: dict | None = None, cfg=CFG,
                 producer_cls=None, **consumer_kw):
        transactional = cfg.processing_guarantee == "exactly_once"
        self.make = factory(producer_cls or (FakeTransactionalProducer if transactional
                                             else FakeProducer), **(producer_kw or {}))
        self.store = self if store is None else store
        self.consumer = FakeConsumer(**consumer_kw)
        self.reads: list[str] = []
        self.offsets: dict[int, int] = {}
        self.counting = Counting(cfg, KafkaSettings(), NAMES, consumer=self.consumer,
                                 producer=self.make, read=self.read)

    def read(self, settings, topic: str, purpose: str):
        self.reads.append(purpose)
        return list(self.store.on(topic))

    def on(self, topic: str) -> list[FakeMessage]:
        """What a read_committed reader finds of `topic`, from every producer made."""
        return [m for client in self.make.made for m in client.on(topic)]

    def written(self) -> list[FakeMessage]:
        """Every record a reader finds, in the order written."""
        return [m for client in self.make.made
                for m in getattr(client, "committed", client.delivered)]

    def transaction_offsets(self) -> list:
        """The input offsets each committed transaction carried."""
        return [o for client in self.make.made for o in getattr(client, "offsets", [])]

    def assign(self, *partitions: int) -> None:
        self.counting._on_assign(self.consumer, tps(*partitions))

    def msgs(self, partition: int, *values: bytes, start: int | None = None) -> list:
        offset = self.offsets.get(partition, 0) if start is None else start
        out = [FakeMessage(NAMES.transactions, partition, offset + i, v)
               for i, v in enumerate(values)]
        self.offsets[partition] = offset + len(values)
        return out

    def feed(self, partition: int, *values: bytes, start: int | None = None) -> None:
        self.counting.process(self.msgs(partition, *values, start=start))

    def sent(self, topic: str) -> list[FakeMessage]:
        """What is in `topic` once the outputs waiting are checkpointed."""
        if self.counting.waiting and self.counting.states:
            assert self.counting._checkpoint()
        return self.on(topic)

    def partials(self, partition: int | None = None) -> list[WindowPartial]:
        got = [_partial.decode(m.value()) for m in self.sent(NAMES.window_partials)]
        return [p for p in got if partition is None or p.partition == partition]

    def windows(self, partition: int) -> dict[int, list[int]]:
        """Every window the partition's partials carried, merged."""
        out: dict[int, list[int]] = {}
        for p in self.partials(partition):
            out.update(p.windows)
        return out

    def dead(self) -> list[tuple[bytes, DeadLetter]]:
        return [(m.key(), _dead.decode(m.value())) for m in self.sent(NAMES.dead_letter)]

    def states(self) -> dict[bytes, PartitionWindows]:
        return {m.key(): _state.decode(m.value()) for m in self.on(NAMES.partition_state)}


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition(NAMES.transactions, p) for p in partitions]
