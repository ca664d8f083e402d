"""The HTTP API with the prototype's contract, against the real broker and worker."""

from __future__ import annotations

import time

import httpx
import pytest
from support.live import ApiProcess
from support.processor import Worker, processor_env, read_windows, unique_by_id

DAY = "2026-03-02"


@pytest.fixture
def api(txmon_env, tmp_path):
    """A running `txmon api` (and a worker behind it), yielding (client, env)."""
    env = processor_env(txmon_env, TXMON_IDLE_TIMEOUT_SECONDS="120",
                        TXMON_API_MAX_BODY_BYTES="2048")
    worker = Worker(env, tmp_path).start()
    server = ApiProcess(env, tmp_path / "api.log")
    yield server.client, env
    server.stop()
    worker.stop()


def check(client, status: str, ts: str, **extra):
    return client.post("/check", json={"status": status, "timestamp": ts, **extra})


def test_check_and_history_counts_follow_the_prototype(api, kafka_settings, unique_topics):
    client, _ = api
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/check", "/history_counts", "/alerts"}
    first = check(client, "approved", f"{DAY}T11:00:05")
    assert first.status_code == 200 and first.json() == {"message": "Transaction registered"}
    sent = {"approved": 1}
    for i in range(12):
        status = ("approved", "failed", "denied")[i % 3]
        minute = "00" if i < 6 else "01"
        assert check(client, status, f"{DAY}T11:{minute}:{10 + i:02d}").status_code == 200
        sent[status] = sent.get(status, 0) + 1
    # Closes 11:00 and 11:01 (watermark 11:02:10) in every partition: thirty keys
    # cover the three partitions (the partitioner is deterministic).
    for i in range(30):
        assert check(client, "approved", f"{DAY}T11:02:20Z", id=f"closer-{i}").status_code == 200

    deadline = time.monotonic() + 90
    while len(rows := client.get("/history_counts").json()) < 2:
        assert time.monotonic() < deadline, rows
        time.sleep(0.5)
    assert [r["minute"] for r in rows] == [f"{DAY}T11:00", f"{DAY}T11:01"]
    assert all(set(r) == {"minute", "summary", "alert"} for r in rows)
    assert len(rows[0]["summary"]) == 7 and rows[0]["alert"] is False
    total = {s: rows[0]["summary"][s] + rows[1]["summary"][s] for s in rows[0]["summary"]}
    assert {s: n for s, n in total.items() if n} == sent

    newest = check(client, "refunded", f"{DAY}T11:02:30").json()
    assert newest == {"minute": f"{DAY}T11:01", "summary": rows[1]["summary"], "alert": False}
    assert check(client, "refunded", f"{DAY}T11:02:31").json() == {
        "message": "Transaction registered"}

    topic = unique_by_id(read_windows(kafka_settings, unique_topics.window_counts), "window")
    assert {w.id[:16]: w.counts for w in topic.values()} == {
        r["minute"]: r["summary"] for r in rows}
    assert client.get("/history_counts", params={"since": f"{DAY}T11:01"}).json() == rows[1:]
    assert client.get("/history_counts", params={"limit": 1}).json() == rows[1:]
    assert client.get("/alerts").status_code == 200


def test_bad_requests_get_422_naming_the_field_and_413_when_too_big(api):
    client, _ = api
    r = check(client, "stolen", f"{DAY}T11:00:05")
    assert r.status_code == 422 and "status" in r.text
    r = client.post("/check", json={"status": "approved"})
    assert r.status_code == 422 and "timestamp" in r.text
    r = check(client, "approved", "yesterday")
    assert r.status_code == 422 and "timestamp" in r.text
    r = client.post("/check", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = check(client, "approved", f"{DAY}T11:00:05", terminal_id="x" * 5000)
    assert r.status_code == 413
    r = client.get("/history_counts", params={"since": "not-a-minute"})
    assert r.status_code == 422 and "since" in r.text


def test_a_token_is_required_when_configured(txmon_env, tmp_path):
    env = processor_env(txmon_env, TXMON_API_TOKEN="s3cret")
    server = ApiProcess(env, tmp_path / "api.log", headers={"Authorization": "Bearer s3cret"})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            assert check(anonymous, "approved", f"{DAY}T11:00:05").status_code == 401
        assert check(server.client, "approved", f"{DAY}T11:00:05").status_code == 200
    finally:
        server.stop()
