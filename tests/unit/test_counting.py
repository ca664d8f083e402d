"""Stage 1 (processor/counting.py) without a broker: its consumer, producer and state
reader are in-memory stand-ins (tests/support/fake_kafka.py) recording what it writes.

What it must do: count each source partition's events into one-minute windows, send a
partial when a window closes, dead-letter bad and late records with their reason, write
them with its state and input offsets in one transaction per checkpoint (or, at least
once, the state after the broker took the outputs), rewind to the last committed state
when a checkpoint fails, and come back from that state on a reassignment without
counting a record twice."""

from __future__ import annotations

import json
import random
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException
from support.fake_kafka import FakeMessage, FakeTransactionalProducer
from support.stage1 import AT_LEAST_ONCE, CFG, NAMES, T0, M, Rig, counts, tps, tx

from processor import counting
from processor.counting import StepFailed


def test_windows_are_counted_per_partition_and_sent_when_they_close():
    rig = Rig(partitions=[0, 1])
    rig.assign(0, 1)
    batch = [*rig.msgs(0, tx(T0 + 5_000), tx(T0 + 20_000, "denied")),
             *rig.msgs(1, tx(T0 + 30_000, "failed")),
             *rig.msgs(0, tx(T0 + M + 15_000))]  # partition 0's watermark passes T0 + M
    rig.counting.process(batch)
    assert rig.windows(0) == {T0: counts(approved=1, denied=1)}
    assert rig.windows(1) == {}, "partition 1's minute is still open"
    assert rig.partials(0)[-1].closed_until == T0 + M
    assert rig.counting.states[1].open == {T0: counts(failed=1)}
    assert rig.counting.states[0].open == {T0 + M: counts(approved=1)}
    assert (rig.counting.states[0].last_offset, rig.counting.states[1].last_offset) == (2, 0)
    assert all(not p.idle for p in rig.partials())
    assert [m.key() for m in rig.sent(NAMES.window_partials)] == [b"0", b"1"]


def test_terminals_travel_with_their_closed_window():
    rig = Rig()
    rig.assign(0)
    rig.feed(0, tx(T0 + 1_000, "denied", 1, "T-9"), tx(T0 + 2_000, "approved", 2, "T-9"),
             tx(T0 + M + 20_000, "approved", 3, "T-1"))
    [closing] = [p for p in rig.partials(0) if p.windows]
    assert list(closing.slices) == [T0]
    assert "T-9" in json.dumps(closing.slices[T0])
    assert "T-1" not in json.dumps(closing.slices[T0])


def test_bad_and_late_records_are_dead_lettered_with_their_reason():
    rig = Rig()
    rig.assign(0)
    far_future = int(time.time() * 1000) + 3 * 86_400_000
    rig.feed(0,
             tx(T0 + 5_000, i=0),
             b'{"id": "t1", "status": ',
             tx(T0 + 6_000, "stolen", 2),
             tx(T0 + M + 15_000, i=3),  # closes T0
             tx(T0 + 30_000, "denied", 4),  # T0 is closed: late
             tx(far_future, i=5),
             b"\xff\xfe")
    dead = rig.dead()
    assert [(k, d.reason) for k, d in dead] == [
        (f"{NAMES.transactions}:0:1".encode(), "malformed_json"),
        (f"{NAMES.transactions}:0:2".encode(), "unknown_status"),
        (f"{NAMES.transactions}:0:5".encode(), "future"),
        (f"{NAMES.transactions}:0:6".encode(), "malformed_json"),
        (f"{NAMES.transactions}:0:4".encode(), "late"),
    ]
    by_offset = {d.offset: d for _, d in dead}
    assert by_offset[4].payload == tx(T0 + 30_000, "denied", 4)
    assert "already closed" in by_offset[4].detail
    assert all(d.source == "processor" and d.partition == 0 and d.detail
               and d.topic == NAMES.transactions for _, d in dead)
    state = rig.counting.states[0]
    assert state.last_offset == 6, "dead-lettered records move the offset too"
    assert rig.windows(0) == {T0: counts(approved=1)}
    # The late one is charged to the newest open window, reported when it closes.
    assert state.open[T0 + M] == counts(approved=1, late=1)


def test_consumer_errors_and_records_of_partitions_not_owned_are_passed_over():
    rig = Rig()
    rig.assign(0)
    eof = FakeMessage(NAMES.transactions, 0, 0, None,
                      error_=KafkaError(KafkaError._PARTITION_EOF))
    other = FakeMessage(NAMES.transactions, 1, 0, tx(T0))  # revoked meanwhile
    rig.counting.process([eof, other, *rig.msgs(0, tx(T0 + 1_000))])
    assert list(rig.counting.states) == [0]
    assert rig.counting.states[0].open == {T0: counts(approved=1)}
    assert rig.dead() == []


def test_outputs_wait_for_the_checkpoint_and_commit_with_state_and_offsets():
    rig = Rig(partitions=[0, 1])
    rig.assign(0, 1)
    rig.feed(0, tx(T0 + 5_000), b"nope", tx(T0 + M + 15_000))
    assert rig.written() == [], "nothing is visible before its checkpoint"
    rig.consumer.high = {0: 3, 1: 0}
    rig.counting.tick()
    [client] = rig.make.made
    assert client.transactions == 1 and client.aborted == []
    topics = [m.topic() for m in rig.written()]
    first_state = topics.index(NAMES.partition_state)
    assert set(topics[first_state:]) == {NAMES.partition_state}
    assert {NAMES.window_partials, NAMES.dead_letter} <= set(topics[:first_state])
    states = rig.states()
    assert states.keys() == {b"0", b"1"}
    assert (states[b"0"].last_offset, states[b"1"].last_offset) == (2, -1)
    assert states[b"0"].open == {T0 + M: counts(approved=1)}
    # The input offsets go in the transaction, only where something was applied.
    assert rig.transaction_offsets() == [[(NAMES.transactions, 0, 3)]]
    assert rig.consumer.commits == []
    # The tick is also each partition's heartbeat: a partial each, not idle yet.
    heartbeat = rig.partials()[-2:]
    assert sorted(p.partition for p in heartbeat) == [0, 1]
    assert not any(p.idle for p in heartbeat)


def test_at_least_once_the_state_is_written_after_the_outputs_are_acknowledged():
    rig = Rig(partitions=[0, 1], cfg=AT_LEAST_ONCE)
    rig.assign(0, 1)
    rig.feed(0, tx(T0 + 5_000), b"nope", tx(T0 + M + 15_000))
    rig.consumer.high = {0: 3, 1: 0}
    rig.counting.tick()
    topics = [m.topic() for m in rig.written()]
    first_state = topics.index(NAMES.partition_state)
    assert set(topics[first_state:]) == {NAMES.partition_state}
    assert {NAMES.window_partials, NAMES.dead_letter} <= set(topics[:first_state])
    assert rig.consumer.commits == [[(NAMES.transactions, 0, 3)]]


def refuse_dead(topic, key, value):
    return KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if topic == NAMES.dead_letter else None


@pytest.mark.parametrize("cfg", [CFG, AT_LEAST_ONCE], ids=["exactly_once", "at_least_once"])
def test_a_refused_record_fails_the_checkpoint_before_the_state_and_rewinds(cfg):
    rig = Rig(producer_kw={"refuse": refuse_dead}, cfg=cfg)
    rig.assign(0)
    rig.feed(0, tx(T0 + 5_000), b"nope")
    rig.consumer.high = {0: 2}
    rig.counting.tick()
    assert rig.states() == {}, "no state may claim the refused dead letter was written"
    assert rig.transaction_offsets() == [] and rig.consumer.commits == []
    # Back to the last committed state (none): the records are read and counted again.
    assert rig.consumer.seeks == [(NAMES.transactions, 0, OFFSET_BEGINNING)]
    assert rig.counting.states[0].last_offset == -1 and rig.counting.waiting == 0
    if cfg is CFG:
        assert rig.written() == [], "the transaction was aborted whole"


def test_checkpoints_that_keep_failing_stop_the_worker():
    rig = Rig(producer_kw={"refuse": refuse_dead})
    rig.assign(0)
    for attempt in range(counting.CHECKPOINT_TRIES):
        rig.feed(0, tx(T0 + 5_000), b"nope", start=0)
        if attempt < counting.CHECKPOINT_TRIES - 1:
            assert rig.counting.tick() is None
    with pytest.raises(StepFailed, match="checkpoints in a row"):
        rig.counting.tick()


class AbortOnce(FakeTransactionalProducer):
    """The first commit fails as a broker gone mid-transaction does: abort required."""

    failed_once = False

    def commit_transaction(self, timeout: float = -1) -> None:
        if not AbortOnce.failed_once:
            AbortOnce.failed_once = True
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker gone",  # noqa: SLF001
                                            txn_requires_abort=True))
        super().commit_transaction(timeout)


def test_a_checkpoint_that_did_not_commit_is_counted_again_and_written_once(monkeypatch):
    monkeypatch.setattr(AbortOnce, "failed_once", False)
    rig = Rig(producer_cls=AbortOnce)
    rig.assign(0)
    values = [tx(T0 + 5_000), tx(T0 + 9_000, "denied", 1), tx(T0 + M + 15_000, i=2)]
    rig.feed(0, *values)
    rig.consumer.high = {0: 3}
    rig.counting.tick()
    assert rig.written() == [] and rig.counting.states[0].last_offset == -1
    rig.feed(0, *values, start=0)  # the consumer, sought back, reads them again
    rig.counting.tick()
    assert len(rig.make.made) == 2, "a new producer after the failed transaction"
    assert rig.windows(0) == {T0: counts(approved=1, denied=1)}
    assert [p.windows for p in rig.partials(0)].count({T0: counts(approved=1, denied=1)}) == 1
    assert rig.transaction_offsets() == [[(NAMES.transactions, 0, 3)]]


def test_state_is_restored_on_reassignment_and_applied_records_are_not_counted_again():
    first = Rig(partitions=[0, 1])
    first.assign(0, 1)
    values = [tx(T0 + 1_000 * i, "approved" if i % 3 else "denied", i) for i in range(5)]
    first.feed(0, *values)
    first.counting._on_revoke(first.consumer, tps(0, 1))
    assert first.counting.states == {}
    stored = first.states()
    assert stored[b"0"].last_offset == 4 and stored[b"1"].last_offset == -1

    second = Rig(store=first, partitions=[0, 1])
    second.assign(0, 1)
    assert second.reads == ["unit-state"]
    assert second.consumer.assigned == [(NAMES.transactions, 0, 5),
                                        (NAMES.transactions, 1, OFFSET_BEGINNING)]
    assert second.counting.states[0] == stored[b"0"]
    # After a crash the consumer re-reads from its last commit: 3 and 4 were applied.
    second.feed(0, values[3], values[4], tx(T0 + 9_000, "failed", 5), tx(T0 + 9_500, i=6),
                start=3)
    state = second.counting.states[0]
    assert state.last_offset == 6
    assert state.open == {T0: counts(approved=4, denied=2, failed=1)}
    second.feed(0, values[4], start=4)  # all of it applied already: nothing happens
    assert second.counting.states[0].open == {T0: counts(approved=4, denied=2, failed=1)}


def test_a_lost_partition_is_dropped_without_writing_its_outputs_or_state():
    rig = Rig(partitions=[0, 1])
    rig.assign(0, 1)
    rig.feed(1, tx(T0 + 5_000), b"nope")
    rig.counting._on_lost(rig.consumer, tps(1))
    rig.counting._on_revoke(rig.consumer, tps(1))  # no longer ours: nothing to write
    assert list(rig.counting.states) == [0] and 1 not in rig.counting.last_arrival
    assert rig.counting.waiting == 0
    rig.counting.tick()
    assert rig.states().keys() == {b"0"} and rig.dead() == []


def test_a_flood_of_dead_letters_is_checkpointed_before_its_tick(monkeypatch):
    monkeypatch.setattr(counting, "CHECKPOINT_RECORDS", 3)
    rig = Rig()
    rig.consumer.batches = [rig.msgs(0, *[b"nope"] * 4), rig.msgs(0, tx(T0 + 1_000))]
    rig.consumer.on_empty = rig.counting.stop_event.set
    rig.counting.run()
    [client] = rig.make.made
    assert client.transactions == 2, "one early checkpoint, one on the way out"
    assert client.offsets[0] == [(NAMES.transactions, 0, 4)]
    assert len(rig.dead()) == 4


def test_an_idle_partition_closes_its_last_minute_by_the_clock():
    rig = Rig(partitions=[0, 1, 2])
    rig.assign(0, 1, 2)
    rig.feed(0, tx(T0 + 5_000))
    rig.feed(2, tx(T0 + 8_000))
    rig.consumer.high = {0: 1, 1: 0, 2: 5}  # partition 2 is not caught up: not idle
    silent = time.time() - CFG.idle_timeout_s - 60
    rig.counting.last_arrival.update({0: silent, 1: silent, 2: silent})
    rig.counting.tick()
    last = {p.partition: p for p in rig.partials()}
    assert last[0].idle and last[0].windows == {T0: counts(approved=1)}
    assert last[0].closed_until >= T0 + M
    assert last[1].idle and last[1].closed_until is None  # never had an event
    assert not last[2].idle and last[2].windows == {}
    assert rig.counting.states[2].open == {T0: counts(approved=1)}


def test_run_consumes_until_stopped_and_checkpoints_on_the_way_out():
    rig = Rig(partitions=[0, 1])
    rig.consumer.batches = [rig.msgs(0, tx(T0 + 1_000), tx(T0 + 2_000, "failed")),
                            rig.msgs(1, tx(T0 + 3_000, "reversed"))]
    rig.consumer.on_empty = rig.counting.stop_event.set
    rig.counting.run()
    assert rig.consumer.topics == [NAMES.transactions] and rig.consumer.closed
    assert rig.consumer.assigned == [(NAMES.transactions, 0, OFFSET_BEGINNING),
                                     (NAMES.transactions, 1, OFFSET_BEGINNING)]
    states = rig.states()
    assert (states[b"0"].last_offset, states[b"1"].last_offset) == (1, 0)
    assert states[b"0"].open == {T0: counts(approved=1, failed=1)}
    assert rig.counting.error is None


def test_run_remembers_why_it_stopped(monkeypatch):
    monkeypatch.setattr(counting, "CHECKPOINT_TRIES", 1)
    rig = Rig(producer_kw={"refuse": lambda *_: KafkaError(KafkaError._MSG_TIMED_OUT)})
    rig.consumer.batches = [rig.msgs(0, tx(T0 + 1_000))]
    rig.consumer.on_empty = rig.counting.stop_event.set
    with pytest.raises(StepFailed):
        rig.counting.run()
    assert isinstance(rig.counting.error, StepFailed) and rig.consumer.closed


def test_what_is_sent_does_not_depend_on_how_the_records_were_batched():
    rng = random.Random(5)
    events = [(p, T0 + rng.randrange(0, 6 * M), rng.choice(["approved", "denied", "failed"]))
              for p in (0, 1) for _ in range(300)]
    events.append((0, T0 + 30_000, "denied"))  # late by then, surely

    def run(batch_size: int):
        rig = Rig(partitions=[0, 1])
        rig.assign(0, 1)
        msgs = [m for p in (0, 1) for m in rig.msgs(
            p, *[tx(ts, s, i) for i, (q, ts, s) in enumerate(events) if q == p])]
        rng.shuffle(msgs)  # partitions interleave; each keeps its own order
        msgs.sort(key=lambda m: (m.partition() if batch_size < 50 else 0, m.offset()))
        for i in range(0, len(msgs), batch_size):
            rig.counting.process(msgs[i:i + batch_size])
        return ({p: rig.windows(p) for p in (0, 1)},
                [(k, d.reason, d.offset) for k, d in rig.dead()])

    one_by_one, whole = run(1), run(10_000)
    assert one_by_one == whole
    assert whole[1], "some records were late"
    assert sum(sum(c) for w in whole[0].values() for c in w.values()) > 0
