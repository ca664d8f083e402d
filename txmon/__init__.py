"""txmon: real-time transaction monitoring on Kafka."""

__version__ = "0.1.0"
