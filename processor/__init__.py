"""The streaming worker: event-time one-minute windows, anomaly scoring, alerts, and the
HTTP API."""
