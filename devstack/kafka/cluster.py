"""A local KRaft cluster of N nodes, each a LocalKafka in its own directory.

Every node is broker and controller (combined mode), so three JVMs are a whole cluster
with a quorum of three voters that survives one node down; separate controllers would
need three more JVMs, which a 2-core test machine cannot spare. Node i (from 1) listens
on `port + 10 * (i - 1)` for clients and `controller_port + 10 * (i - 1)` for the quorum,
so the defaults (9092, 9094) give 9092/9102/9112 and 9094/9104/9114, clear of
Alertmanager's 9093. All nodes' storage is formatted with one cluster id, kept in
`cluster.json` with the layout, so `down`, `status` and `logs` find the nodes again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from devstack.kafka.server import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    BrokerOptions,
    LocalKafka,
    _random_cluster_id,
)
from txmon.errors import UserError

__all__ = ["ClusterStatus", "LocalCluster", "NodeStatus", "is_cluster"]

PORT_STEP = 10
LAYOUT = "cluster.json"


def is_cluster(data_dir: Path) -> bool:
    return (Path(data_dir) / LAYOUT).is_file()


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    pid: int | None
    answering: bool
    bootstrap: str
    leaders: int = 0

    def describe(self, controller: int | None) -> str:
        state = "up" if self.pid and self.answering else (
            "not answering" if self.pid else "down")
        role = ", active controller" if controller == self.node_id else ""
        return (f"node {self.node_id}: {state}{role}, {self.bootstrap}, pid {self.pid or '-'}"
                f", leader of {self.leaders} partitions")


@dataclass(frozen=True)
class ClusterStatus:
    nodes: list[NodeStatus]
    controller: int | None
    under_replicated: int

    @property
    def up(self) -> bool:
        return all(n.pid and n.answering for n in self.nodes)

    def describe(self) -> str:
        lines = [n.describe(self.controller) for n in self.nodes]
        lines.append(f"under-replicated partitions: {self.under_replicated}")
        return "\n".join(lines)


class LocalCluster:
    """`nodes` LocalKafka nodes under `data_dir/node-<id>`; `options` apply to each."""

    def __init__(self, data_dir: Path | str, nodes: int = 3, port: int = 9092,
                 controller_port: int = 9094, options: BrokerOptions | None = None,
                 ports: tuple[list[int], list[int]] | None = None):
        """`ports`: explicit (client, controller) ports per node instead of the steps
        from `port` and `controller_port` (tests take free ones)."""
        self.data_dir = Path(data_dir)
        layout = self._read_layout()
        if layout:
            ports = (layout["ports"], layout["controller_ports"])
        elif ports is None:
            ports = ([port + PORT_STEP * i for i in range(nodes)],
                     [controller_port + PORT_STEP * i for i in range(nodes)])
        self.ports, self.controller_ports = ports
        self.count = len(self.ports)
        if self.count < 1 or len(self.controller_ports) != self.count:
            raise UserError(f"a cluster needs at least one node, each with two ports: {ports}")
        self.cluster_id = layout["cluster_id"] if layout else _random_cluster_id()
        voters = {i + 1: p for i, p in enumerate(self.controller_ports)}
        base = options or BrokerOptions()
        self.nodes = [
            LocalKafka(self.data_dir / f"node-{i}", self.ports[i - 1], voters[i],
                       replace(base, node_id=i, voters=voters, cluster_id=self.cluster_id))
            for i in voters
        ]

    def _read_layout(self) -> dict | None:
        path = self.data_dir / LAYOUT
        return json.loads(path.read_text()) if path.is_file() else None

    def _write_layout(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / LAYOUT).write_text(json.dumps({
            "ports": self.ports, "controller_ports": self.controller_ports,
            "cluster_id": self.cluster_id}, indent=1) + "\n")

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        if not 1 <= node_id <= self.count:
            raise UserError(f"no node {node_id}: this cluster has nodes 1-{self.count}")
        return self.nodes[node_id - 1]

    def up(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start every node not running, together; seconds until all answer."""
        started = time.monotonic()
        self._write_layout()
        spawned = [(n, *n.spawn()) for n in self.nodes]
        for node, pid, new in spawned:
            node.wait_ready(pid, new, started + timeout)
        return time.monotonic() - started

    def down(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Stop every node, all at once: one by one, the last nodes lose their quorum
        and their controlled shutdown waits for it until SIGKILL. How many were running."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.nodes)) as pool:
            return sum(pool.map(lambda node: node.down(timeout), self.nodes))

    def status(self) -> ClusterStatus:
        states = [node.status() for node in self.nodes]
        leaders, controller, under = self._metadata()
        return ClusterStatus(
            [NodeStatus(node.node_id, s.pid, s.answering, node.bootstrap,
                        leaders.get(node.node_id, 0)) for node, s in zip(self.nodes, states,
                                                                         strict=True)],
            controller, under)

    def _metadata(self) -> tuple[dict[int, int], int | None, int]:
        """Partitions led per node, the active controller and the under-replicated
        partitions, from whichever node answers."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        from txmon.kafka import probe_logger

        live = [n for n in self.nodes if n.pid() is not None]
        if not live:
            return {}, None, 0
        admin = AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in live),
                             "logger": probe_logger(), **live[0].client_config})
        try:
            meta = admin.list_topics(timeout=5)
            cluster = admin.describe_cluster(request_timeout=5).result()
        except KafkaException:
            return {}, None, 0
        leaders: dict[int, int] = {}
        under = 0
        for topic in meta.topics.values():
            for part in topic.partitions.values():
                leaders[part.leader] = leaders.get(part.leader, 0) + 1
                under += len(part.isrs) < len(part.replicas)
        controller = cluster.controller.id if cluster.controller else None
        return leaders, controller, under

    def __enter__(self) -> LocalCluster:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()
