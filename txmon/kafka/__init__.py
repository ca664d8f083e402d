"""Thin confluent-kafka helpers shared by the producer, the processor and the exporter."""
