"""Prometheus metric names, defined once.

The exporter, the processor, the API, the alerting rules, the dashboards and their tests
all refer to these names; a rename here is caught by the tests that parse the rules and
the dashboards. Conventions: `txmon_` prefix, base units (seconds, messages), counters
end in `_total`, timestamps are seconds since the epoch (so `time() - x` is an age).
"""

from __future__ import annotations

PREFIX = "txmon_"

# --- transactions, from the window-counts topic (one record per closed minute) ---
#: gauge {status}: transactions in the newest closed minute (the prototype's live chart).
WINDOW_TRANSACTIONS = "txmon_window_transactions"
#: counter {status}: transactions counted in closed windows; rate() is the processing rate.
TRANSACTIONS_TOTAL = "txmon_transactions_total"
#: counter: closed one-minute windows seen (each window id once).
WINDOWS_TOTAL = "txmon_windows_total"
#: counter: events later than the allowed lateness (reported by the windows).
LATE_EVENTS_TOTAL = "txmon_late_events_total"
#: gauge: source partitions of the transactions topic silent while the others flowed,
#: in the newest closed minute (processor/sources.py; they also page as an outage).
WINDOW_QUIET_SOURCES = "txmon_window_quiet_sources"

# --- freshness ---
#: gauge: event time of the end of the newest closed window.
WINDOW_NEWEST_END = "txmon_window_newest_end_timestamp_seconds"
#: gauge: wall-clock time the newest window record was written to Kafka (its record
#: timestamp); before any window, the exporter's start. Drives PipelineStalled.
WINDOW_LAST_EMITTED = "txmon_window_last_emitted_timestamp_seconds"

# --- detector ---
#: gauge: the detector's anomaly score of the newest scored window.
DETECTOR_SCORE = "txmon_detector_score"
#: gauge: the score above which the detector alerts.
DETECTOR_THRESHOLD = "txmon_detector_threshold"

# --- alerts and incidents, from the alerts topic ---
#: counter {event, group, severity}: alert records (open, update, resolved), each id once.
ALERTS_TOTAL = "txmon_alerts_total"
#: counter {group, severity}: incidents opened.
INCIDENTS_TOTAL = "txmon_incidents_total"
#: gauge {group, severity}: incidents open now.
INCIDENTS_OPEN = "txmon_incidents_open"
#: gauge {incident_id, group, severity, statuses}: event time an incident opened
#: (recent incidents only, for the incidents table).
INCIDENT_OPENED = "txmon_incident_opened_timestamp_seconds"
#: gauge {incident_id, group, severity, statuses}: event time it resolved (absent while open).
INCIDENT_RESOLVED = "txmon_incident_resolved_timestamp_seconds"
#: gauge {incident_id, group, severity, statuses}: latest score of the incident.
INCIDENT_SCORE = "txmon_incident_score"
#: gauge {incident_id, group, groups, severity, summary, runbook_url} = 1 per OPEN
#: incident, its latest words only (replaced on update, removed on resolve). The
#: TransactionAnomaly rule fires one alert per incident from it and reads the summary
#: into its annotations; `group` is the opening group (routing), `groups` every group.
INCIDENT_INFO = "txmon_incident_info"
#: gauge {incident_id, group}: how long an open incident has lasted, as of its latest
#: closed minute (from the start of its first anomalous minute).
INCIDENT_DURATION = "txmon_incident_duration_seconds"

# --- dead letters and pipeline health ---
#: counter {reason, source}: records sent to the dead-letter topic.
DEAD_LETTERS_TOTAL = "txmon_dead_letters_total"
#: gauge {group, topic, partition}: end offset minus committed offset of a consumer group.
CONSUMER_LAG = "txmon_consumer_lag_messages"

# --- the exporter's own health ---
#: counter {topic}: records on the exporter's topics it could not decode (skipped).
EXPORTER_BAD_RECORDS_TOTAL = "txmon_exporter_bad_records_total"
#: counter {topic}: re-emitted records ignored because their id was already counted.
EXPORTER_DUPLICATE_RECORDS_TOTAL = "txmon_exporter_duplicate_records_total"
#: counter {kind}: Kafka client errors seen (broker down, lag query failed...).
EXPORTER_KAFKA_ERRORS_TOTAL = "txmon_exporter_kafka_errors_total"
#: gauge: 1 when the exporter's last Kafka round trip succeeded, else 0.
EXPORTER_KAFKA_UP = "txmon_exporter_kafka_up"
#: gauge: 1 once the exporter has read the window-counts and alerts topics up to the end
#: offsets they had when it started (also GET /ready). Until then it serves only its own
#: health series, never a partial count or a missing incident.
EXPORTER_READY = "txmon_exporter_ready"

# --- the processor's own numbers (served by `txmon process` itself) ---
#: counter {outcome}: transactions read by the worker: counted, late or dead_letter.
PROCESSOR_EVENTS_TOTAL = "txmon_processor_events_total"
#: gauge {partition}: event-time watermark of each source partition this worker owns.
PROCESSOR_WATERMARK = "txmon_processor_watermark_timestamp_seconds"
#: counter: closed minutes this worker emitted (merge stage).
PROCESSOR_WINDOWS_EMITTED_TOTAL = "txmon_processor_windows_emitted_total"

#: Every name above, for the tests that check rules and dashboards use only known names.
ALL = tuple(
    value for key, value in dict(globals()).items() if key.isupper() and key != "PREFIX"
    and isinstance(value, str) and value.startswith(PREFIX)
)
