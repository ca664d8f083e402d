"""The fast path decides exactly as the full validation does, for every form."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from processor.parse import EventParser
from txmon.contracts import STATUS_INDEX, STATUSES
from txmon.contracts.events import DeadLetterReason, InvalidTransaction, decode_transaction
from txmon.contracts.minutes import to_ms

NOW_MS = to_ms(datetime(2026, 3, 2, 17, 0, tzinfo=UTC))


def full(value: bytes) -> tuple[int, int]:
    tx = decode_transaction(value)
    return to_ms(tx.timestamp), STATUS_INDEX[tx.status]


def record(ts: str, status: str = "approved", extra: str = "") -> bytes:
    return f'{{"timestamp":"{ts}","id":"t1","status":"{status}"{extra}}}'.encode()


def test_canonical_records_match_the_full_decode():
    rng = random.Random(7)
    start = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    values = []
    for _ in range(5000):
        ts = start + timedelta(milliseconds=rng.randrange(3_600_000))
        text = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
        values.append(record(text, rng.choice(STATUSES)))
    parser = EventParser(max_future_ms=60_000)
    times, statuses, _, rejected = parser.parse_many(values, NOW_MS)
    assert rejected == []
    assert list(zip(times, statuses, strict=True)) == [full(v) for v in values]
    assert parser.seconds, "canonical records take the fast path"


@pytest.mark.parametrize("ts", [
    "2026-03-02T16:00:00Z", "2026-03-02T16:00:00.5Z", "2026-03-02T16:00:00.123456Z",
    "2026-03-02T18:00:00.123+02:00", "2026-03-02T16:00:00.123", "2026-03-02T16:00:59.999Z",
])
def test_other_forms_match_the_full_decode(ts):
    parser = EventParser(max_future_ms=60_000)
    for _ in range(2):  # the second time, whatever was learnt is used
        times, statuses, _, rejected = parser.parse_many([record(ts, "denied")], NOW_MS)
        assert rejected == [] and (times[0], statuses[0]) == full(record(ts, "denied"))


def reason_of(value: bytes) -> DeadLetterReason:
    with pytest.raises(InvalidTransaction) as info:
        decode_transaction(value)
    return info.value.reason


BAD = [
    b"not json", b"{}", b"[1,2]", record("2026-03-02T16:00:00.123Z", "lost"),
    record("2026-13-02T16:00:00.123Z"), record("2026-03-02T16:00:60.000Z"),
    record("1969-12-31T23:59:59.999Z"), record("2100-01-01T00:00:00.000Z"),
    record("2026-03-02T16:00:00.123Z", extra=',"amount":"x"'),
    record("2026-03-02T16:00:00.123Z", extra=',"pad":"' + "x" * 5000 + '"'),
    b'{"timestamp":"2026-03-02T16:00:00.123Z","status":"approved"}',
]


def test_bad_records_get_the_full_decodes_reason_and_their_position():
    good = record("2026-03-02T16:00:00.123Z")
    values = [good]
    for bad in BAD:
        values += [bad, good]
    parser = EventParser(max_future_ms=60_000)
    times, _, _, rejected = parser.parse_many(values, NOW_MS)
    assert len(times) == len(BAD) + 1
    assert [i for i, _ in rejected] == list(range(1, 2 * len(BAD), 2))
    assert [exc.reason for _, exc in rejected] == [reason_of(b) for b in BAD]


def test_an_empty_value_and_the_future_are_rejected():
    parser = EventParser(max_future_ms=60_000)
    soon = datetime(2026, 3, 2, 17, 0, 59, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    later = datetime(2026, 3, 2, 17, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    times, _, _, rejected = parser.parse_many([None, record(soon), record(later)], NOW_MS)
    assert len(times) == 1
    assert [(i, e.reason) for i, e in rejected] == [
        (0, DeadLetterReason.MALFORMED_JSON), (2, DeadLetterReason.FUTURE)]
    assert "ahead of the clock" in rejected[1][1].detail


def test_the_learnt_seconds_are_bounded(monkeypatch):
    import processor.parse as parse

    monkeypatch.setattr(parse, "_MAX_SECONDS", 10)
    parser = EventParser(max_future_ms=60_000)
    values = [record(f"2026-03-02T16:00:{s:02d}.000Z") for s in range(30)]
    times, _, _, _ = parser.parse_many(values, NOW_MS)
    assert times == [full(v)[0] for v in values]
    assert len(parser.seconds) <= 10
