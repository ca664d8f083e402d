"""The services a developer runs locally, above the base and beside the pipeline: a real
Kafka broker or cluster from its jars (kafka/), Debian's Prometheus and Alertmanager
(monitoring.py) and the process supervision both use (processes.py). Tests and the demo
start them; nothing in the pipeline imports them."""
