"""What the tests share: a worker subprocess, Kafka reads, Prometheus and Alertmanager,
reference data, and the reliability record."""
