"""`txmon kafka up --nodes 3`'s cluster: three combined nodes, topics replicated three
times with two in sync, a node lost and healed."""

from __future__ import annotations

import os

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from support.kafka import leaders
from support.obs import wait_for

from devstack.kafka.cluster import LocalCluster
from devstack.kafka.server import BrokerOptions
from devstack.processes import free_ports
from txmon.contracts import Topics
from txmon.kafka.admin import ensure_topics, pipeline_topics
from txmon.settings import KafkaSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def cluster(tmp_path):
    ports = free_ports(6)
    made = LocalCluster(tmp_path / "kafka", options=BrokerOptions(
        heap="256m", owner_pid=os.getpid()), ports=(ports[:3], ports[3:]))
    made.up(timeout=180)
    yield made
    made.down(timeout=20)


def test_three_nodes_replicate_txmons_topics_and_heal(cluster):
    status = cluster.status()
    assert status.up and status.controller in {1, 2, 3}, status.describe()
    settings = KafkaSettings(bootstrap=cluster.bootstrap)
    names = Topics(**{f: f"c-{f.replace('_', '-')}" for f in Topics.model_fields})
    ensure_topics(settings, pipeline_topics(names))
    leaders(settings, names.transactions)  # the metadata has every partition
    admin = AdminClient(settings.confluent())
    meta = admin.list_topics(timeout=10).topics[names.transactions]
    assert meta.partitions and all(len(p.replicas) == 3 for p in meta.partitions.values())
    config = admin.describe_configs([ConfigResource("topic", names.transactions)])
    (entries,) = [f.result() for f in config.values()]
    assert entries["min.insync.replicas"].value == "2"

    cluster.node(2).kill()
    wait_for(lambda: cluster.status().under_replicated > 0, 60, what="under-replicated")
    down = cluster.status()
    assert [n.node_id for n in down.nodes if not n.pid] == [2], down.describe()
    cluster.node(2).up(timeout=180)
    wait_for(lambda: cluster.status().under_replicated == 0, 120, what="ISR healed")
