"""POST /transactions with the broker gone: the API answers 503 once the transaction
timeout passes and reports nothing accepted; the batch's retry with the same
Idempotency-Key, once the broker is back, is written exactly once, and nothing of the
first attempt is visible to a read_committed reader. The API serves batches again
without a restart."""

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
KEYED = {**NDJSON, "Idempotency-Key": "batch-lost-1"}
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
    env = pipeline_env(settings, names, TXMON_API_TRANSACTION_TIMEOUT_MS=str(TIMEOUT_MS),
                       TXMON_STATE_DIR=str(tmp_path / "state"))
    api = ApiProcess(env, tmp_path / "api.log", timeout=120)
    client = api.client
    try:
        before = client.post("/transactions", content=batch("before"), headers=NDJSON)
        assert before.status_code == 200 and before.json()["accepted"] == 50

        kafka.kill()
        t = time.monotonic()
        lost = client.post("/transactions", content=batch("lost"), headers=KEYED)
        waited = time.monotonic() - t
        assert lost.status_code == 503, lost.text
        assert "accepted" not in lost.json() and "written" in lost.json()["detail"]
        assert TIMEOUT_MS / 1000 * 0.9 <= waited < TIMEOUT_MS / 1000 + 30, waited

        kafka.up(timeout=120)
        retried = until_200(client, batch("lost"), KEYED)
        assert retried.json()["accepted"] == 50
        again = client.post("/transactions", content=batch("lost"), headers=KEYED)
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == retried.json()
        after = until_200(client, batch("after"), NDJSON)
        assert after.json()["accepted"] == 50
    finally:
        api.stop()
    ids = [json.loads(r.value)["id"] for r in consume_all(settings, names.transactions)]
    for tag in ("before", "lost", "after"):
        assert sorted(i for i in ids if i.startswith(f"{tag}-")) == sorted(
            f"{tag}-{i}" for i in range(50)), f"{tag}: each record once"


def until_200(client, body: bytes, headers: dict, within_s: float = 90):
    """The answer once the API writes again: 503 while the broker is coming back, 409
    while the first attempt's outcome is still held."""
    deadline = time.monotonic() + within_s
    while (r := client.post("/transactions", content=body, headers=headers)).status_code != 200:
        assert r.status_code in (409, 503) and time.monotonic() < deadline, r.text
        time.sleep(0.5)
    return r
