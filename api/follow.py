"""`txmon alerts`: the alerts topic, readable, as it happens."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator

import msgspec
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, Message

from txmon.contracts import Alert, topics
from txmon.errors import UserError
from txmon.kafka.admin import require_kafka
from txmon.kafka.read import follow, read_to_end
from txmon.settings import KafkaSettings

log = logging.getLogger(__name__)

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


def alert_records(settings: KafkaSettings, topic: str, args: argparse.Namespace,
                  ) -> Iterator[Message]:
    """The alerts there are now (oldest first), or with --follow the new ones as they
    come (--from-start: the old ones first)."""
    if not args.follow:
        return read_to_end(settings, topic, "txmon-alerts", on_error=log.debug)
    start = OFFSET_BEGINNING if args.from_start else OFFSET_END
    return (msg for batch in follow(settings, [topic], "txmon-alerts", start=start)
            for msg in batch)


def follow_alerts(args: argparse.Namespace) -> int:
    settings = KafkaSettings.from_env()
    require_kafka(settings)
    topic, seen = topics().alerts, set()
    try:
        for msg in alert_records(settings, topic, args):
            try:
                alert = _decoder.decode(msg.value())
            except msgspec.MsgspecError as exc:
                print(f"(undecodable record at offset {msg.offset()}: {exc})", flush=True)
                continue
            if alert.id in seen:  # a re-emission after a restart: same alert
                continue
            seen.add(alert.id)
            print(msg.value().decode() if args.json else render(alert), flush=True)
    except KeyboardInterrupt:
        pass
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:  # none yet: no alerts
            raise UserError(f"cannot read {topic} from {settings.bootstrap}: {exc}") from None
    return 0
