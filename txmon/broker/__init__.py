"""A real Apache Kafka broker for local runs and tests, run from its own jars.

The Kafka version is pinned here and nowhere else (TXMON_KAFKA_VERSION overrides it).
4.4.0 is the newest 4.x on Maven Central and was checked against our clients:
confluent-kafka (librdkafka) produce/consume/commit, aiokafka 0.14 consumer groups
with commits, and a faust-streaming 0.15 app with a changelog-backed table.
"""

from __future__ import annotations

import os
from pathlib import Path

KAFKA_VERSION = "4.4.0"
# Log4j 2 backend bound through SLF4J 1.7, matching what kafka_2.13 4.x depends on.
LOG4J_VERSION = "2.24.3"

DEFAULT_PORT = 9092
# 9093 is Alertmanager's port, so the KRaft controller listens on 9094 by default.
DEFAULT_CONTROLLER_PORT = 9094
DEFAULT_HEAP = "512m"


def kafka_version() -> str:
    return os.environ.get("TXMON_KAFKA_VERSION") or KAFKA_VERSION


def cache_dir() -> Path:
    """Where fetched jars live: outside the repo, shared by every checkout."""
    explicit = os.environ.get("TXMON_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "txmon"


def __getattr__(name: str):
    # LocalKafka is imported lazily so `txmon --help` does not pay for it.
    if name == "LocalKafka":
        from txmon.broker.server import LocalKafka

        return LocalKafka
    raise AttributeError(name)
