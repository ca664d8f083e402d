"""processor/merging.py's loop on in-memory clients: each step's minutes, state and
input offset commit in one transaction; an aborted step is applied again from the last
committed state, and a restarted loop carries on after it, so a read_committed reader
sees every minute once."""

from __future__ import annotations

import msgspec
from confluent_kafka import KafkaError, TopicPartition
from support.fake_kafka import FakeMessage, FakeProducer, FakeTransactionalProducer

from processor.merging import Clients, Merging, state_topic
from txmon.contracts import STATUSES, Topics, WindowCount, WindowPartial, encode
from txmon.contracts.minutes import MINUTE_MS, minute_id
from txmon.settings import KafkaSettings, ProcessorSettings

NAMES = Topics()
CFG = ProcessorSettings(app_id="unit", model_path=None, warmup_windows=1000)
SETTINGS = KafkaSettings(bootstrap="127.0.0.1:1")
START = 1_772_000_000_000 // MINUTE_MS * MINUTE_MS
_window = msgspec.json.Decoder(WindowCount)


def partial(i: int) -> bytes:
    counts = [10 + i] + [0] * len(STATUSES)  # the statuses, then the late count
    return encode(WindowPartial(partition=0, closed_until=START + (i + 1) * MINUTE_MS,
                                windows={START + i * MINUTE_MS: counts}))


class Log:
    """The partials partition as a consumer sees it: consumed `per_consume` at a time
    from a position that `assign` and `seek` set; `stop` is set once all is consumed."""

    def __init__(self, values: list[bytes], per_consume: int):
        self.msgs = [FakeMessage(NAMES.window_partials, 0, i, v) for i, v in enumerate(values)]
        self.per_consume = per_consume
        self.pos: int | None = None
        self.on_assign = None
        self.stop = None

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None) -> None:
        self.on_assign = on_assign

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self.pos is None:
            self.on_assign(self, [TopicPartition(NAMES.window_partials, 0)])
        out = self.msgs[self.pos:self.pos + min(num_messages, self.per_consume)]
        self.pos += len(out)
        if self.pos >= len(self.msgs):
            self.stop.set()
        return out

    def assign(self, tps) -> None:
        self.pos = max(tps[0].offset, 0)

    def seek(self, tp) -> None:
        self.pos = max(tp.offset, 0)

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def commit(self, offsets=None, asynchronous: bool = True) -> None:
        self.commits = [*getattr(self, "commits", []),
                        [(tp.topic, tp.partition, tp.offset) for tp in offsets]]

    def close(self) -> None:
        pass


def merge(log: Log, producer: FakeTransactionalProducer, state_from=None,
          cfg: ProcessorSettings = CFG) -> Merging:
    """Runs the loop until `log` is consumed."""
    def read(settings, topic, purpose):
        return (producer if state_from is None else state_from).on(topic)

    loop = Merging(cfg, SETTINGS, NAMES, 1, Clients(log, lambda conf: producer, read))
    log.stop = loop.stop_event
    loop.run()
    return loop


def minutes(producer: FakeTransactionalProducer) -> list[str]:
    return [_window.decode(m.value()).id for m in producer.on(NAMES.window_counts)]


def test_a_step_commits_its_minutes_state_and_offset_together():
    producer = FakeTransactionalProducer()
    merge(Log([partial(i) for i in range(6)], 3), producer)
    assert minutes(producer) == [minute_id(START + i * MINUTE_MS) for i in range(6)]
    assert producer.offsets == [[(NAMES.window_partials, 0, 3)], [(NAMES.window_partials, 0, 6)]]
    assert len(producer.on(state_topic(CFG))) == producer.transactions == 2


def test_an_aborted_step_is_merged_again_from_the_last_committed_state():
    refused = []

    def once(topic, key, value):
        if topic == NAMES.window_counts and key == minute_id(START + 3 * MINUTE_MS).encode() \
                and not refused:
            refused.append(key)
            return KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)
        return None

    producer = FakeTransactionalProducer(refuse=once)
    merge(Log([partial(i) for i in range(9)], 3), producer)
    assert refused, "the second step was aborted"
    assert minutes(producer) == [minute_id(START + i * MINUTE_MS) for i in range(9)]
    counts = [_window.decode(m.value()).total for m in producer.on(NAMES.window_counts)]
    assert counts == [10 + i for i in range(9)], "no minute counted twice"


def test_a_restarted_loop_carries_on_after_the_committed_state():
    producer, values = FakeTransactionalProducer(), [partial(i) for i in range(8)]
    merge(Log(values[:4], 4), producer)
    after = FakeTransactionalProducer()
    merge(Log(values, 10), after, state_from=producer)
    assert after.offsets == [[(NAMES.window_partials, 0, 8)]]
    assert minutes(producer) + minutes(after) == [
        minute_id(START + i * MINUTE_MS) for i in range(8)]


def test_at_least_once_writes_each_step_s_outputs_before_its_state_without_transactions():
    producer, log = FakeProducer(), Log([partial(i) for i in range(6)], 3)
    merge(log, producer, cfg=CFG.model_copy(update={"processing_guarantee": "at_least_once"}))
    assert minutes(producer) == [minute_id(START + i * MINUTE_MS) for i in range(6)]
    topics = [m.topic() for m in producer.delivered]
    assert topics == ([NAMES.window_counts] * 3 + [state_topic(CFG)]) * 2, "state last"
    assert log.commits == [[(NAMES.window_partials, 0, 3)], [(NAMES.window_partials, 0, 6)]]
