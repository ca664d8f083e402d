from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from producer.encode import IdFormat, digits, distinct, encode_batch, hexdigits, iso_seconds
from txmon.contracts import STATUSES, Transaction, message_key
from txmon.contracts.events import decode_transaction


def _rows(grid):
    return [bytes(r) for r in grid]


def test_digit_grids():
    assert _rows(digits(np.array([0, 7, 42, 12345678]), 8)) == [
        b"00000000", b"00000007", b"00000042", b"12345678"]
    assert _rows(digits(np.array([5, 123456789012]), 12)) == [b"000000000005", b"123456789012"]
    with pytest.raises(ValueError):
        digits(np.array([1]), 3)
    assert _rows(hexdigits(np.array([255, 0x69A5B64E]), 8)) == [b"000000ff", b"69a5b64e"]


def test_distinct_and_iso_seconds():
    secs = np.array([1772467199, 1772467200, 0, 4102444799])
    expected = [datetime.fromtimestamp(int(s), UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
                for s in secs]
    assert _rows(iso_seconds(secs)) == expected
    unique, index = distinct(np.array([5, 5, 7, 9, 9]))
    assert unique.tolist() == [5, 7, 9] and index.tolist() == [0, 0, 1, 2, 2]
    unique, index = distinct(np.array([9, 5, 9]))
    assert unique.tolist() == [5, 9] and index.tolist() == [1, 0, 1]


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize(
    "ids, spell",
    [
        (IdFormat(b"s7-", "hex"), lambda t, n, s: f"s7-{t // 1000:08x}-{n:08d}"),
        (IdFormat(b"day-", "minute", status_suffix=True),
         lambda t, n, s: datetime.fromtimestamp(t // 1000, UTC).strftime("day-%Y%m%d%H%M-")
         + f"{n:08d}-{s}"),
        (IdFormat(b"f-L", None, width=12), lambda t, n, s: f"f-L{n:012d}"),
    ],
)
def test_batch_bytes_decode_to_the_transactions_they_stand_for(ids, spell, ordered):
    rng = np.random.default_rng(0)
    n = 5000
    ts = rng.integers(0, 4102444799999, n)
    ts = np.sort(ts) if ordered else ts
    status = rng.integers(0, len(STATUSES), n)
    number = rng.integers(0, 10**8, n)
    keys, values = encode_batch(ts, status, number, ids)
    for i in range(0, n, 37):
        tx = decode_transaction(values[i])
        t = int(ts[i])
        assert tx == Transaction(
            id=spell(t, int(number[i]), STATUSES[status[i]]), status=STATUSES[status[i]],
            timestamp=datetime.fromtimestamp(t // 1000, UTC).replace(microsecond=t % 1000 * 1000))
        assert keys[i] == message_key(tx)
