"""`txmon kafka up --secure --nodes 3` with TLS files, from the shell as a user runs it:
one set of credentials and certificates for three nodes that talk SASL_SSL to each other
and to their controllers; a replicated topic written and read as `txmon` with the printed
exports; a client that does not authenticate refused; `status` and `down` speak TLS."""

from __future__ import annotations

import os
import re
import subprocess
import uuid

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from support.kafka import consume_all
from support.obs import wait_for
from support.processor import TXMON
from support.tls import make_server_cert

from devstack.kafka.cluster import PORT_STEP
from devstack.processes import free_port, port_free
from txmon.kafka import probe_logger
from txmon.settings import KafkaSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

NODES = 3


def stepped_base(taken: set[int]) -> int:
    """A port whose NODES steps (the CLI's --port/--controller-port layout) are free."""
    while True:
        base = free_port()
        steps = {base + PORT_STEP * i for i in range(NODES)}
        if max(steps) < 65536 and not steps & taken and all(port_free(p) for p in steps):
            taken |= steps
            return base


def settings_from(exports: dict[str, str], **change: str | None) -> KafkaSettings:
    kw = dict(bootstrap=exports["KAFKA_BOOTSTRAP_SERVERS"],
              security_protocol=exports["KAFKA_SECURITY_PROTOCOL"],
              sasl_mechanism=exports["KAFKA_SASL_MECHANISM"],
              sasl_username=exports["KAFKA_SASL_USERNAME"],
              sasl_password=exports["KAFKA_SASL_PASSWORD"],
              ssl_cafile=exports["KAFKA_SSL_CAFILE"])
    kw.update(change)
    return KafkaSettings(**kw)


def produce(settings: KafkaSettings, topic: str, value: bytes,
            refused: bool = False) -> tuple[bool, list[str]]:
    """(delivered?, the client's errors) of one record; if it is to be `refused`, as soon
    as the client reports an error, without waiting for the delivery timeout."""
    errors: list[str] = []
    delivered: list[bool] = []
    producer = Producer(settings.confluent(**{
        "message.timeout.ms": 10000 if refused else 30000, "logger": probe_logger(),
        "error_cb": lambda e: errors.append(f"{e.name()}: {e.str()}")}))

    def on_delivery(err, _msg) -> None:
        delivered.append(err is None)
        if err is not None:
            errors.append(f"delivery: {err.name()}")

    producer.produce(topic, value, on_delivery=on_delivery)
    while producer.flush(0.2) and not (refused and errors):
        pass
    return bool(delivered and delivered[0]), errors


def test_secure_tls_cluster_from_the_cli(tmp_path):
    certs = make_server_cert(tmp_path / "certs")
    taken: set[int] = set()
    args = ["--data-dir", str(tmp_path / "kafka"), "--port", str(stepped_base(taken)),
            "--controller-port", str(stepped_base(taken))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    up = subprocess.run([TXMON, "kafka", "up", "--secure", "--nodes", str(NODES), "--heap",
                         "256m", "--timeout", "180", *certs.flags(), *args],
                        env=env, capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stderr[-3000:] + up.stdout
        exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.M))
        assert exports["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert len(exports["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == NODES
        status = subprocess.run([TXMON, "kafka", "status", *args], env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(": up") == NODES, status.stdout

        service = settings_from(exports)
        topic = f"secure-cluster-{uuid.uuid4().hex[:8]}"
        admin = AdminClient(service.confluent())
        admin.create_topics([NewTopic(topic, 1, NODES)])[topic].result(30)
        # The answering node may learn of the new partition a moment after creation.
        part = wait_for(lambda: admin.list_topics(topic, timeout=10).topics[topic]
                        .partitions.get(0), 30, what=f"{topic}'s partition in the metadata")
        assert len(part.replicas) == NODES
        delivered, errors = produce(service, topic, b"over TLS")
        assert delivered, errors
        assert [r.value for r in consume_all(service, topic, expected=1, timeout=60)] == \
            [b"over TLS"]

        # TLS with the right CA but no SASL: the broker drops it.
        no_sasl = KafkaSettings(bootstrap=exports["KAFKA_BOOTSTRAP_SERVERS"],
                                security_protocol="SSL", ssl_cafile=exports["KAFKA_SSL_CAFILE"])
        delivered, errors = produce(no_sasl, topic, b"stranger", refused=True)
        assert not delivered and errors, errors
    finally:
        down = subprocess.run([TXMON, "kafka", "down", *args], env=env, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0 and f"{NODES} of {NODES}" in down.stdout, down.stdout
