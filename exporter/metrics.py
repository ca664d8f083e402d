"""The exporter's collectors and the state behind them, free of Kafka.

Records from the window-counts, alerts and dead-letter topics are applied here one by one.
The processor may re-emit a window or an alert after a crash (same id, same content), so
every id is counted once; a record that does not decode is counted and skipped, never
fatal. Kafka itself is touched only by exporter/consume.py and exporter/lag.py.

Everything read from the topics is served only once the exporter is `ready` (caught up
with the topics' end offsets at start): a restarted exporter that served a half-read
alerts topic would make open incidents vanish, and Prometheus would resolve them. Until
then /metrics carries only the exporter's own health (process, Kafka, lag, ready 0).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import datetime

import msgspec
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)

from exporter.known_labels import start_at_zero
from txmon.contracts import STATUSES, Alert, DeadLetter, WindowCount
from txmon.contracts import metrics as m
from txmon.contracts.incidents import Incident, IncidentFold
from txmon.settings import ProcessorSettings, default

log = logging.getLogger(__name__)

DEFAULT_RECENT_INCIDENTS = 50
#: Where an alert record without its own runbook link sends the reader.
DEFAULT_RUNBOOK_URL: str = default(ProcessorSettings, "runbook_url")


def _ts(value: datetime) -> float:
    return value.timestamp()


def describe(alert: Alert, since: datetime | None = None) -> str:
    """The summary line for a record that carries none (written before the processor
    did): observed against expected per status, and since when."""
    parts = [f"{s} {alert.observed.get(s, 0)}/min against ~{alert.expected.get(s, 0):.0f} "
             "expected" for s in alert.statuses]
    start = alert.since or since or alert.window_start
    return ", ".join(parts) + f", since {start:%H:%M} UTC"


@dataclass
class _Series:
    """An incident as the exporter shows it: the folded incident, the labels its series
    carry now, and the words of its newest open/update record (window start `latest`)."""

    incident: Incident
    labels: tuple[str, str, str, str] = ("", "", "", "")
    summary: str = ""
    runbook_url: str = DEFAULT_RUNBOOK_URL
    duration: float = 0.0
    latest: float = float("-inf")
    info_labels: tuple[str, ...] = ()

    @property
    def opened(self) -> float:
        return _ts(self.incident.start)

    @property
    def resolved(self) -> float | None:
        return None if self.incident.end is None else _ts(self.incident.end)

    @property
    def statuses(self) -> str:
        return ",".join(sorted(s for s in self.incident.statuses if s))


class _WhenReady:
    """Serves the families of `source` only once `ready` is set (see the module doc)."""

    def __init__(self, source: CollectorRegistry, ready: threading.Event):
        self.source, self.ready = source, ready

    def describe(self):
        return []  # names are checked in `source`; nothing to register twice

    def collect(self):
        if self.ready.is_set():
            yield from self.source.collect()


class PipelineMetrics:
    """Prometheus collectors fed by the pipeline's output topics."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        recent_incidents: int = DEFAULT_RECENT_INCIDENTS,
        process_metrics: bool = True,
        now: float | None = None,
        ready: bool = True,
    ):
        """`ready=False` (the exporter) hides the topic-derived series until mark_ready();
        fed by hand (the unit tests), everything is served at once."""
        import time

        self.registry = registry or CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        health = self.registry
        r = CollectorRegistry()
        self.ready = threading.Event()
        health.register(_WhenReady(r, self.ready))
        self._health_families(health)
        self._window_families(r)
        self._incident_families(r)
        self.dead_letters = Counter(
            m.DEAD_LETTERS_TOTAL.removesuffix("_total"), "Dead-letter records by reason.",
            ["reason", "source"], registry=r)
        self.bad_records = Counter(
            m.EXPORTER_BAD_RECORDS_TOTAL.removesuffix("_total"),
            "Records the exporter could not decode (skipped).", ["topic"], registry=r)
        self.duplicates = Counter(
            m.EXPORTER_DUPLICATE_RECORDS_TOTAL.removesuffix("_total"),
            "Re-emitted records ignored (id already counted).", ["topic"], registry=r)
        for status in STATUSES:
            self.window_tx.labels(status)
            self.tx_total.labels(status)
        for kind in ("window-counts", "alerts", "dead-letter"):
            self.bad_records.labels(kind)
            self.duplicates.labels(kind)
        start_at_zero(self)
        # Before any window, stall detection measures from the exporter's start.
        self.last_emitted.set(time.time() if now is None else now)

        self._window_ids: set[str] = set()
        self._newest_start: float | None = None
        self._newest_emitted: float | None = None
        self._score_from_windows = False
        self._fold = IncidentFold()
        self._incidents: dict[str, _Series] = {}
        self._open_keys: set[tuple[str, str]] = set()
        self._lag_partitions: dict[tuple[str, str], set[str]] = {}
        self.recent_incidents = recent_incidents
        self._decoders = {
            "window-counts": msgspec.json.Decoder(WindowCount),
            "alerts": msgspec.json.Decoder(Alert),
            "dead-letter": msgspec.json.Decoder(DeadLetter),
        }
        if ready:
            self.mark_ready()

    def _health_families(self, health: CollectorRegistry) -> None:
        """Served before `ready`: the exporter's own state and Kafka's."""
        self.ready_gauge = Gauge(
            m.EXPORTER_READY, "1 once the topics are read up to their end offsets at start.",
            registry=health)
        self.lag = Gauge(
            m.CONSUMER_LAG, "End offset minus committed offset, per partition.",
            ["group", "topic", "partition"], registry=health)
        self.kafka_errors = Counter(
            m.EXPORTER_KAFKA_ERRORS_TOTAL.removesuffix("_total"), "Kafka client errors seen.",
            ["kind"], registry=health)
        self.kafka_up = Gauge(m.EXPORTER_KAFKA_UP, "1 when the last Kafka round trip worked.",
                              registry=health)

    def _window_families(self, r: CollectorRegistry) -> None:
        self.window_tx = Gauge(
            m.WINDOW_TRANSACTIONS, "Transactions in the newest closed minute, by status.",
            ["status"], registry=r)
        self.tx_total = Counter(
            m.TRANSACTIONS_TOTAL.removesuffix("_total"),
            "Transactions counted in closed windows, by status.", ["status"], registry=r)
        self.windows_total = Counter(
            m.WINDOWS_TOTAL.removesuffix("_total"), "Closed one-minute windows.", registry=r)
        self.late_total = Counter(
            m.LATE_EVENTS_TOTAL.removesuffix("_total"),
            "Events later than the allowed lateness (sent to the dead letters).", registry=r)
        self.newest_end = Gauge(
            m.WINDOW_NEWEST_END, "Event time of the end of the newest closed window.",
            registry=r)
        self.quiet_sources = Gauge(
            m.WINDOW_QUIET_SOURCES,
            "Transactions partitions silent while the others flowed, newest closed minute.",
            registry=r)
        self.last_emitted = Gauge(
            m.WINDOW_LAST_EMITTED,
            "Wall-clock time the newest window record reached Kafka (exporter start before any).",
            registry=r)
        self.score = Gauge(m.DETECTOR_SCORE, "Detector score of the newest scored window.",
                           registry=r)
        self.threshold = Gauge(m.DETECTOR_THRESHOLD, "Detector alerting threshold.", registry=r)

    def _incident_families(self, r: CollectorRegistry) -> None:
        self.alerts_total = Counter(
            m.ALERTS_TOTAL.removesuffix("_total"), "Alert records by event, group and severity.",
            ["event", "group", "severity"], registry=r)
        self.incidents_total = Counter(
            m.INCIDENTS_TOTAL.removesuffix("_total"), "Incidents opened, by group and severity.",
            ["group", "severity"], registry=r)
        self.incidents_open = Gauge(
            m.INCIDENTS_OPEN, "Incidents open now, by group and severity.",
            ["group", "severity"], registry=r)
        inc_labels = ["incident_id", "group", "severity", "statuses"]
        self.incident_opened = Gauge(
            m.INCIDENT_OPENED, "Event time a recent incident opened.", inc_labels, registry=r)
        self.incident_resolved = Gauge(
            m.INCIDENT_RESOLVED, "Event time a recent incident resolved.", inc_labels,
            registry=r)
        self.incident_score = Gauge(
            m.INCIDENT_SCORE, "Latest score of a recent incident.", inc_labels, registry=r)
        self.incident_info = Gauge(
            m.INCIDENT_INFO, "1 per open incident, labelled with its latest summary.",
            ["incident_id", "group", "groups", "severity", "summary", "runbook_url"],
            registry=r)
        self.incident_duration = Gauge(
            m.INCIDENT_DURATION, "Duration of an open incident as of its latest minute.",
            ["incident_id", "group"], registry=r)

    def mark_ready(self) -> None:
        """The topics are read up to where they ended at start: serve what they say."""
        self.ready_gauge.set(1)
        self.ready.set()

    # --- records -------------------------------------------------------------------------

    def apply_record(self, kind: str, value: bytes | None, emitted_at: float | None = None,
                     ) -> bool:
        """Decode and apply one record of topic `kind` ("window-counts", "alerts" or
        "dead-letter"). Returns False (and counts it) when it is not a valid record."""
        if value is None:
            # A tombstone on a compacted topic carries nothing to count.
            return False
        try:
            record = self._decoders[kind].decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            self.bad_records.labels(kind).inc()
            log.warning("bad record on %s skipped: %s", kind, exc)
            return False
        if kind == "window-counts":
            return self.apply_window(record, emitted_at)
        if kind == "alerts":
            return self.apply_alert(record)
        self.apply_dead_letter(record)
        return True

    def apply_window(self, wc: WindowCount, emitted_at: float | None = None) -> bool:
        if emitted_at is not None and (self._newest_emitted is None
                                       or emitted_at > self._newest_emitted):
            # Any window record, re-emissions included, proves the processor is alive.
            self._newest_emitted = emitted_at
            self.last_emitted.set(emitted_at)
        if wc.id in self._window_ids:
            self.duplicates.labels("window-counts").inc()
            return False
        self._window_ids.add(wc.id)
        self.windows_total.inc()
        for status, count in wc.counts.items():
            if count > 0:
                self.tx_total.labels(status).inc(count)
        if wc.late > 0:
            self.late_total.inc(wc.late)
        start = _ts(wc.start)
        if self._newest_start is None or start >= self._newest_start:
            self._newest_start = start
            self.newest_end.set(_ts(wc.end))
            self.quiet_sources.set(len(wc.quiet_sources))
            for status in set(STATUSES) | set(wc.counts):
                self.window_tx.labels(status).set(wc.counts.get(status, 0))
            if wc.score is not None:
                self._score_from_windows = True
                self.score.set(wc.score)
            if wc.threshold is not None:
                self.threshold.set(wc.threshold)
        return True

    def apply_alert(self, alert: Alert) -> bool:
        incident = self._fold.apply(alert)
        if incident is None:
            self.duplicates.labels("alerts").inc()
            return False
        self.alerts_total.labels(alert.event, alert.group, alert.severity).inc()
        if not self._score_from_windows:
            # Windows without scores (older processor): the alerts are all we know.
            self.score.set(alert.score)
            self.threshold.set(alert.threshold)
        series = self._incidents.get(alert.incident_id)
        if series is None:
            series = self._incidents[alert.incident_id] = _Series(incident)
            self.incidents_total.labels(alert.group, alert.severity).inc()
        if alert.event != "resolved":
            self._take_words(series, alert)
        self._refresh_incidents(alert.incident_id)
        return True

    @staticmethod
    def _take_words(inc: _Series, alert: Alert) -> None:
        """What a person reads about the incident: the newest record's words, with the
        fallbacks for records written before the processor carried them."""
        start = _ts(alert.window_start)
        if start < inc.latest:
            return  # an older step arriving late says nothing newer
        inc.latest = start
        since = alert.since.timestamp() if alert.since else inc.opened
        inc.summary = alert.summary or describe(
            alert, datetime.fromtimestamp(since, alert.window_start.tzinfo))
        inc.runbook_url = alert.runbook_url or DEFAULT_RUNBOOK_URL
        inc.duration = alert.duration_s or max(_ts(alert.window_end) - since, 0.0)

    def apply_dead_letter(self, dl: DeadLetter) -> None:
        self.dead_letters.labels(str(dl.reason), dl.source).inc()

    # --- Kafka-side health ---------------------------------------------------------------

    def set_lag(self, group: str, topic: str, lags: dict[int, int]) -> None:
        key = (group, topic)
        now = {str(p) for p in lags}
        for gone in self._lag_partitions.get(key, set()) - now:
            self.lag.remove(group, topic, gone)
        for partition, lag in lags.items():
            self.lag.labels(group, topic, str(partition)).set(max(lag, 0))
        self._lag_partitions[key] = now

    def kafka_error(self, kind: str) -> None:
        self.kafka_errors.labels(kind).inc()
        self.kafka_up.set(0)

    def kafka_ok(self) -> None:
        self.kafka_up.set(1)

    # --- incidents -----------------------------------------------------------------------

    def open_incidents(self) -> dict[str, dict]:
        return {
            iid: {"group": i.incident.group, "severity": i.incident.severity,
                  "statuses": i.statuses}
            for iid, i in self._incidents.items() if i.resolved is None
        }

    def _refresh_incidents(self, changed: str) -> None:
        inc = self._incidents[changed]
        labels = (changed, inc.incident.group, inc.incident.severity, inc.statuses)
        if inc.labels != labels and inc.labels[0]:
            self._remove_incident_series(inc.labels)
        inc.labels = labels
        self.incident_opened.labels(*labels).set(inc.opened)
        self.incident_score.labels(*labels).set(inc.incident.score)
        if inc.resolved is not None:
            self.incident_resolved.labels(*labels).set(inc.resolved)
        self._refresh_info(changed, inc)

        tally = Tally((i.incident.group, i.incident.severity) for i in self._incidents.values()
                      if i.resolved is None)
        for key in self._open_keys | set(tally):
            self.incidents_open.labels(*key).set(tally.get(key, 0))
        self._open_keys |= set(tally)

        # Keep per-incident series for the most recent incidents only (bounded cardinality).
        if len(self._incidents) > self.recent_incidents:
            by_age = sorted(self._incidents.items(), key=lambda kv: kv[1].opened)
            for iid, old in by_age[: len(self._incidents) - self.recent_incidents]:
                if old.resolved is None or not old.labels[0]:
                    continue
                self._remove_incident_series(old.labels)
                old.labels = ("", "", "", "")
                # The id stays known (so a re-emission is not a new incident) but its
                # series are gone.
                self._incidents[iid] = old

    def _refresh_info(self, iid: str, inc: _Series) -> None:
        """One info series per open incident, its latest words only; none once resolved.
        The TransactionAnomaly rule groups it by (incident_id, group), so replacing the
        labels of an update does not change the alert's identity."""
        group = inc.incident.group
        info = () if inc.resolved is not None else (
            iid, group, ",".join(inc.incident.joined), inc.incident.severity, inc.summary,
            inc.runbook_url)
        if inc.info_labels and inc.info_labels != info:
            self.incident_info.remove(*inc.info_labels)
        if info:
            self.incident_info.labels(*info).set(1)
            self.incident_duration.labels(iid, group).set(inc.duration)
        elif inc.info_labels:
            with contextlib.suppress(KeyError):
                self.incident_duration.remove(iid, group)
        inc.info_labels = info

    def _remove_incident_series(self, labels: tuple[str, str, str, str]) -> None:
        for gauge in (self.incident_opened, self.incident_resolved, self.incident_score):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)

