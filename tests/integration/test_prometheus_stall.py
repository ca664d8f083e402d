"""The acceptance test of the stall alert: the real processor is killed mid-stream, and the
real Prometheus fires PipelineStalled within the rule's threshold plus its `for:`, while
Alertmanager inhibits the anomaly alert it makes meaningless."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer
from support.obs import (
    TXMON,
    ExporterProcess,
    NotifyProcess,
    PromStack,
    alert_key,
    free_port,
    http_get,
    make_alert,
    produce,
    short_rules,
    value,
    wait_for,
)

from devstack import monitoring
from txmon.contracts import Transaction, encode
from txmon.contracts import metrics as m

STALL_AFTER_S = 8  # the rule's "> 120" scaled down
FOR_S = 5  # the rule's "for: 1m" scaled down
SPEED = 60  # event-time seconds per wall second: a window closes about every second
STATUS_MIX = (["approved"] * 85 + ["denied"] * 9 + ["reversed"] * 4 + ["failed"]
              + ["refunded"])


class Feeder(threading.Thread):
    """A stream of transactions whose event time runs SPEED times faster than the wall."""

    def __init__(self, settings, topic: str, per_second: int = 150):
        super().__init__(daemon=True)
        self.producer = Producer(settings.confluent(**{"linger.ms": 20}))
        self.topic, self.per_second = topic, per_second
        self.stop_event = threading.Event()
        self.sent = 0
        self.base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)

    def run(self):
        rnd = random.Random(7)
        wall0 = time.monotonic()
        while not self.stop_event.is_set():
            tick = time.monotonic()
            for _ in range(self.per_second // 10):
                event = self.base + timedelta(seconds=(time.monotonic() - wall0) * SPEED)
                tx = Transaction(id=uuid.uuid4().hex, status=rnd.choice(STATUS_MIX),
                                 timestamp=event)
                self.producer.produce(self.topic, key=tx.id.encode(), value=encode(tx))
                self.sent += 1
            self.producer.poll(0)
            self.stop_event.wait(max(0.0, 0.1 - (time.monotonic() - tick)))
        self.producer.flush(10)


def firing(stack: PromStack, name: str) -> list[dict]:
    return [a for a in stack.alerts()
            if a["labels"]["alertname"] == name and a["state"] == "firing"]


def am_alerts(port: int) -> list[dict]:
    return json.loads(http_get(f"http://127.0.0.1:{port}/api/v2/alerts"))


@pytest.mark.timeout(420)
def test_killing_the_processor_fires_pipeline_stalled(kafka_settings, unique_topics,
                                                      txmon_env, tmp_path):
    ports = monitoring.Ports(prometheus=free_port(), alertmanager=free_port(),
                             exporter=free_port(), processor=free_port(), api=free_port(),
                             notify=free_port())
    app_id = f"txmon-processor-{uuid.uuid4().hex[:8]}"
    env = dict(txmon_env, TXMON_APP_ID=app_id, TXMON_STATE_DIR=str(tmp_path / "state"),
               TXMON_PROCESSOR_DATA_DIR=str(tmp_path / "faust"),
               TXMON_MODEL_PATH=str(tmp_path / "no-model.joblib"))
    rules = short_rules(tmp_path / "rules.yml", {
        "PipelineStalled": {"for": f"{FOR_S}s", "replace": [("> 120", f"> {STALL_AFTER_S}")]},
        "TransactionAnomaly": {"for": "1s"},
    })
    log = open(tmp_path / "processor.log", "wb")  # noqa: SIM115
    processor = subprocess.Popen(
        [TXMON, "process", "--metrics-port", str(ports.processor), "--idle-timeout", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    feeder = Feeder(kafka_settings, unique_topics.transactions)
    exporter = ExporterProcess(txmon_env, ports.exporter, "--processor-group", app_id,
                               "--lag-interval", "1", log=tmp_path / "exporter.log")
    notify = NotifyProcess(ports.notify)
    stack = None
    try:
        stack = PromStack(tmp_path, ports, rule_files=[rules], with_alertmanager=True,
                          alertmanager_timings={"group_wait": "1s", "group_interval": "2s",
                                                "repeat_interval": "1h"})
        feeder.start()
        # An incident is open: its anomaly alert fires while the pipeline is healthy.
        produce(kafka_settings, unique_topics.alerts,
                [make_alert("inc-stall", "open", "denied", feeder.base)], key=alert_key)

        def windows():
            return value(exporter.samples(), m.WINDOWS_TOTAL) or 0

        wait_for(lambda: windows() >= 5, 180, interval=1, what="the processor closing windows")
        first = windows()
        time.sleep(6)
        assert windows() >= first + 3, "windows must keep closing while the processor runs"
        assert not firing(stack, "PipelineStalled")
        wait_for(lambda: firing(stack, "TransactionAnomaly"), 30, what="anomaly firing")
        assert processor.poll() is None

        # Mid-stream: the processor dies; transactions keep arriving.
        processor.send_signal(signal.SIGKILL)
        processor.wait(10)
        killed = time.time()
        last_window = killed
        seen = windows()
        while time.time() - killed < STALL_AFTER_S:
            if windows() != seen:
                seen, last_window = windows(), time.time()
            time.sleep(0.5)
        stalled = wait_for(lambda: firing(stack, "PipelineStalled"),
                           STALL_AFTER_S + FOR_S + 20, interval=0.5, what="PipelineStalled")
        fired = time.time()
        elapsed = fired - last_window
        print(f"PipelineStalled fired {elapsed:.1f}s after the last window "
              f"(threshold {STALL_AFTER_S}s + for {FOR_S}s)")
        assert STALL_AFTER_S + FOR_S - 1 <= elapsed <= STALL_AFTER_S + FOR_S + 10
        assert stalled[0]["labels"]["severity"] == "critical"
        assert feeder.is_alive() and feeder.sent > 0

        # Alertmanager: the stall is notified; the anomaly is inhibited by it.
        wait_for(lambda: notify.headers("[FIRING] PipelineStalled"), 30,
                 what="stall notification")

        def anomaly_inhibited():
            for alert in am_alerts(ports.alertmanager):
                if alert["labels"]["alertname"] == "TransactionAnomaly":
                    return alert["status"]["state"] == "suppressed" and alert["status"][
                        "inhibitedBy"]
            return False

        wait_for(anomaly_inhibited, 30, what="anomaly inhibited by the stall")

        # The lag of the dead processor's group grows: the exporter still tells the truth.
        def lag():
            s = exporter.samples()
            return sum(v for (name, labels), v in s.items()
                       if name == m.CONSUMER_LAG and dict(labels).get("group") == app_id)

        before = lag()
        wait_for(lambda: lag() > before + 100, 30, what="growing consumer lag")
    finally:
        feeder.stop_event.set()
        if processor.poll() is None:
            processor.kill()
            processor.wait(10)
        log.close()
        if stack:
            stack.stop()
        exporter.stop()
        notify.stop()
