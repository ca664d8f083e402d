from __future__ import annotations

import os
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from producer import replay
from txmon.contracts import STATUSES
from txmon.contracts.events import decode_transaction
from txmon.settings import shared_data_dir


def _write(tmp_path, name, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _events(parsed):
    out = []
    for b in replay.batches(parsed, size=7):
        out.extend(zip(b.keys, b.values, strict=True))
    return out


def test_formats_are_told_by_header():
    assert replay.detect_format(["time", "status", "F1"]) == replay.REFERENCE
    assert replay.detect_format(["timestamp", "status", "count"]) == replay.ISO_COUNTS
    assert replay.detect_format(["timestamp", "status"]) == replay.TRANSACTIONS
    assert replay.detect_format(["timestamp", "status", "terminal_id", "id"]) == replay.TRANSACTIONS
    assert replay.detect_format(["time", "status", "count"]) is None


def test_reference_format_counts_and_expansion(tmp_path):
    path = _write(tmp_path, "day.csv", "time,status,F1\n14h 35,approved,3\n14h 35,failed,2\n"
                  "14h 36,approved,1\n14h 35,approved,2\n\n")
    parsed = replay.parse(path, date(2026, 5, 1))
    assert parsed.format == replay.REFERENCE
    assert parsed.totals()["approved"] == 6 and parsed.events == 8
    rows = list(replay.read_counts(path, date(2026, 5, 1)))
    t = datetime(2026, 5, 1, 14, 35, tzinfo=UTC)
    assert rows[:2] == [(t, "approved", 5), (t, "failed", 2)]  # duplicates add up
    events = _events(parsed)
    assert events == _events(replay.parse(path, date(2026, 5, 1)))  # deterministic
    txs = [decode_transaction(v) for _, v in events]
    assert [k.decode() for k, _ in events] == [tx.id for tx in txs]
    assert len({tx.id for tx in txs}) == 8
    assert txs[0].id == "day-202605011435-00000000-approved"
    assert [tx.timestamp for tx in txs] == sorted(tx.timestamp for tx in txs)
    first_minute = [tx for tx in txs if tx.timestamp.minute == 35]
    assert sum(tx.status == "approved" for tx in first_minute) == 5
    # five approvals spread evenly: 6, 18, 30, 42, 54 s
    assert [tx.timestamp.second for tx in first_minute if tx.status == "approved"] == [
        6, 18, 30, 42, 54]


def test_default_date_is_fixed(tmp_path):
    path = _write(tmp_path, "d.csv", "time,status,F1\n00h 00,denied,1\n")
    ((minute, _, _),) = replay.read_counts(path)
    assert minute.date() == replay.DEFAULT_DATE


def test_iso_counts_and_transactions_formats(tmp_path):
    iso = _write(tmp_path, "iso.csv", "timestamp,status,count\n2026-03-02T10:00Z,denied,2\n"
                 "2026-03-02T10:01:00+00:00,approved,1\n2026-03-02T10:01,approved,0\n")
    assert list(replay.read_counts(iso)) == [
        (datetime(2026, 3, 2, 10, tzinfo=UTC), "denied", 2),
        (datetime(2026, 3, 2, 10, 1, tzinfo=UTC), "approved", 1),
    ]
    tx = _write(tmp_path, "tx.csv", "timestamp,status\n2026-03-02T10:00:30.250Z,failed\n"
                "2026-03-02T09:59:59,approved\n")
    parsed = replay.parse(tx)
    values = [decode_transaction(v) for _, v in _events(parsed)]
    assert [v.status for v in values] == ["failed", "approved"]  # file order kept
    assert values[0].timestamp == datetime(2026, 3, 2, 10, 0, 30, 250000, tzinfo=UTC)
    assert values[0].id == "tx-L000000000002"
    full = _write(tmp_path, "full.csv", "timestamp,status,id,amount,terminal_id\n"
                  "2026-03-02T10:00:00Z,approved,abc,12.5,T1\n2026-03-02T10:00:01Z,denied,d,,\n")
    events = _events(replay.parse(full))
    first, second = (decode_transaction(v) for _, v in events)
    assert (first.id, first.amount, first.terminal_id) == ("abc", 12.5, "T1")
    assert events[0][0] == b"T1" and events[1][0] == b"d"  # message_key: terminal, else id
    assert second.amount is None and second.terminal_id is None


@pytest.mark.parametrize(
    "row, reason",
    [
        ("14h 35,approved", "expected 3 fields, got 2"),
        ("14h 35,approvedd,3", "unknown status 'approvedd'"),
        ("24h 00,approved,3", "bad time '24h 00'"),
        ("14:35,approved,3", "bad time"),
        ("14h 35,approved,-1", "bad count '-1'"),
        ("14h 35,approved,x", "bad count"),
        ("14h 35,approved,99999999", "count 99999999 above"),
    ],
)
def test_bad_reference_rows_name_file_and_line(tmp_path, row, reason):
    path = _write(tmp_path, "bad.csv", f"time,status,F1\n00h 00,approved,1\n{row}\n")
    with pytest.raises(replay.MalformedFile) as err:
        replay.parse(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_rows_in_other_formats(tmp_path):
    iso = _write(tmp_path, "i.csv", "timestamp,status,count\n2026-03-02T10:00:30Z,denied,2\n")
    with pytest.raises(replay.MalformedFile, match=r"i.csv:2: timestamp .* not a minute start"):
        replay.parse(iso)
    tx = _write(tmp_path, "t.csv", b"timestamp,status\nyesterday,failed\n")
    with pytest.raises(replay.MalformedFile, match=r"t.csv:2: bad timestamp 'yesterday'"):
        replay.parse(tx)
    binary = _write(tmp_path, "b.csv", b"timestamp,status\n\xff\xfe,failed\n")
    with pytest.raises(replay.MalformedFile, match=r"b.csv:2: not UTF-8"):
        replay.parse(binary)
    far = _write(tmp_path, "f.csv", "timestamp,status\n2200-01-01T00:00:00Z,failed\n")
    with pytest.raises(replay.MalformedFile, match="out of range"):
        replay.parse(far)


def test_every_bad_row_is_reported_with_its_line_and_reason(tmp_path):
    path = _write(tmp_path, "three.csv", "time,status,F1\n00h 00,aproved,1\n00h 01,approved,1\n"
                  "00h 02,denied,x\n25h 00,failed,1\n")
    with pytest.raises(replay.MalformedFile) as err:
        replay.parse(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}: 3 bad rows:"
    assert [line.split(": ", 1)[0].strip() for line in lines[1:4]] == [
        f"{path}:2", f"{path}:4", f"{path}:5"]
    assert "unknown status 'aproved'" in lines[1] and "bad count 'x'" in lines[2]
    assert "--skip-bad" in lines[-1]
    many = _write(tmp_path, "many.csv", "time,status,F1\n" + "00h 00,nope,1\n" * 45)
    with pytest.raises(replay.MalformedFile) as err:
        replay.parse(many)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{many}: 45 bad rows, the first 20:" and len(lines) == 22


def test_skip_bad_keeps_every_good_row(tmp_path):
    path = _write(tmp_path, "mixed.csv", b"time,status,F1\n00h 00,approved,4\n00h 00,nope,1\n"
                  b"00h 01,denied,2\n\xff,x\n00h 02,failed,3\n")
    parsed = replay.parse(path, skip_bad=True)
    assert [(b.line, b.raw) for b in parsed.bad] == [(3, b"00h 00,nope,1"), (5, b"\xff,x")]
    assert parsed.totals() == {**dict.fromkeys(STATUSES, 0), "approved": 4, "denied": 2,
                               "failed": 3}


def test_unknown_header_is_a_clear_error(tmp_path):
    path = _write(tmp_path, "h.csv", "when,what\n")
    with pytest.raises(replay.UserError, match=r"h.csv:1: unrecognised header"):
        replay.parse(path)


def test_counts_frame_fills_the_day(tmp_path):
    path = _write(tmp_path, "d.csv", "time,status,F1\n00h 01,denied,2\n23h 59,approved,1\n")
    frame = replay.counts_frame(path, date(2026, 1, 1))
    assert frame.shape == (1440, 7) and list(frame.columns) == list(STATUSES)
    assert frame.index[0] == pd.Timestamp("2026-01-01T00:00", tz="UTC")
    assert frame.to_numpy().sum() == 3 and frame.iloc[1]["denied"] == 2


@pytest.fixture(scope="module")
def reference_files():
    files = [shared_data_dir() / f"transactions_{i}.csv" for i in (1, 2)]
    if not all(f.exists() for f in files):
        if os.environ.get("CI") == "true":
            pytest.fail(f"reference data missing under {shared_data_dir()}")
        pytest.skip("reference data not available")
    return files


def test_reference_files_expand_to_their_pivot(reference_files):
    for path in reference_files:
        raw = pd.read_csv(path)
        raw["minute"] = pd.to_datetime("2026-03-02 " + raw["time"].str.replace("h ", ":"),
                                       utc=True)
        pivot = raw.pivot_table(index="minute", columns="status", values="F1", aggfunc="sum",
                                fill_value=0).reindex(columns=list(STATUSES), fill_value=0)
        parsed = replay.parse(path)
        ts = np.concatenate([b.ts_ms for b in replay.batches(parsed)])
        st = np.concatenate([b.status for b in replay.batches(parsed)])
        minutes = pd.to_datetime(ts // 60000 * 60, unit="s", utc=True)
        got = pd.crosstab(minutes, pd.Categorical.from_codes(st, STATUSES)).reindex(
            index=pivot.index, columns=list(STATUSES), fill_value=0)
        assert (got.to_numpy() == pivot.to_numpy()).all()
        assert len(ts) == raw["F1"].sum()
        frame = replay.counts_frame(path)
        assert (frame.loc[pivot.index].to_numpy() == pivot.to_numpy()).all()
