"""txmon/kafka/read.py's pure parts: the reader's settings, the end-offset bookkeeping
(the one test of having read a topic to its end) and the asking again of a broker not
ready yet. Reading from a real broker: tests/integration (the exporter, the API, the
report, `txmon alerts`)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from txmon.kafka import read
from txmon.kafka.read import Ends, Tail, reader_config, retry
from txmon.settings import KafkaSettings

SETTINGS = KafkaSettings(bootstrap="broker.invalid:9092")


class Msg:
    """A record as a consumer hands it out: topic, partition, offset."""

    def __init__(self, topic: str, partition: int, offset: int):
        self._at = (topic, partition, offset)

    def topic(self) -> str:
        return self._at[0]

    def partition(self) -> int:
        return self._at[1]

    def offset(self) -> int:
        return self._at[2]


class Positions:
    """A consumer's local positions (the offset after the last record handed out)."""

    def __init__(self, **at: int):
        self.at = at

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.at.get(tp.topic, -1001))
                for tp in partitions]


def test_a_reader_joins_no_group_and_commits_nothing():
    one = reader_config(SETTINGS, "txmon-alerts")
    two = reader_config(SETTINGS, "txmon-alerts")
    assert one["enable.auto.commit"] is False
    assert one["enable.partition.eof"] is False
    assert one["auto.offset.reset"] == "earliest"
    assert one["bootstrap.servers"] == "broker.invalid:9092"
    # The group id names the reader and is its own: two readers never share a group.
    assert one["group.id"].startswith("txmon-alerts-")
    assert one["group.id"] != two["group.id"]


def test_a_callers_settings_win():
    conf = reader_config(SETTINGS, "bench-watch", **{"fetch.wait.max.ms": 50,
                                                     "enable.partition.eof": True})
    assert conf["fetch.wait.max.ms"] == 50 and conf["enable.partition.eof"] is True
    assert conf["enable.auto.commit"] is False


def test_only_partitions_with_records_are_waited_for():
    ends = Ends({("t", 0): (0, 5), ("t", 1): (3, 3), ("t", 2): (0, 0)})
    assert ends.left == {("t", 0): 5}
    assert ends.assignment() == [TopicPartition("t", 0, 0)]
    assert not ends.check(Positions())


def test_a_partition_is_read_when_its_last_record_is():
    ends = Ends({("t", 0): (0, 3), ("t", 1): (0, 2)})
    for offset in (0, 1):
        ends.seen(Msg("t", 0, offset))
    assert ("t", 0) in ends.left  # offset 2 still to come
    ends.seen(Msg("t", 0, 2))
    ends.seen(Msg("t", 1, 1))
    assert ends.left == {}
    assert ends.check(Positions())


def test_the_position_counts_past_offsets_no_record_shows():
    # The last offset of t[0] is a transaction marker: no record 4 ever comes, but the
    # consumer's position moves past it.
    ends = Ends({("t", 0): (0, 5)})
    ends.seen(Msg("t", 0, 3))
    assert not ends.check(Positions(t=4))
    assert ends.check(Positions(t=5))


def test_records_written_after_the_look_are_not_within():
    ends = Ends({("t", 0): (2, 6)})
    assert [o for o in range(8) if ends.within(("t", 0), o)] == [2, 3, 4, 5]
    assert not ends.within(("t", 9), 0)  # a partition not looked at


def test_a_range_starts_at_its_first_offset():
    ends = Ends({("t", 3): (40, 45)})
    assert ends.assignment() == [TopicPartition("t", 3, 40)]
    ends.seen(Msg("t", 3, 44))
    assert ends.check(Positions())
    assert Ends({("t", 3): (45, 45)}).left == {}  # an empty range: nothing to wait for


def test_a_broker_not_ready_is_asked_again(monkeypatch):
    monkeypatch.setattr(read, "RETRY_S", 0.0)
    answers = [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.OFFSET_NOT_AVAILABLE,
               KafkaError.LEADER_NOT_AVAILABLE]

    def ask():
        if answers:
            raise KafkaException(KafkaError(answers.pop(0)))
        return (0, 7)

    assert retry(ask, time.monotonic() + 60) == (0, 7)
    assert answers == []


def test_other_errors_and_the_deadline_end_the_asking(monkeypatch):
    monkeypatch.setattr(read, "RETRY_S", 0.0)
    calls = []

    def denied():
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        retry(denied, time.monotonic() + 60)
    assert len(calls) == 1

    def leaderless():
        raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))

    with pytest.raises(KafkaException) as caught:
        retry(leaderless, time.monotonic() - 1)
    assert caught.value.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION


def test_a_follower_looks_again_at_once_while_a_topic_has_no_partition():
    tail = Tail(consumer=None, topics=["a", "b"], start=OFFSET_BEGINNING)
    assert tail.due()  # never looked
    tail._looked = time.monotonic()
    tail.assigned = {("a", 0)}
    assert tail.due()  # b is being created
    tail.assigned = {("a", 0), ("b", 0)}
    assert not tail.due()  # all there: again after REFRESH_S
    tail._looked -= read.REFRESH_S
    assert tail.due()


def test_caught_up_needs_the_ends_noted_first():
    tail = Tail(consumer=Positions(t=9), topics=["t"])
    assert not tail.caught_up()
    tail.ends = Ends({("t", 0): (0, 9)})
    assert tail.caught_up()
