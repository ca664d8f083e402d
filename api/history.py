"""What the API answers from: the window-counts and alerts topics, read in the
background into memory (bounded), deduplicated by id.

Reading the topics (not the worker's memory) keeps the API stateless: any number of API
processes answer the same thing, and a restarted one rebuilds it from Kafka.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import msgspec

from api.tail import TopicTail
from txmon.contracts import Alert, Topics, WindowCount, minute_key
from txmon.settings import KafkaSettings

_window_decoder = msgspec.json.Decoder(WindowCount)
_alert_decoder = msgspec.json.Decoder(Alert)


class History(TopicTail):
    """The newest `max_minutes` window counts by id and the last `max_alerts` alert
    records (each id once), from the topics' records (`feed`, `apply`); undecodable
    records are counted in `bad_records`."""

    def __init__(self, settings: KafkaSettings, names: Topics, max_minutes: int = 10_080,
                 max_alerts: int = 1000):
        super().__init__(settings, (names.window_counts, names.alerts), "api-history")
        self.names = names
        self.max_minutes = max_minutes
        self.windows: OrderedDict[str, WindowCount] = OrderedDict()
        self.alert_minutes: set[str] = set()
        self.alerts: deque[Alert] = deque(maxlen=max_alerts)
        self._alert_ids: set[str] = set()
        self.bad_records = 0

    def apply(self, topic: str, value: bytes | None, at: float) -> None:
        try:
            if topic == self.names.window_counts:
                window = _window_decoder.decode(value)
                with self.lock:
                    self.windows[window.id] = window
                    self.windows.move_to_end(window.id)
                    if len(self.windows) > self.max_minutes:
                        self.windows = OrderedDict(sorted(self.windows.items())[-self.max_minutes:])
            else:
                alert = _alert_decoder.decode(value)
                with self.lock:
                    if alert.id in self._alert_ids:
                        return
                    self._alert_ids.add(alert.id)
                    self.alerts.append(alert)
                    if alert.event != "resolved":
                        self.alert_minutes.add(minute_key(alert.window_start))
        except (msgspec.MsgspecError, TypeError):
            self.bad_records += 1

    def newest(self) -> WindowCount | None:
        with self.lock:
            return max(self.windows.values(), key=lambda w: w.start, default=None)

    def minutes(self, since: str | None, limit: int) -> list[dict]:
        with self.lock:
            rows = sorted(self.windows.values(), key=lambda w: w.start)
            if since:
                rows = [w for w in rows if minute_key(w.start) >= since]
            rows = rows[-limit:] if limit else rows
            return [summary(w, minute_key(w.start) in self.alert_minutes) for w in rows]

    def has_alert(self, window: WindowCount) -> bool:
        with self.lock:
            return minute_key(window.start) in self.alert_minutes

    def recent_alerts(self, limit: int) -> list[Alert]:
        with self.lock:
            return list(self.alerts)[-limit:]


def summary(window: WindowCount, alert: bool) -> dict:
    return {"minute": minute_key(window.start), "summary": dict(window.counts), "alert": alert}
