"""The producer and replay against the real broker: what reached Kafka is what was said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pandas as pd
from support.kafka import consume_all, end_offsets

from producer.incidents import parse_incident
from producer.publish import Publisher
from producer.simulate import Scenario, generate
from txmon.contracts import STATUSES, DeadLetter, IncidentLabel
from txmon.contracts.events import decode_transaction

TXMON = [sys.executable, "-m", "txmon.cli"]


def _run(args, env, timeout=600):
    return subprocess.run(TXMON + args, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _statuses(records):
    return Counter(decode_transaction(r.value).status for r in records)


def test_simulated_events_arrive_exactly_and_repeat_with_the_seed(
    txmon_env, kafka_settings, unique_topics, tmp_path
):
    n, seed, start = 100_000, 7, "2026-03-02T08:00"
    labels = tmp_path / "labels.jsonl"
    args = ["produce", "--count", str(n), "--seed", str(seed), "--start", start, "--speed",
            "max", "--rate", "2000", "--incident", "failed:x20:5m@1m", "--labels", str(labels),
            "--no-progress"]
    first = _run(args + ["--report", str(tmp_path / "r1.json")], txmon_env)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "r1.json").read_text())
    assert report["total"] == n and report["failed"] == 0

    records = consume_all(kafka_settings, unique_topics.transactions, expected=n, timeout=300)
    assert len(records) == n
    assert dict(_statuses(records)) == {s: c for s, c in report["totals"].items() if c}
    assert len({r.key for r in records}) == n  # ids unique, each once

    other = unique_topics.transactions + "-again"
    second = _run(args + ["--topic", other, "--report", str(tmp_path / "r2.json")], txmon_env)
    assert second.returncode == 0, second.stderr
    again = consume_all(kafka_settings, other, expected=n, timeout=300)
    pairs = sorted((r.key, r.value) for r in records)
    assert sorted((r.key, r.value) for r in again) == pairs

    # ... and they are exactly what the pure generator makes for that scenario
    scenario = Scenario(datetime(2026, 3, 2, 8, tzinfo=UTC), rate=2000, seed=seed,
                        incidents=(parse_incident("failed:x20:5m@1m"),))
    expected = [kv for b in generate(scenario, n) for kv in zip(*b.encode(), strict=True)]
    assert sorted(expected) == pairs

    written = [msgspec.json.decode(line, type=IncidentLabel)
               for line in labels.read_bytes().splitlines()]
    assert len(written) == 2  # one per run, appended
    assert written[0].statuses == ["failed"] and written[0].kind == "spike"
    assert written[0].start == datetime(2026, 3, 2, 8, 1, tzinfo=UTC)
    assert written[0].end == written[0].start + timedelta(minutes=5)


def _pivot_of_csv(path: Path, day: date) -> pd.DataFrame:
    raw = pd.read_csv(path)
    raw["minute"] = pd.to_datetime(
        day.isoformat() + " " + raw["time"].str.replace("h ", ":"), utc=True)
    return raw.pivot_table(index="minute", columns="status", values="F1", aggfunc="sum",
                           fill_value=0).reindex(columns=list(STATUSES), fill_value=0)


def test_reference_days_replayed_equal_their_pivot(
    txmon_env, kafka_settings, unique_topics, shared_data, tmp_path
):
    files = [shared_data / "transactions_1.csv", shared_data / "transactions_2.csv"]
    result = _run(["replay", *map(str, files), "--speed", "max", "--no-progress",
                   "--report", str(tmp_path / "r.json")], txmon_env)
    assert result.returncode == 0, result.stderr
    expected = pd.concat([_pivot_of_csv(files[0], date(2026, 3, 2)),
                          _pivot_of_csv(files[1], date(2026, 3, 3))])
    total = int(expected.to_numpy().sum())
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total"] == total
    assert report["totals"] == {s: int(expected[s].sum()) for s in STATUSES}

    records = consume_all(kafka_settings, unique_topics.transactions, expected=total,
                          timeout=300)
    assert len(records) == total
    txs = [decode_transaction(r.value) for r in records]
    assert len({tx.id for tx in txs}) == total
    got = pd.DataFrame({"minute": [tx.timestamp.replace(second=0, microsecond=0) for tx in txs],
                        "status": [tx.status for tx in txs]})
    pivot = pd.crosstab(got["minute"], got["status"]).reindex(
        index=expected.index, columns=list(STATUSES), fill_value=0)
    assert len(got["minute"].unique()) == len(expected.index)
    assert (pivot.to_numpy() == expected.to_numpy()).all()


BAD_FILE = (
    "time,status,F1\n"
    "10h 00,approved,5\n"
    "10h 00,denied,2\n"
    "10h 01,approved,seven\n"
    "10h 01,failed,1\n"
    "25h 00,approved,1\n"
    "10h 02,unknown,3\n"
    "10h 02,approved,4\n"
)
BAD_LINES = {4: "bad count 'seven'", 6: "bad time '25h 00'", 7: "unknown status 'unknown'"}


def test_bad_rows_stop_the_replay_with_their_lines(txmon_env, kafka_settings, unique_topics,
                                                   tmp_path):
    """Every bad row is reported (line and reason) in one run, and nothing is sent."""
    path = tmp_path / "bad.csv"
    path.write_text(BAD_FILE)
    result = _run(["replay", str(path), "--no-progress"], txmon_env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"txmon replay: error: {path}: 3 bad rows:"
    assert lines[1:4] == [f"  {path}:{n}: {reason}" + {4: ": expected an integer >= 0",
                                                        6: ": expected HHh MM", 7: ""}[n]
                          for n, reason in BAD_LINES.items()]
    assert "--skip-bad" in lines[4] and len(lines) == 5
    assert "Traceback" not in result.stderr
    assert sum(end_offsets(kafka_settings, unique_topics.transactions).values()) == 0


def test_skip_bad_dead_letters_each_bad_row_and_delivers_the_rest(
    txmon_env, kafka_settings, unique_topics, tmp_path
):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_FILE)
    result = _run(["replay", str(path), "--skip-bad", "--no-progress"], txmon_env)
    assert result.returncode == 0, result.stderr
    good = consume_all(kafka_settings, unique_topics.transactions, expected=12)
    assert dict(_statuses(good)) == {"approved": 9, "denied": 2, "failed": 1}
    letters = [msgspec.json.decode(r.value, type=DeadLetter)
               for r in consume_all(kafka_settings, unique_topics.dead_letter, expected=3)]
    assert len(letters) == 3
    raw = BAD_FILE.splitlines()
    for letter in letters:
        assert letter.reason == "bad_row" and letter.source == "replay"
        line = int(letter.detail.split(":")[1])
        assert letter.detail.startswith(f"{path}:{line}: {BAD_LINES[line]}")
        assert letter.payload == raw[line - 1].encode()
    assert sorted(int(x.detail.split(":")[1]) for x in letters) == sorted(BAD_LINES)


def test_failed_deliveries_are_counted(kafka_settings, unique_topics, monkeypatch):
    monkeypatch.setenv("TXMON_PRODUCER_TIMEOUT_MS", "10000")
    publisher = Publisher(kafka_settings, unique_topics.transactions)
    publisher.send([b"big"], [os.urandom(3_000_000)])  # above the broker's message limit
    assert publisher.close(30) == 1
    assert "too large" in publisher.first_error.lower()
