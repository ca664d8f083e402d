"""A real Apache Kafka broker for local runs and tests, run from its own jars.

The Kafka version is pinned in txmon/settings.py (BrokerSettings) and nowhere else
(TXMON_KAFKA_VERSION overrides it).
4.4.0 is the newest 4.x on Maven Central and was checked against our clients:
confluent-kafka (librdkafka) produce/consume/commit, aiokafka 0.14 consumer groups
with commits, and a faust-streaming 0.15 app with a changelog-backed table.
"""

from __future__ import annotations

from pathlib import Path

from txmon.settings import BrokerSettings, Paths, default

KAFKA_VERSION: str = default(BrokerSettings, "version")
# Log4j 2 backend bound through SLF4J 1.7, matching what kafka_2.13 4.x depends on.
LOG4J_VERSION = "2.24.3"

DEFAULT_PORT: int = default(BrokerSettings, "port")
DEFAULT_CONTROLLER_PORT: int = default(BrokerSettings, "controller_port")
DEFAULT_HEAP: str = default(BrokerSettings, "heap")


def kafka_version() -> str:
    return BrokerSettings.from_env().version


def cache_dir() -> Path:
    return Paths.from_env().cache_dir


def __getattr__(name: str):
    # LocalKafka is imported lazily so `txmon --help` does not pay for it.
    if name == "LocalKafka":
        from devstack.kafka.server import LocalKafka

        return LocalKafka
    raise AttributeError(name)
