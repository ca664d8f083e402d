"""Shared fixtures: a real Kafka broker for the session (with pytest-xdist, one per
worker: topics, groups and ports never clash between them), unique topics per test.

tests/ is laid out by kind: unit/ (pure logic, no broker: `make test-unit`, under a
minute), integration/ (the real broker, Prometheus, Alertmanager, the CLI) and faults/
(kill and restart things). Each test is marked by its folder; a unit test that asks for
the broker fails.

Set KAFKA_BOOTSTRAP_SERVERS to run the suite against a broker you already have (its
KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* settings are honoured); otherwise the session
starts its own broker on free ports in a temporary directory and stops it at the end.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.faults import reference_data

from devstack.kafka.server import BrokerOptions, LocalKafka
from devstack.processes import free_ports
from txmon.contracts import Topics
from txmon.contracts.topics import ENV_PREFIX
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.settings import KafkaSettings, TestSuite

KINDS = ("unit", "integration", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = item.path.parent.name
        if kind in KINDS:
            item.add_marker(getattr(pytest.mark, kind))
        if kind == "unit" and "kafka_bootstrap" in item.fixturenames:
            raise pytest.UsageError(f"{item.nodeid} needs the broker: it belongs in integration/")
    items.sort(key=_start_order)


def _start_order(item: pytest.Item) -> int:
    """Longest first: `make test` shares tests out to parallel workers (pytest-xdist,
    one test at a time), so the long ones start together and the many short ones fill
    the gaps at the end instead of one long test running alone last."""
    if item.get_closest_marker("slow"):
        return 0
    return {"faults": 1, "integration": 2}.get(item.path.parent.name, 3)


# A test broker needs less than the demo's; several sessions may share the machine.
SUITE = TestSuite.from_env()
TEST_HEAP = SUITE.kafka_heap
# In os.environ, so that the brokers the CLI starts (demo, cluster, bench) use them too.
os.environ.setdefault("TXMON_KAFKA_JVM_FLAGS", SUITE.kafka_jvm_flags)


def _start_broker(data_dir: Path, **kw) -> LocalKafka:
    """A broker on free ports, stopped by a watchdog if this session dies without its
    teardown. Ports can be taken between probing and binding by another process, so a
    clash is retried on fresh ports."""
    last: Exception | None = None
    heap = kw.pop("heap", TEST_HEAP)
    for _ in range(3):
        port, controller_port = free_ports(2)
        options = BrokerOptions(heap=heap, owner_pid=os.getpid(), **kw)
        kafka = LocalKafka(data_dir=data_dir, port=port, controller_port=controller_port,
                           options=options)
        try:
            kafka.up(timeout=120)
            return kafka
        except Exception as exc:  # noqa: BLE001 - retried, then re-raised
            if "already in use" not in str(exc):
                raise
            last = exc
    raise last  # type: ignore[misc]


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real broker for the whole session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    kafka = _start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield kafka.bootstrap
    finally:
        kafka.down(timeout=20)


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return KafkaSettings.from_env().model_copy(update={"bootstrap": kafka_bootstrap})
    return KafkaSettings(bootstrap=kafka_bootstrap)


def _slug(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-").lower()
    return f"{name[:60]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def unique_topics(request: pytest.FixtureRequest, kafka_settings: KafkaSettings) -> Topics:
    """Topic names no other test uses, already created with the pipeline's settings."""
    slug = _slug(request)
    names = Topics(**{
        field: f"t-{slug}-{field.replace('_', '-')}"
        for field in Topics.model_fields
    })
    ensure_topics(kafka_settings, pipeline_topics(names))
    return names


@pytest.fixture
def txmon_env(
    unique_topics: Topics, kafka_settings: KafkaSettings, tmp_path: Path
) -> dict[str, str]:
    """Environment for `txmon` subprocesses: this test's broker and topics, its own
    Faust app id (so changelog topics and group offsets are not shared between tests)
    and its own state dir."""
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_settings.bootstrap
    for field in Topics.model_fields:
        env[ENV_PREFIX + field.upper()] = getattr(unique_topics, field)
    slug = unique_topics.transactions.removeprefix("t-").removesuffix("-transactions")
    env["TXMON_APP_ID"] = f"txmon-test-{slug}"
    env["TXMON_STATE_DIR"] = str(tmp_path / "state")
    return env


@pytest.fixture
def shared_data() -> Path:
    """The reference CSVs (never copied into the repo): skipped when absent, except in CI."""
    return reference_data()


@pytest.fixture
def local_kafka_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LocalKafka]]:
    """Start extra brokers of your own (e.g. to kill and restart in fault tests):
    `kafka = local_kafka_factory()` returns a running LocalKafka on free ports; its
    kill()/down()/up() keep the data dir. Every broker made here is stopped at teardown.
    Keyword arguments go to BrokerOptions (heap, extra_properties, client_config, ...)."""
    made: list[LocalKafka] = []

    def make(**kw) -> LocalKafka:
        kafka = _start_broker(tmp_path_factory.mktemp("kafka-extra"), **kw)
        made.append(kafka)
        return kafka

    yield make
    for kafka in made:
        kafka.down(timeout=20)


@pytest.fixture
def local_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A three-node LocalCluster on free ports (256 MiB heap a node: three fit the 2-core
    test machine beside the session broker), stopped at teardown."""
    from devstack.kafka.cluster import LocalCluster

    ports = free_ports(6)
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), ports=(ports[:3], ports[3:]),
                           options=BrokerOptions(heap="256m", owner_pid=os.getpid()))
    cluster.up(timeout=180)
    yield cluster
    cluster.down(timeout=20)
