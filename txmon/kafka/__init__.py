"""Thin confluent-kafka helpers shared by the producer, the processor and the exporter."""

from __future__ import annotations

import logging


def probe_logger() -> logging.Logger:
    """The logger for a client probing a broker that may be down or may refuse it:
    librdkafka would print a connection error every 50 ms, and the probe reports the
    outcome itself."""
    quiet = logging.getLogger("txmon.kafka.probe")
    quiet.setLevel(logging.CRITICAL)
    return quiet
