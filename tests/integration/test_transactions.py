"""txmon.kafka.transact on the real broker: a batch is visible to read_committed readers
whole or not at all, concurrent batches share transactions, a writer whose id was taken
over is fenced, and a step of a member whose partitions moved on is refused."""

from __future__ import annotations

import concurrent.futures
import os
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from support.kafka import consume_all
from support.obs import wait_for

from txmon.kafka.produce import PIPELINE, REQUEST, producer_config
from txmon.kafka.transact import Steps, TransactionalWriter, transactional_id

#: Over the broker's message.max.bytes (1 MB) and incompressible: the broker refuses it
#: at once, where a record for a missing topic waits for the topic as long as the
#: transaction may last, and the coordinator's timeout then races the abort.
TOO_LARGE = os.urandom(1_200_000)
#: A member that does not poll this long leaves its group (max.poll.interval.ms).
MAX_POLL_S = 7.0


def writer(settings, tid: str | None = None, **kw) -> TransactionalWriter:
    config = producer_config(settings, REQUEST,
                             **{"transactional.id": tid or transactional_id("test"),
                                "transaction.timeout.ms": 10_000,
                                "message.max.bytes": 2_000_000})
    return TransactionalWriter(config, commit_timeout_s=15, **kw)


def values(settings, topic: str, committed: bool = True) -> list[bytes]:
    level = "read_committed" if committed else "read_uncommitted"
    return [m.value for m in consume_all(settings, topic, **{"isolation.level": level})]


def test_concurrent_batches_are_each_written_once_and_whole(kafka_settings, unique_topics):
    w = writer(kafka_settings)
    topic = unique_topics.transactions
    batches = [[(b"k%d" % i, b"%d-%d" % (b, i)) for i in range(500)] for b in range(20)]
    futures = [w.submit({topic: batch}) for batch in batches]
    outcomes = [f.result(60) for f in futures]
    w.close()
    assert {o.state for o in outcomes} == {"committed"}
    assert [o.records for o in outcomes] == [500] * 20
    got = values(kafka_settings, topic)
    assert sorted(got) == sorted(v for batch in batches for _, v in batch)


def test_a_failed_batch_is_invisible_to_read_committed_readers(kafka_settings, unique_topics):
    w = writer(kafka_settings)
    topic = unique_topics.transactions
    bad = w.submit({topic: [(b"k", b"written-then-aborted")] * 50 + [(b"k", TOO_LARGE)]},
                   ).result(60)
    good = w.submit({topic: [(b"k", b"kept")]}).result(60)
    w.close()
    assert bad.state == "aborted" and bad.error, bad
    assert good.committed
    assert values(kafka_settings, topic) == [b"kept"]
    # The aborted records did reach the log: only the transaction hides them.
    assert values(kafka_settings, topic, committed=False).count(b"written-then-aborted") == 50


def test_a_writer_whose_id_is_taken_over_is_fenced(kafka_settings, unique_topics):
    tid = transactional_id("fence")
    old = writer(kafka_settings, tid)
    topic = unique_topics.transactions
    assert old.submit({topic: [(b"k", b"before")]}).result(60).committed
    new = writer(kafka_settings, tid)
    zombie = old.submit({topic: [(b"k", b"zombie")]}).result(60)
    assert zombie.state == "aborted" and "fenced" in zombie.error.lower(), zombie
    assert new.submit({topic: [(b"k", b"after")]}).result(60).committed
    # The zombie stays fenced: it never takes the id back from the newer writer.
    assert old.submit({topic: [(b"k", b"zombie again")]}).result(60).state == "aborted"
    assert new.submit({topic: [(b"k", b"still mine")]}).result(60).committed
    old.close()
    new.close()
    assert values(kafka_settings, topic) == [b"before", b"after", b"still mine"]


def test_batches_from_many_threads_share_transactions(kafka_settings, unique_topics):
    w = writer(kafka_settings)
    topic = unique_topics.transactions
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(
            lambda i: w.submit({topic: [(b"k", b"%d" % i)]}).result(60), range(200)))
    w.close()
    assert all(o.committed for o in outcomes)
    assert sorted(values(kafka_settings, topic), key=int) == [b"%d" % i for i in range(200)]


def test_a_member_whose_partitions_moved_on_cannot_commit_a_step(kafka_settings, unique_topics):
    """EOS v2's fencing, which stage 1 relies on (each worker's transactional.id is its
    own, so no producer epoch fences a zombie): a member that stopped polling past
    max.poll.interval.ms lost its partitions to a successor, and the step it then tries
    carries a stale group generation; the broker refuses its offsets and nothing of the
    step becomes visible."""
    source, out = unique_topics.transactions, unique_topics.window_partials
    seed = Producer(kafka_settings.confluent())
    for i in range(3):
        seed.produce(source, b"%d" % i)
    assert seed.flush(30) == 0
    group = f"zombie-{uuid.uuid4().hex[:8]}"
    zombie = member(kafka_settings, group, source)
    steps = Steps(producer_config(kafka_settings, PIPELINE, **{
        "transactional.id": transactional_id("zombie"), "transaction.timeout.ms": 10_000}),
        zombie)
    assert steps.commit([(out, b"k", b"before")], [], [TopicPartition(source, 0, 1)])
    successor = member(kafka_settings, group, source)  # joins once the zombie is out
    zombie_wrote = steps.commit([(out, b"k", b"zombie")], [], [TopicPartition(source, 0, 3)])
    steps.close()
    zombie.close()
    successor.close()
    assert zombie_wrote is False
    assert values(kafka_settings, out) == [b"before"]


def member(settings, group: str, topic: str) -> Consumer:
    """A group member that holds `topic`'s partition, then polls no more: after
    MAX_POLL_S it is out of the group, as a paused or stuck worker would be."""
    consumer = Consumer(settings.confluent(**{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": int(MAX_POLL_S * 1000)}))
    consumer.subscribe([topic])
    wait_for(lambda: (consumer.poll(0.2), consumer.assignment())[1], 60,
             what=f"{topic} assigned in {group}")
    return consumer
