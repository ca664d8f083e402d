"""The pipeline's numbers for Prometheus, notifications, Grafana sync and reports."""
