"""`txmon alerts`: the alerts topic, readable, as it happens."""

from __future__ import annotations

import argparse
import uuid

import msgspec
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from txmon.config import KafkaSettings
from txmon.contracts import Alert, topics
from txmon.kafka.admin import require_kafka

_decoder = msgspec.json.Decoder(Alert)
MARKS = {"open": "OPEN    ", "update": "ONGOING ", "resolved": "RESOLVED"}


def render(alert: Alert) -> str:
    """One line per step: the processor's summary (the words Alertmanager and `txmon
    notify` show), how long so far and the runbook; records written before the summary
    existed show observed against usual per status instead."""
    words = alert.summary or ", ".join(
        f"{s} {alert.observed.get(s, 0)} (usual {alert.expected.get(s, 0):.0f})"
        for s in alert.statuses
    )
    minutes, seconds = divmod(alert.duration_s, 60)
    lasted = f"  for {minutes}m{seconds:02d}s" if alert.duration_s else ""
    runbook = f"  {alert.runbook_url}" if alert.runbook_url else ""
    return (f"{alert.window_start:%Y-%m-%d %H:%M}Z {MARKS[alert.event]} {alert.severity:<8} "
            f"{alert.group:<9} {words}{lasted}  score {alert.score:.3f} > "
            f"{alert.threshold:.3f}  [{alert.incident_id}]{runbook}")


def follow_alerts(args: argparse.Namespace) -> int:
    settings = KafkaSettings.from_env()
    require_kafka(settings)
    topic = topics().alerts
    consumer = Consumer(settings.confluent(**{
        "group.id": f"txmon-alerts-{uuid.uuid4()}", "enable.auto.commit": False}))
    start = OFFSET_END if args.follow and not args.from_start else OFFSET_BEGINNING
    seen: set[str] = set()
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in meta.partitions}
        consumer.assign([TopicPartition(topic, p, start) for p in meta.partitions])
        while True:
            msgs = consumer.consume(100, timeout=0.5)
            for msg in msgs:
                if msg.error():
                    continue
                try:
                    alert = _decoder.decode(msg.value())
                except msgspec.MsgspecError as exc:
                    print(f"(undecodable record at offset {msg.offset()}: {exc})", flush=True)
                    continue
                if alert.id in seen:  # a re-emission after a restart: same alert
                    continue
                seen.add(alert.id)
                print(msg.value().decode() if args.json else render(alert), flush=True)
            if not args.follow and not msgs and all(
                consumer.position([TopicPartition(topic, p)])[0].offset >= end
                or end == 0 for p, end in ends.items()
            ):
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()
