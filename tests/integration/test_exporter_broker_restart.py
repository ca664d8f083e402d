"""The exporter outlives its broker: killed and restarted under it, it keeps serving,
says Kafka is down meanwhile, and resumes counting without loss or double counting."""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka import Producer
from support.obs import ExporterProcess, produce, value, wait_for, window_key
from test_exporter_kafka import commit_processor_offsets, synthetic_windows

from txmon.contracts import STATUSES, Topics
from txmon.contracts import metrics as m
from txmon.contracts.topics import ENV_PREFIX
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.settings import KafkaSettings


@pytest.mark.timeout(400)
def test_exporter_survives_broker_restart(local_kafka_factory, tmp_path):
    kafka = local_kafka_factory()
    settings = KafkaSettings(bootstrap=kafka.bootstrap)
    slug = uuid.uuid4().hex[:8]
    names = Topics(transactions=f"tx-{slug}", window_counts=f"wc-{slug}", alerts=f"al-{slug}",
                   dead_letter=f"dl-{slug}", window_partials=f"wp-{slug}")
    ensure_topics(settings, pipeline_topics(names))
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap)
    for field in Topics.model_fields:
        env[ENV_PREFIX + field.upper()] = getattr(names, field)

    windows = list(synthetic_windows(20))
    produce(settings, names.window_counts, windows[:10], key=window_key)
    producer = Producer(settings.confluent())
    for i in range(30):
        producer.produce(names.transactions, value=b"{}", partition=i % 3)
    producer.flush(10)
    group = f"proc-{slug}"
    commit_processor_offsets(settings, names.transactions, group, {0: 4, 1: 10, 2: 10})

    def lag(s):
        return value(s, m.CONSUMER_LAG, group=group, topic=names.transactions, partition="0")

    exporter = ExporterProcess(env, None, "--lag-interval", "0.5", "--processor-group", group,
                               log=tmp_path / "exporter.log")
    try:
        wait_for(lambda: value(exporter.samples(), m.WINDOWS_TOTAL) == 10
                 and lag(exporter.samples()) == 6, 60, what="first windows and lag")
        kafka.kill()
        # Still serving, still the same numbers, and saying Kafka is gone.
        s = wait_for(lambda: (lambda s: s if value(s, m.EXPORTER_KAFKA_UP) == 0 else None)(
            exporter.samples()), 60, what="kafka_up 0")
        assert value(s, m.WINDOWS_TOTAL) == 10
        errors = sum(v for (name, _), v in s.items() if name == m.EXPORTER_KAFKA_ERRORS_TOTAL)
        assert errors > 0
        assert exporter.proc.poll() is None

        kafka.up(timeout=120)
        # The last five windows again (a processor re-emitting after the outage), ten new
        # ones, and a bad record.
        produce(settings, names.window_counts, windows[5:], key=window_key)
        produce(settings, names.window_counts, [b"\x00garbage"], key=lambda r: "bad")
        commit_processor_offsets(settings, names.transactions, group, {0: 8})
        s = wait_for(lambda: (lambda s: s if value(s, m.WINDOWS_TOTAL) == 20 and value(
            s, m.EXPORTER_BAD_RECORDS_TOTAL, topic="window-counts") == 1 and value(
            s, m.EXPORTER_KAFKA_UP) == 1 and lag(s) == 2 else None)(exporter.samples()), 120,
            what="counting resumed after the restart")
        for status in STATUSES:
            assert value(s, m.TRANSACTIONS_TOTAL, status=status) == sum(
                w.counts[status] for w in windows)
        assert value(s, m.EXPORTER_DUPLICATE_RECORDS_TOTAL, topic="window-counts") == 5
        assert exporter.proc.poll() is None
    finally:
        exporter.stop()
