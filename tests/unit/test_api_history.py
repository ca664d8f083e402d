"""The API's in-memory views (api/history.py's History, api/live.py's LiveFeed) fed
records directly, as their reader thread feeds them from Kafka: what each record does
to the view, with no broker. Reading the topics: tests/integration/test_api_kafka.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.obs import make_alert, make_dead_letter

from api.history import History
from api.live import LiveFeed
from txmon.contracts import STATUSES, Topics, WindowCount, encode
from txmon.settings import KafkaSettings

NAMES = Topics()
SETTINGS = KafkaSettings(bootstrap="broker.invalid:9092")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Rec:
    """A record as the reader thread hands it to `feed`."""

    def __init__(self, topic: str, value: bytes | None, at_ms: int = 0):
        self._topic, self._value, self._at_ms = topic, value, at_ms

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (1, self._at_ms)  # TIMESTAMP_CREATE_TIME


def window(minute: int, approved: int = 100) -> WindowCount:
    start = T0 + timedelta(minutes=minute)
    counts = {s: 0 for s in STATUSES} | {"approved": approved}
    return WindowCount(id=start.isoformat(), start=start, end=start + timedelta(minutes=1),
                       counts=counts, total=approved)


def windows(*records: WindowCount) -> list[Rec]:
    return [Rec(NAMES.window_counts, encode(w)) for w in records]


def alerts(*records) -> list[Rec]:
    return [Rec(NAMES.alerts, encode(a)) for a in records]


@pytest.fixture
def history() -> History:
    return History(SETTINGS, NAMES, max_minutes=5, max_alerts=3)


def test_windows_are_kept_by_id_and_listed_by_time(history):
    history.feed(windows(window(2), window(0), window(1)))
    history.feed(windows(window(1, approved=100)))  # a re-emission after a restart
    assert [m["minute"] for m in history.minutes(None, 0)] == [
        "2026-03-02T09:00", "2026-03-02T09:01", "2026-03-02T09:02"]
    assert history.minutes(None, 0)[1]["summary"]["approved"] == 100
    assert history.newest().id == window(2).id
    assert history.bad_records == 0


def test_a_re_emitted_minute_replaces_its_twin(history):
    history.feed(windows(window(0, approved=5), window(0, approved=7)))
    [row] = history.minutes(None, 0)
    assert row["summary"]["approved"] == 7


def test_only_the_newest_minutes_are_kept(history):
    history.feed(windows(*(window(m) for m in (6, 0, 1, 2, 3, 4, 5))))
    assert [m["minute"][-2:] for m in history.minutes(None, 0)] == ["02", "03", "04", "05",
                                                                    "06"]


def test_since_and_limit(history):
    history.feed(windows(*(window(m) for m in range(5))))
    assert [m["minute"][-2:] for m in history.minutes("2026-03-02T09:02", 0)] == [
        "02", "03", "04"]
    assert [m["minute"][-2:] for m in history.minutes(None, 2)] == ["03", "04"]


def test_alerts_mark_their_minute_until_resolved(history):
    history.feed(windows(window(0), window(1), window(2)))
    history.feed(alerts(make_alert("inc-1", "open", "denied", window(0).start),
                        make_alert("inc-1", "update", "denied", window(1).start),
                        make_alert("inc-1", "resolved", "denied", window(2).start)))
    assert [m["alert"] for m in history.minutes(None, 0)] == [True, True, False]
    assert history.has_alert(window(1)) and not history.has_alert(window(2))


def test_an_alert_is_kept_once_and_the_last_ones_only(history):
    first = make_alert("inc-1", "open", "denied", T0)
    history.feed(alerts(first, first))
    assert [a.id for a in history.recent_alerts(10)] == [first.id]
    later = [make_alert(f"inc-{i}", "open", "failed", T0 + timedelta(minutes=i))
             for i in range(2, 6)]
    history.feed(alerts(*later))
    assert [a.incident_id for a in history.recent_alerts(10)] == ["inc-3", "inc-4", "inc-5"]
    assert [a.incident_id for a in history.recent_alerts(1)] == ["inc-5"]


@pytest.mark.parametrize("value", [b"not json", None, b'{"id": "x"}', b"[]"])
def test_an_undecodable_record_is_counted_and_changes_nothing(history, value):
    history.feed(windows(window(0)))
    history.feed([Rec(NAMES.window_counts, value), Rec(NAMES.alerts, value)])
    assert history.bad_records == 2
    assert [m["minute"] for m in history.minutes(None, 0)] == ["2026-03-02T09:00"]
    assert history.recent_alerts(10) == []


def test_the_live_feed_keeps_the_newest_window_time_and_dead_letters_by_reason():
    feed = LiveFeed(SETTINGS, NAMES)
    feed.feed([Rec(NAMES.window_counts, encode(window(0)), at_ms=2_000),
               Rec(NAMES.window_counts, encode(window(1)), at_ms=1_500),
               Rec(NAMES.dead_letter, encode(make_dead_letter("unknown_status"))),
               Rec(NAMES.dead_letter, encode(make_dead_letter("unknown_status"))),
               Rec(NAMES.dead_letter, b"garbage")])
    assert feed.newest_window_at == 2.0  # an older record arriving later changes nothing
    assert feed.dead_letters == {"unknown_status": 2, "undecodable": 1}
