from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from producer.encode import constant, digits, encode_batch, hexdigits, iso_seconds
from txmon.contracts import STATUSES, Transaction, message_key
from txmon.contracts.events import decode_transaction


def test_digit_grids():
    assert digits(np.array([0, 7, 42, 1234567]), 7).view("S7").ravel().tolist() == [
        b"0000000", b"0000007", b"0000042", b"1234567"]
    assert digits(np.array([5, 123]), 3).view("S3").ravel().tolist() == [b"005", b"123"]
    assert hexdigits(np.array([255, 0x69A5B64E]), 8).view("S8").ravel().tolist() == [
        b"000000ff", b"69a5b64e"]


def test_iso_seconds_sorted_or_not():
    secs = np.array([1772467199, 1772467200, 0, 4102444799])
    expected = [datetime.fromtimestamp(int(s), UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
                for s in secs]
    assert iso_seconds(secs).view("S19").ravel().tolist() == expected
    assert iso_seconds(np.sort(secs)).view("S19").ravel().tolist() == sorted(expected)


def test_batch_bytes_decode_to_the_transactions_they_stand_for():
    rng = np.random.default_rng(0)
    n = 5000
    ts = np.sort(rng.integers(0, 4102444799999, n))
    status = rng.integers(0, len(STATUSES), n)
    ids = [constant(n, b"t-"), digits(np.arange(n), 6)]
    for status_in_id in (False, True):
        keys, values = encode_batch(ts, status, ids, status_in_id=status_in_id)
        for i in range(0, n, 97):
            tx = decode_transaction(values[i])
            suffix = f"-{STATUSES[status[i]]}" if status_in_id else ""
            assert tx == Transaction(
                id=f"t-{i:06d}{suffix}", status=STATUSES[status[i]],
                timestamp=datetime.fromtimestamp(int(ts[i]) // 1000, UTC).replace(
                    microsecond=int(ts[i]) % 1000 * 1000))
            assert keys[i] == message_key(tx)
