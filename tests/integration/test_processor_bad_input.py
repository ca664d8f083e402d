"""10,000 bad records among good ones: every good one counted, every bad one in the dead
letters with its reason and origin, the worker alive throughout."""

from __future__ import annotations

import json
import random
from collections import Counter

from confluent_kafka import Producer
from support.processor import Worker, processor_env, read_dead, unique_by_id, wait_for_windows

from txmon.contracts import STATUSES

DAY = "2026-03-02"
GOOD = 20_000
BAD = 10_000


def good(i: int) -> bytes:
    second = i * 600 // GOOD  # ten minutes, in order
    ts = f"{DAY}T10:{second // 60:02d}:{second % 60:02d}Z"
    return json.dumps({"id": f"g{i}", "status": STATUSES[i % 7], "timestamp": ts}).encode()


def bad(i: int, rng: random.Random) -> tuple[bytes, str]:
    """A bad record of kind i % 9, unique by its index, and the reason it must get."""
    ts = f"{DAY}T10:05:00Z"
    kind = i % 9
    if kind == 0:
        return b'{"id": "b%d", "status": "approved", "timestamp": ' % i, "malformed_json"
    if kind == 1:
        return json.dumps({"id": i, "status": "approved", "timestamp": ts}).encode(), \
            "invalid_field"
    if kind == 2:
        return json.dumps({"id": f"b{i}", "status": "stolen", "timestamp": ts}).encode(), \
            "unknown_status"
    if kind == 3:
        return json.dumps({"id": f"b{i}", "status": "approved"}).encode(), "missing_field"
    if kind == 4:
        return json.dumps({"id": f"b{i}", "status": "failed",
                           "timestamp": f"{DAY}T25:61:00Z"}).encode(), "bad_timestamp"
    if kind == 5:
        return json.dumps({"id": f"b{i}", "status": "failed",
                           "timestamp": "2091-01-01T00:00:00Z"}).encode(), "future"
    if kind == 6:
        return json.dumps({"id": f"b{i}", "status": "denied", "timestamp": ts,
                           "terminal_id": "x" * 8000}).encode(), "oversized"
    if kind == 7:
        return b"\xff\xfe" + i.to_bytes(4, "big") + rng.randbytes(40), "malformed_json"
    return json.dumps({"id": f"b{i}", "status": "reversed",
                       "timestamp": "1999-12-31T23:59:00Z"}).encode(), "late"


def test_bad_records_are_dead_lettered_and_good_ones_all_counted(
        kafka_settings, txmon_env, unique_topics, tmp_path):
    rng = random.Random(7)
    records: list[tuple[bytes, str | None]] = [(good(i), None) for i in range(GOOD)]
    bads = [bad(i, rng) for i in range(BAD)]
    # Good ones in time order, bad ones at random among them; every partition sees good
    # events first (a far-past record is late once its partition has a watermark).
    rng.shuffle(bads)
    sequence = records[:300] + _interleave(records[300:], bads, rng)

    producer = Producer(kafka_settings.confluent(**{"enable.idempotence": True,
                                                    "linger.ms": 20}))
    for i, (value, _) in enumerate(sequence):
        producer.produce(unique_topics.transactions, value, f"k{i % 97}".encode())
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0

    worker = Worker(processor_env(txmon_env), tmp_path).start()
    try:
        windows = wait_for_windows(kafka_settings, unique_topics.window_counts,
                                   f"{DAY}T10:09Z", [worker])
        dead = read_dead(kafka_settings, unique_topics.dead_letter)
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()

    expected = Counter(STATUSES[i % 7] for i in range(GOOD))
    by_id = unique_by_id(windows, "window")
    counted = Counter()
    for w in by_id.values():
        counted.update({s: n for s, n in w.counts.items() if n})
    assert counted == expected
    assert sum(w.late for w in by_id.values()) == sum(1 for _, r in bads if r == "late")

    by_payload = {d.payload: d for d in dead}
    assert len(dead) == len(by_payload) == BAD, "one dead letter per bad record, no twin"
    want = dict(bads)
    wrong = {p[:40]: (d.reason, want.get(p)) for p, d in by_payload.items()
             if want.get(p) != d.reason}
    assert not wrong
    assert {d.topic for d in dead} == {unique_topics.transactions}
    assert all(d.partition is not None and d.offset is not None and d.detail for d in dead)
    origins = {(d.partition, d.offset) for d in dead}
    assert len(origins) == BAD


def _interleave(goods, bads, rng):
    out, gi, bi = [], 0, 0
    while gi < len(goods) or bi < len(bads):
        if bi < len(bads) and (gi >= len(goods) or rng.random() < 1 / 3):
            out.append(bads[bi])
            bi += 1
        else:
            out.append(goods[gi])
            gi += 1
    return out
