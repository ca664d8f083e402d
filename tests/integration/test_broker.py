"""The local broker: `txmon kafka` against real JVMs on ports of its own, and the
session fixtures every other test relies on."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from support.kafka import consume_all

from devstack.kafka import kafka_version
from devstack.kafka.fetch import cached, fetch, java_executable
from devstack.kafka.server import BrokerOptions, LocalKafka, cds_archive
from devstack.processes import free_port, free_ports, port_free
from txmon.kafka.admin import partition_count, pipeline_topics
from txmon.settings import KafkaSettings

TXMON = [sys.executable, "-m", "txmon.cli"]


def txmon(*args: str, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run([*TXMON, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2 and one error line (progress lines logged before it are fine)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if " INFO " not in ln]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("txmon kafka: error: "), lines[0]
    assert "\x1b" not in lines[0] and "[0m" not in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def broker_pids(properties: Path) -> list[int]:
    """Every JVM on the machine running this data dir's broker."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" in cmd and str(properties).encode() in cmd:
            pids.append(int(entry.name))
    return pids


def bin_dir_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only the named tools (to hide java or mvn)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        target = shutil.which(tool)
        assert target, f"{tool} is needed for this test"
        (bin_dir / tool).symlink_to(target)
    return str(bin_dir)


def env_without_java_home(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def kafka_libs() -> Path:
    return fetch().libs


def test_up_twice_status_logs_down(tmp_path: Path, kafka_libs: Path) -> None:
    data = tmp_path / "kafka"
    port, cport = free_ports(2)
    where = ["--data-dir", str(data), "--port", str(port), "--controller-port", str(cport)]

    before = txmon("kafka", "status", *where)
    assert before.returncode == 3 and "down" in before.stdout

    first = txmon("kafka", "up", *where)
    assert first.returncode == 0, first.stderr
    assert f"up at 127.0.0.1:{port}" in first.stdout
    second = txmon("kafka", "up", *where)
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout

    pid = int((data / "kafka.pid").read_text())
    assert broker_pids(data / "server.properties") == [pid]
    assert f"(pid {pid}" in first.stdout and f"(pid {pid}" in second.stdout
    jvm = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    assert set(shlex.split(os.environ["TXMON_KAFKA_JVM_FLAGS"])) <= set(jvm)  # conftest's

    status = txmon("kafka", "status", *where)
    assert status.returncode == 0 and f"pid {pid}" in status.stdout
    meta = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
    assert list(meta.brokers) == [1]

    logs = txmon("kafka", "logs", "-n", "200", *where)
    assert logs.returncode == 0 and "Kafka Server started" in logs.stdout

    # Bound to loopback only.
    assert not port_free(port)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=1):
        pass

    # A hung broker (stopped JVM) is not "up", even though its pid is alive.
    os.kill(pid, signal.SIGSTOP)
    try:
        hung = txmon("kafka", "status", *where)
        assert hung.returncode == 3 and "not answering" in hung.stdout
    finally:
        os.kill(pid, signal.SIGCONT)

    down = txmon("kafka", "down", *where)
    assert down.returncode == 0, down.stderr
    assert broker_pids(data / "server.properties") == []
    assert port_free(port) and port_free(cport)
    assert not (data / "kafka.pid").exists()
    after = txmon("kafka", "status", *where)
    assert after.returncode == 3 and "down" in after.stdout
    again = txmon("kafka", "down", *where)
    assert again.returncode == 0 and "not running" in again.stdout
    # A clean stop leaves the class-data archive that speeds up every later start.
    assert cds_archive(java_executable(), kafka_version()).is_file()


def test_kill_and_restart_keeps_data(tmp_path: Path, kafka_libs: Path) -> None:
    """What the fault tests do: SIGKILL the broker, start it again on the same data."""
    port, cport = free_ports(2)
    kafka = LocalKafka(tmp_path / "kafka", port=port, controller_port=cport,
                       options=BrokerOptions(heap="256m"))
    kafka.up(timeout=120)
    try:
        settings = KafkaSettings(bootstrap=kafka.bootstrap)
        topic = f"survivor-{uuid.uuid4().hex[:8]}"
        from txmon.contracts import Topics
        from txmon.kafka.admin import ensure_topics

        ensure_topics(settings, pipeline_topics(Topics(transactions=topic))[:1])
        producer = Producer(settings.confluent(**{"enable.idempotence": True}))
        for i in range(100):
            producer.produce(topic, key=str(i).encode(), value=b"x")
        assert producer.flush(30) == 0

        pid = kafka.pid()
        assert kafka.kill()
        assert kafka.pid() is None and not kafka.status().up
        assert pid not in broker_pids(kafka.properties_file)
        assert port_free(kafka.port)
        # A stale pid file (a dead pid) must not fool status or up.
        kafka.pid_file.write_text(f"{pid}\n")
        assert not kafka.status().up

        restarted = kafka.up(timeout=120)
        assert restarted.started and restarted.pid != pid
        assert len(consume_all(settings, topic, expected=100, timeout=60)) == 100
    finally:
        kafka.down(timeout=20)
    assert not kafka.status().up


def test_broker_stopped_when_its_owner_dies(tmp_path: Path, kafka_libs: Path) -> None:
    """A test session killed before its teardown must not leave its broker behind."""
    data = tmp_path / "kafka"
    script = (
        "import os, sys\n"
        "from devstack.kafka.server import BrokerOptions, LocalKafka\n"
        "from devstack.processes import free_ports\n"
        "port, cport = free_ports(2)\n"
        f"k = LocalKafka({str(data)!r}, port=port, controller_port=cport,"
        " options=BrokerOptions(heap='256m', owner_pid=os.getpid()))\n"
        "k.up(timeout=120)\n"
        "print(k.pid(), flush=True)\n"
        "os._exit(0)\n"  # no teardown, like a session killed by SIGKILL
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[-1])
    deadline = time.monotonic() + 60
    while pid in broker_pids(data / "server.properties") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert broker_pids(data / "server.properties") == []
    assert not LocalKafka(data).status().up


def test_port_in_use_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = txmon("kafka", "up", "--data-dir", str(tmp_path / "k"), "--port", str(port),
                     "--controller-port", str(free_port()))
    assert_one_line_error(proc, f"port {port}", "already in use")
    assert not (tmp_path / "k" / "kafka.pid").exists()


def test_second_fetch_uses_cache_without_mvn(tmp_path: Path, kafka_libs: Path) -> None:
    assert cached() == kafka_libs
    assert fetch().from_cache
    # No mvn on PATH at all: the cached fetch still succeeds, so it never ran mvn.
    env = env_without_java_home(PATH=bin_dir_with(tmp_path, "java"))
    proc = txmon("kafka", "fetch", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "cached" in proc.stdout and str(kafka_libs) in proc.stdout


def test_missing_java_is_one_line_error(tmp_path: Path, kafka_libs: Path) -> None:
    env = env_without_java_home(PATH=bin_dir_with(tmp_path, "mvn"))
    port, cport = free_ports(2)
    proc = txmon("kafka", "up", "--data-dir", str(tmp_path / "k"), "--port", str(port),
                 "--controller-port", str(cport), env=env)
    assert_one_line_error(proc, "`java` not found")


def test_missing_mvn_is_one_line_error(tmp_path: Path) -> None:
    env = env_without_java_home(PATH=bin_dir_with(tmp_path, "java"),
                                TXMON_CACHE_DIR=str(tmp_path / "empty-cache"))
    proc = txmon("kafka", "fetch", env=env)
    assert_one_line_error(proc, "`mvn` not found")


def test_failed_download_is_one_line_error(tmp_path: Path) -> None:
    env = env_without_java_home(TXMON_CACHE_DIR=str(tmp_path / "cache"),
                                TXMON_KAFKA_VERSION="0.0.0-no-such-version")
    proc = txmon("kafka", "fetch", env=env, timeout=600)
    assert_one_line_error(proc, "Kafka 0.0.0-no-such-version", "mvn failed")
    assert cached("0.0.0-no-such-version", tmp_path / "cache") is None


# The session fixtures, and the clients this Kafka version was chosen for ------------------


def test_unique_topics_exist_with_pipeline_settings(kafka_settings, unique_topics) -> None:
    for spec in pipeline_topics(unique_topics):
        assert partition_count(kafka_settings, spec.name) == spec.partitions


def test_txmon_env_names_this_tests_broker_and_topics(txmon_env, unique_topics,
                                                      kafka_settings) -> None:
    assert txmon_env["KAFKA_BOOTSTRAP_SERVERS"] == kafka_settings.bootstrap
    assert txmon_env["TXMON_TOPIC_TRANSACTIONS"] == unique_topics.transactions
    assert txmon_env["TXMON_TOPIC_DEAD_LETTER"] == unique_topics.dead_letter
    assert txmon_env["TXMON_APP_ID"] != "txmon-processor"


def test_clients_produce_consume_and_commit(kafka_settings, unique_topics) -> None:
    """confluent-kafka produces; aiokafka (Faust's client) consumes in a group and
    commits; the committed offsets are read back."""
    topic = unique_topics.transactions
    producer = Producer(kafka_settings.confluent(**{"enable.idempotence": True,
                                                    "compression.type": "gzip"}))
    for i in range(300):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    async def consume_and_commit() -> tuple[int, dict[int, int]]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_settings.bootstrap, group_id=f"g-{topic}",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )
        await consumer.start()
        try:
            got, deadline = 0, time.monotonic() + 60
            while got < 300 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                got += sum(len(b) for b in batches.values())
            await consumer.commit()
            committed = {tp.partition: await consumer.committed(tp)
                         for tp in consumer.assignment()}
            return got, committed
        finally:
            await consumer.stop()

    got, committed = asyncio.run(consume_and_commit())
    assert got == 300
    assert sum(committed.values()) == 300
    assert len(consume_all(kafka_settings, topic, expected=300)) == 300


def test_cluster_ids_never_look_like_an_option():
    """kafka-storage parses `-t <id>`: an id starting with `-` failed one format in 64."""
    from devstack.kafka.server import _random_cluster_id

    ids = [_random_cluster_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
