"""POST /transactions against the real broker: a mixed batch lands exactly once, good
records on the transactions topic and bad ones as dead letters with their reason; a
record of 750 KB is dead-lettered cut, its batch answered 200; the batch limits answer
413; `txmon api --workers 2` serves it with the flags it was given; with a token,
/healthz still answers without one."""

from __future__ import annotations

import json
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support.kafka import consume_all
from support.processor import TXMON

from devstack.processes import free_port
from txmon.contracts import DeadLetter, DeadLetterReason
from txmon.contracts.events import DEAD_LETTER_PAYLOAD_MAX, decoder

NDJSON = {"content-type": "application/x-ndjson"}
DAY = "2026-03-02"
MAX_BATCH_BYTES = 64 * 1024
MAX_RECORDS = 50


def start_api(env: dict[str, str], log: Path, *flags: str, workers: int = 1):
    """`txmon api` on a free port, returned once every worker process has started
    its app (readiness from the log and /healthz, never a fixed sleep)."""
    port = free_port()
    out = open(log, "wb")  # noqa: SIM115 - closed by stop_api
    proc = subprocess.Popen([TXMON, "api", "--port", str(port), *flags], env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    deadline = time.monotonic() + 90
    try:
        while True:
            started = log.read_text(errors="replace").count("Application startup complete.")
            try:
                client.get("/healthz")
                if started >= workers:
                    return proc, client, out
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    except BaseException:
        stop_api(proc, client, out)
        raise


def stop_api(proc, client, out) -> None:
    client.close()
    proc.terminate()
    proc.wait(30)
    out.close()


@pytest.fixture
def api(txmon_env, tmp_path):
    env = dict(txmon_env, TXMON_API_MAX_BATCH_BYTES=str(MAX_BATCH_BYTES),
               TXMON_API_MAX_BATCH_RECORDS=str(MAX_RECORDS))
    proc, client, out = start_api(env, tmp_path / "api.log")
    yield client
    stop_api(proc, client, out)


def tx(tx_id: str, **extra) -> bytes:
    return json.dumps({"id": tx_id, "status": "approved", "timestamp": f"{DAY}T16:00:00Z",
                       **extra}).encode()


def mixed(prefix: str, ndjson: bool) -> tuple[list[bytes], list[tuple[int, str]]]:
    """Good records and one of each kind of bad one, and the (index, reason) of the bad:
    a malformed record only exists in NDJSON (in an array it spoils the whole body)."""
    records = [
        tx(f"{prefix}-0", terminal_id="T-1", amount=10.5),
        b'{"status": "approved", "timestamp": "2026-03-02T16:00:01Z"}',
        tx(f"{prefix}-2", status="stolen"),
        tx(f"{prefix}-3", timestamp="not a time"),
        tx(f"{prefix}-4", timestamp="1900-01-01T00:00:00"),
        tx(f"{prefix}-5", terminal_id="x" * 5000),
        tx(f"{prefix}-6", amount="lots"),
        tx(f"{prefix}-7", timestamp=f"{DAY}T18:00:00+02:00"),
    ]
    bad = [(1, "missing_field"), (2, "unknown_status"), (3, "bad_timestamp"),
           (4, "bad_timestamp"), (5, "oversized"), (6, "invalid_field")]
    if ndjson:
        records.append(b'{"id": "' + prefix.encode() + b'-8", "status": ')
        bad.append((8, "malformed_json"))
    records.append(tx(f"{prefix}-last"))
    return records, bad


def check_topics(kafka_settings, topics, answers, sent) -> None:
    """Good records on the transactions topic exactly once, with their key, as sent;
    every bad one a dead letter keyed by its batch and index, with its reason."""
    good = sorted(((json.loads(r).get("terminal_id") or json.loads(r)["id"]).encode(), r)
                  for records, bad in sent for i, r in enumerate(records)
                  if i not in dict(bad))
    on_topic = consume_all(kafka_settings, topics.transactions, expected=len(good))
    assert sorted((r.key, r.value) for r in on_topic) == good
    expected = {f"api:{answer['batch_id']}:{i}".encode(): (reason, records[i])
                for answer, (records, bad) in zip(answers, sent, strict=True)
                for i, reason in bad}
    dead = consume_all(kafka_settings, topics.dead_letter, expected=len(expected))
    read = decoder(DeadLetter)
    got = {r.key: read.decode(r.value) for r in dead}
    assert got.keys() == expected.keys() and len(dead) == len(expected)
    for key, letter in got.items():
        assert letter.source == "api"
        assert (letter.reason, letter.payload) == expected[key]
        assert letter.detail


def test_a_mixed_batch_as_array_and_as_ndjson(api, kafka_settings, unique_topics):
    array, array_bad = mixed("arr", ndjson=False)
    r = api.post("/transactions", content=b"[" + b",\n ".join(array) + b"]",
                 headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    first = r.json()
    assert (first["accepted"], first["rejected"]) == (len(array) - len(array_bad),
                                                      len(array_bad))
    assert [(e["index"], e["reason"]) for e in first["errors"]] == array_bad
    assert all(e["detail"] for e in first["errors"])

    lines, lines_bad = mixed("nd", ndjson=True)
    body = b"\n\n" + b"\r\n".join(lines[:4]) + b"\n   \n" + b"\n".join(lines[4:]) + b"\n"
    r = api.post("/transactions", content=body, headers=NDJSON)
    assert r.status_code == 200, r.text
    second = r.json()
    assert [(e["index"], e["reason"]) for e in second["errors"]] == lines_bad
    assert second["accepted"] == len(lines) - len(lines_bad)
    assert first["batch_id"] != second["batch_id"]
    check_topics(kafka_settings, unique_topics, [first, second],
                 [(array, array_bad), (lines, lines_bad)])
    assert {d.value for d in DeadLetterReason} >= {reason for _, reason in lines_bad}


def test_limits_and_refusals(api, kafka_settings, unique_topics):
    # Its own limit: far above /check's 4 KiB, ...
    big = [tx(f"big-{i}", terminal_id=f"T-{i}" + "x" * 2000) for i in range(10)]
    r = api.post("/transactions", content=b"\n".join(big), headers=NDJSON)
    assert r.status_code == 200 and r.json()["accepted"] == 10, r.text
    assert api.post("/check", content=b"\n".join(big), headers={
        "content-type": "application/json"}).status_code == 413
    # ... and 413 over it, declared or streamed in chunks.
    huge = b"\n".join([tx(f"huge-{i}", terminal_id="x" * 3000) for i in range(25)])
    assert len(huge) > MAX_BATCH_BYTES
    r = api.post("/transactions", content=huge, headers=NDJSON)
    assert r.status_code == 413 and str(MAX_BATCH_BYTES) in r.text
    r = api.post("/transactions", content=iter([huge[:40_000], huge[40_000:]]), headers=NDJSON)
    assert r.status_code == 413
    r = api.post("/transactions", content=b"\n".join(tx(f"n-{i}") for i in range(MAX_RECORDS + 1)),
                 headers=NDJSON)
    assert r.status_code == 413 and "records" in r.text
    r = api.post("/transactions", json={"id": "a", "status": "approved",
                                        "timestamp": f"{DAY}T16:00:00Z"})
    assert r.status_code == 400
    r = api.post("/transactions", content=b'[{"id": "a"}, {oops', headers={
        "content-type": "application/json"})
    assert r.status_code == 400
    r = api.post("/transactions", content=tx("plain"), headers={"content-type": "text/plain"})
    assert r.status_code == 415
    # Nothing refused whole reached Kafka: only the ten accepted records.
    on_topic = consume_all(kafka_settings, unique_topics.transactions)
    assert sorted(r.value for r in on_topic) == sorted(big)
    assert consume_all(kafka_settings, unique_topics.dead_letter) == []


def test_the_token_guards_the_batch_route(txmon_env, tmp_path):
    proc, client, out = start_api(dict(txmon_env, TXMON_API_TOKEN="s3cret"),
                                  tmp_path / "api.log")
    try:
        assert client.get("/healthz").status_code == 200, "Compose's health check has no token"
        assert client.post("/transactions", content=tx("a"), headers=NDJSON).status_code == 401
        r = client.post("/transactions", content=tx("a"),
                        headers={**NDJSON, "Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["accepted"] == 1
    finally:
        stop_api(proc, client, out)


def test_a_huge_record_is_dead_lettered_cut_and_its_batch_lands(
        txmon_env, tmp_path, kafka_settings, unique_topics):
    """Copied whole, its dead letter (1 MB in base64) was more than the producer sends:
    the client refused it and the batch was answered with a 500."""
    proc, client, out = start_api(txmon_env, tmp_path / "api.log")  # 16 MiB batches
    try:
        huge = tx("huge", terminal_id="x" * 760_000)
        good = [tx(f"ok-{i}", terminal_id=f"T-{i % 3}") for i in range(20)]
        records = [*good[:10], huge, *good[10:]]
        r = client.post("/transactions", content=b"\n".join(records), headers=NDJSON)
    finally:
        stop_api(proc, client, out)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (20, 1)
    assert [(e["index"], e["reason"]) for e in answer["errors"]] == [(10, "oversized")]
    [dead] = consume_all(kafka_settings, unique_topics.dead_letter, expected=1)
    letter = decoder(DeadLetter).decode(dead.value)
    assert dead.key == f"api:{answer['batch_id']}:10".encode()
    assert (letter.reason, letter.payload_bytes, letter.truncated) == (
        "oversized", len(huge), True)
    assert letter.payload == huge[:DEAD_LETTER_PAYLOAD_MAX]
    on_topic = consume_all(kafka_settings, unique_topics.transactions, expected=len(good))
    assert sorted(m.value for m in on_topic) == sorted(good), "each once"


def worker_pids(log: Path) -> set[int]:
    return {int(p) for p in re.findall(r"Started server process \[(\d+)\]", log.read_text())}


def test_two_worker_processes_serve_batches_with_the_flags_given(
        txmon_env, tmp_path, kafka_settings, unique_topics):
    # The variable says 16 MiB; the flag, which the workers must see, says 20 KB.
    env = dict(txmon_env, TXMON_API_MAX_BATCH_BYTES=str(16 * 1024 * 1024))
    proc, client, out = start_api(env, tmp_path / "api.log", "--workers", "2",
                                  "--max-batch-bytes", "20000", workers=2)
    try:
        workers = worker_pids(tmp_path / "api.log")
        assert len(workers) == 2 and proc.pid not in workers, workers
        batches = [[tx(f"w-{b}-{i}") for i in range(100)] for b in range(20)]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda recs: client.post("/transactions", content=b"\n".join(recs),
                                         headers=NDJSON), batches))
        assert all(r.status_code == 200 and r.json()["accepted"] == 100 for r in answers), \
            [r.text for r in answers if r.status_code != 200]
        too_big = b"\n".join(tx(f"tb-{i}", terminal_id="x" * 1000) for i in range(25))
        assert all(client.post("/transactions", content=too_big, headers=NDJSON).status_code
                   == 413 for _ in range(6))
        assert all(Path(f"/proc/{pid}").exists() for pid in workers)  # none died
    finally:
        stop_api(proc, client, out)
    sent = sorted(r for recs in batches for r in recs)
    on_topic = consume_all(kafka_settings, unique_topics.transactions, expected=len(sent))
    assert sorted(r.value for r in on_topic) == sent
