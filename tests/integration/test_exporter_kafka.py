"""`txmon export` against the real broker: what reaches /metrics is what is on the topics,
each id once, bad records counted, lag read from the processor group's commits."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from support.obs import (
    ExporterProcess,
    alert_key,
    make_alert,
    make_dead_letter,
    produce,
    reference_windows,
    value,
    wait_for,
    window_key,
)

from txmon.contracts import STATUSES
from txmon.contracts import metrics as m

DAY = date(2026, 3, 2)


def synthetic_windows(n: int, start_minute: int = 0):
    """Minutes of a plausible day without touching the reference data."""
    out = []
    for wc in reference_windows_from_counts(n, start_minute):
        out.append(wc)
    return out


def reference_windows_from_counts(n, start_minute):
    from datetime import UTC, datetime

    from txmon.contracts import WindowCount

    t0 = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(minutes=start_minute)
    for i in range(n):
        ws = t0 + timedelta(minutes=i)
        counts = {s: 0 for s in STATUSES}
        counts.update(approved=100 + i, denied=10 + i % 3, failed=i % 2, reversed=2)
        yield WindowCount(id=ws.isoformat(), start=ws, end=ws + timedelta(minutes=1),
                          counts=counts, total=sum(counts.values()), late=1 if i == 7 else 0)


def commit_processor_offsets(settings, topic: str, group: str, committed: dict[int, int]):
    """Commit as the processor would; retried while a restarted broker's group coordinator
    is still loading (NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS)."""
    consumer = Consumer(settings.confluent(**{"group.id": group, "enable.auto.commit": False}))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                consumer.commit(offsets=[TopicPartition(topic, p, o)
                                         for p, o in committed.items()], asynchronous=False)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        consumer.close()


def test_exporter_counts_topics_once_and_survives_bad_records(
        kafka_settings, unique_topics, txmon_env, tmp_path):
    t = unique_topics
    windows = list(synthetic_windows(30))
    alerts = [make_alert("inc-1", "open", "denied", windows[10].start),
              make_alert("inc-1", "update", "denied", windows[11].start),
              make_alert("inc-2", "open", "failed", windows[12].start, severity="warning")]
    # Re-emissions after a processor crash: same ids, same content.
    produce(kafka_settings, t.window_counts, windows + windows[:5], key=window_key)
    produce(kafka_settings, t.alerts, alerts + alerts[:1], key=alert_key)
    produce(kafka_settings, t.dead_letter,
            [make_dead_letter("unknown_status")] * 3 + [make_dead_letter("late")])
    for topic in (t.window_counts, t.alerts, t.dead_letter):
        produce(kafka_settings, topic, [b"\xff\xfenot json", b'{"id": 1}'],
                key=lambda r: r[:4].hex())  # compacted topics need keys

    # The processor group has read part of the transactions topic.
    producer = Producer(kafka_settings.confluent())
    for i in range(90):
        producer.produce(t.transactions, value=b"{}", partition=i % 3)
    producer.flush(10)
    group = f"proc-{uuid.uuid4().hex[:6]}"
    commit_processor_offsets(kafka_settings, t.transactions, group, {0: 10, 1: 30})

    exporter = ExporterProcess(txmon_env, None, "--processor-group", group,
                               "--lag-interval", "0.5", log=tmp_path / "exporter.log")
    try:
        s = wait_for(lambda: (lambda s: s if value(s, m.WINDOWS_TOTAL) == 30
                              and value(s, m.EXPORTER_BAD_RECORDS_TOTAL, topic="dead-letter")
                              == 2 and value(s, m.CONSUMER_LAG, group=group,
                                             topic=t.transactions, partition="2") is not None
                              else None)(exporter.samples()), 60, what="exporter caught up")
        for status in STATUSES:
            expected = sum(w.counts[status] for w in windows)
            assert value(s, m.TRANSACTIONS_TOTAL, status=status) == expected, status
        assert value(s, m.WINDOW_TRANSACTIONS, status="approved") == windows[-1].counts[
            "approved"]
        assert value(s, m.WINDOW_NEWEST_END) == windows[-1].end.timestamp()
        assert value(s, m.LATE_EVENTS_TOTAL) == 1
        assert value(s, m.EXPORTER_DUPLICATE_RECORDS_TOTAL, topic="window-counts") == 5
        assert value(s, m.EXPORTER_DUPLICATE_RECORDS_TOTAL, topic="alerts") == 1
        for topic in ("window-counts", "alerts", "dead-letter"):
            assert value(s, m.EXPORTER_BAD_RECORDS_TOTAL, topic=topic) == 2
        assert value(s, m.INCIDENTS_OPEN, group="denied", severity="critical") == 1
        assert value(s, m.INCIDENTS_OPEN, group="failed", severity="warning") == 1
        assert value(s, m.ALERTS_TOTAL, event="open", group="denied", severity="critical") == 1
        assert value(s, m.DEAD_LETTERS_TOTAL, reason="unknown_status", source="processor") == 3
        assert value(s, m.DEAD_LETTERS_TOTAL, reason="late", source="processor") == 1
        # 30 messages per partition; partition 2 has no commit: all of it is lag.
        lag = {p: value(s, m.CONSUMER_LAG, group=group, topic=t.transactions, partition=p)
               for p in "012"}
        assert lag == {"0": 20, "1": 0, "2": 30}
        assert value(s, m.EXPORTER_KAFKA_UP) == 1
        emitted = value(s, m.WINDOW_LAST_EMITTED)

        # Live: a new minute and a resolution arrive while it runs.
        more = list(synthetic_windows(1, start_minute=30))
        produce(kafka_settings, t.window_counts, more, key=window_key)
        produce(kafka_settings, t.alerts,
                [make_alert("inc-1", "resolved", "denied", windows[20].start)], key=alert_key)
        commit_processor_offsets(kafka_settings, t.transactions, group, {0: 30, 1: 30, 2: 25})
        s = wait_for(lambda: (lambda s: s if value(s, m.WINDOWS_TOTAL) == 31 and value(
            s, m.INCIDENTS_OPEN, group="denied", severity="critical") == 0 and value(
            s, m.CONSUMER_LAG, group=group, topic=t.transactions, partition="2") == 5
            else None)(exporter.samples()), 30, what="live updates")
        assert value(s, m.WINDOW_LAST_EMITTED) >= emitted
        assert value(s, m.WINDOW_TRANSACTIONS, status="approved") == more[0].counts["approved"]
        assert exporter.proc.poll() is None
    finally:
        exporter.stop()

    # A restarted exporter rebuilds the same totals from the topics: no reset, no double.
    # Before it is ready it serves none of them (a half-read alerts topic would show the
    # open incident as gone); once /ready says so, everything is whole at once.
    again = ExporterProcess(txmon_env, None, "--processor-group", group)
    try:
        early = again.samples()
        assert value(early, m.EXPORTER_READY) == 1 or value(early, m.INCIDENTS_OPEN,
                                                            group="failed",
                                                            severity="warning") is None
        s2 = again.wait_ready(60)
        assert value(s2, m.EXPORTER_READY) == 1
        assert value(s2, m.WINDOWS_TOTAL) == 31
        for status in STATUSES:
            assert value(s2, m.TRANSACTIONS_TOTAL, status=status) == sum(
                w.counts[status] for w in windows + more)
        assert value(s2, m.INCIDENTS_OPEN, group="failed", severity="warning") == 1
        assert value(s2, m.INCIDENTS_OPEN, group="denied", severity="critical") == 0
    finally:
        again.stop()


def test_reference_windows_cover_the_day(shared_data):
    windows = reference_windows(shared_data / "transactions_1.csv", DAY)
    assert len(windows) == 1440
    assert sum(w.total for w in windows) == 254_670
