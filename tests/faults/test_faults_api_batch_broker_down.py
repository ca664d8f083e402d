"""POST /transactions with the broker gone: the API answers 503 once the delivery timeout
passes, reports nothing accepted, and none of that batch is on the topic once the broker
is back; the API then serves batches again without a restart."""

from __future__ import annotations

import json
import time

import pytest
from support.faults import pipeline_env, run_topics
from support.kafka import consume_all
from support.live import ApiProcess

from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.settings import KafkaSettings

pytestmark = [pytest.mark.timeout(300)]

NDJSON = {"content-type": "application/x-ndjson"}
TIMEOUT_MS = 4000


def batch(tag: str, n: int = 50) -> bytes:
    return b"\n".join(json.dumps({"id": f"{tag}-{i}", "status": "approved",
                                  "timestamp": "2026-03-02T16:00:00Z"}).encode()
                      for i in range(n))


def test_a_batch_the_broker_never_acknowledged_is_a_503(local_kafka_factory, tmp_path):
    kafka = local_kafka_factory()
    settings = KafkaSettings(bootstrap=kafka.bootstrap)
    names = run_topics("t-api-down")
    ensure_topics(settings, pipeline_topics(names))
    env = pipeline_env(settings, names, TXMON_API_DELIVERY_TIMEOUT_MS=str(TIMEOUT_MS),
                       TXMON_STATE_DIR=str(tmp_path / "state"))
    api = ApiProcess(env, tmp_path / "api.log", timeout=120)
    client = api.client
    try:
        before = client.post("/transactions", content=batch("before"), headers=NDJSON)
        assert before.status_code == 200 and before.json()["accepted"] == 50

        kafka.kill()
        t = time.monotonic()
        lost = client.post("/transactions", content=batch("lost"), headers=NDJSON)
        waited = time.monotonic() - t
        assert lost.status_code == 503, lost.text
        assert "accepted" not in lost.json() and "did not acknowledge" in lost.json()["detail"]
        assert TIMEOUT_MS / 1000 * 0.9 <= waited < TIMEOUT_MS / 1000 + 30, waited

        kafka.up(timeout=120)
        deadline = time.monotonic() + 60
        while (after := client.post("/transactions", content=batch("after"),
                                    headers=NDJSON)).status_code != 200:
            assert after.status_code == 503 and time.monotonic() < deadline, after.text
        assert after.json()["accepted"] == 50
    finally:
        api.stop()
    ids = [json.loads(r.value)["id"] for r in consume_all(settings, names.transactions)]
    assert not [i for i in ids if i.startswith("lost-")]
    assert sorted(i for i in ids if i.startswith("before-")) == sorted(
        f"before-{i}" for i in range(50))
    assert {i for i in ids if i.startswith("after-")} >= {f"after-{i}" for i in range(50)}
