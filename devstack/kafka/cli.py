"""`txmon kafka fetch | up | down | status | logs`: the local broker from the shell."""

from __future__ import annotations

import argparse
import sys
import time

from txmon.settings import BrokerSettings, flag_help

B = BrokerSettings

EXIT_DOWN = 3  # like `systemctl status` / LSB: program is not running


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "kafka",
        help="run a local Apache Kafka broker (KRaft, from Maven Central jars)",
        description="A single-node Kafka 4.x broker bound to 127.0.0.1, for the demo and tests.",
    )
    sub = parser.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", help=flag_help(
            B, "data_dir", "broker data, config, logs and pid file"))
        p.add_argument("--port", type=int, help=flag_help(B, "port", "client port"))
        p.add_argument("--controller-port", type=int, help=flag_help(
            B, "controller_port", "KRaft controller port, since Alertmanager owns 9093"))

    p = sub.add_parser("fetch", help="download Kafka's jars with mvn into the cache")
    p.set_defaults(func=run_fetch)

    p = sub.add_parser("up", help="start the broker (fetching Kafka first if needed)")
    common(p)
    p.add_argument("--heap", help=flag_help(B, "heap", "JVM heap"))
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the broker to answer (default 120)")
    p.add_argument("--nodes", type=int, default=1,
                   help="a local cluster of N nodes (combined broker+controller each; ports "
                        "step by 10 from --port and --controller-port); default 1")
    p.add_argument("--secure", action="store_true",
                   help="SASL/SCRAM-SHA-512 with ACLs; passwords generated into the data dir "
                        "and printed as env exports (use a new data dir)")
    p.add_argument("--tls-cert", help=flag_help(
        B, "tls_cert", "with --secure: TLS (SASL_SSL) with this PEM certificate"))
    p.add_argument("--tls-key", help=flag_help(B, "tls_key", "its PEM private key"))
    p.add_argument("--tls-ca", help=flag_help(B, "tls_ca", "the PEM CA clients trust"))
    p.set_defaults(func=run_up)

    p = sub.add_parser("down", help="stop the broker and free its ports")
    common(p)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait after SIGTERM before SIGKILL (default 30)")
    p.set_defaults(func=run_down)

    p = sub.add_parser("status", help="is the broker running and answering? (exit 0 up, 3 not)")
    common(p)
    p.set_defaults(func=run_status)

    p = sub.add_parser("logs", help="show the broker's log")
    common(p)
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    p.add_argument("--node", type=int, default=1, help="a cluster's node (default 1)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=run_logs)


def _secure(args: argparse.Namespace, data_dir, nodes: list):
    """With --secure, the data dir's credentials (made now if new) and TLS files; without,
    whatever security the data dir already has. Applied to every node; None if none."""
    from devstack.kafka import secure, tls

    env = B.from_env()
    files = None
    if hasattr(args, "tls_cert"):  # `up`
        files = tls.requested(args.tls_cert or env.tls_cert, args.tls_key or env.tls_key,
                              args.tls_ca or env.tls_ca, args.secure)
    sec = secure.prepare(data_dir, files) if getattr(args, "secure", False) \
        else secure.load(data_dir)
    if sec is not None:
        for node in nodes:
            secure.make_secure(node, sec)
    return sec


def _cluster(args: argparse.Namespace, heap: str | None = None):
    """The cluster in the data dir (or to create there with --nodes > 1), else None."""
    from devstack.kafka.cluster import LocalCluster, is_cluster
    from devstack.kafka.server import BrokerOptions

    env = B.from_env()
    data_dir = args.data_dir or env.data_dir
    nodes = getattr(args, "nodes", 1)
    if nodes <= 1 and not is_cluster(data_dir):
        return None, None
    cluster = LocalCluster(data_dir, nodes, args.port or env.port,
                           args.controller_port or env.controller_port,
                           BrokerOptions(heap=heap))
    return cluster, _secure(args, cluster.data_dir, cluster.nodes)


def _broker(args: argparse.Namespace, heap: str | None = None):
    """(the broker or the cluster's node to act on, its security or None)."""
    from devstack.kafka.server import BrokerOptions, LocalKafka

    cluster, sec = _cluster(args, heap)
    if cluster is not None:
        return cluster.node(getattr(args, "node", 1)), sec
    kafka = LocalKafka(
        data_dir=args.data_dir, port=args.port, controller_port=args.controller_port,
        options=BrokerOptions(heap=heap),
    )
    return kafka, _secure(args, kafka.data_dir, [kafka])


def _print_secure(sec, data_dir, bootstrap: str) -> None:
    """Once the broker answers: its ACLs, then how services connect."""
    from devstack.kafka import secure

    secure.apply_acls(bootstrap, sec)
    how = "SASL_SSL (TLS)" if sec.tls_dir else "SASL_PLAINTEXT"
    print(f"# {how} with SCRAM-SHA-512 and ACLs; passwords in "
          f"{secure.credentials_path(data_dir)}. For the services:")
    print(secure.shell_exports(sec.env_exports(bootstrap, secure.SERVICE)))


def run_fetch(args: argparse.Namespace) -> int:
    from devstack.kafka.fetch import fetch

    result = fetch()
    how = "cached" if result.from_cache else f"downloaded in {result.seconds:.1f}s"
    print(f"Kafka {result.version}: {result.jars} jars {how} in {result.libs}")
    return 0


def run_up(args: argparse.Namespace) -> int:
    cluster, sec = _cluster(args, heap=args.heap)
    if cluster is not None:
        seconds = cluster.up(timeout=args.timeout)
        print(f"Kafka cluster of {cluster.count} nodes up at {cluster.bootstrap} "
              f"(all answered after {seconds:.1f}s; data {cluster.data_dir})")
        if sec is not None:
            _print_secure(sec, cluster.data_dir, cluster.bootstrap)
        return 0
    kafka, sec = _broker(args, heap=args.heap)
    result = kafka.up(timeout=args.timeout)
    if result.started:
        print(f"Kafka {kafka.version} up at {result.bootstrap} (pid {result.pid}, "
              f"answered after {result.seconds:.1f}s; data {kafka.data_dir})")
    else:
        print(f"Kafka already running at {result.bootstrap} (pid {result.pid}; "
              f"data {kafka.data_dir})")
    if sec is not None:
        _print_secure(sec, kafka.data_dir, kafka.bootstrap)
    return 0


def run_down(args: argparse.Namespace) -> int:
    cluster, _ = _cluster(args)
    if cluster is not None:
        stopped = cluster.down(timeout=args.timeout)
        print(f"Kafka cluster stopped ({stopped} of {cluster.count} nodes were running)")
        return 0
    kafka, _ = _broker(args)
    if kafka.down(timeout=args.timeout):
        print(f"Kafka stopped; port {kafka.port} is free")
    else:
        print(f"Kafka was not running (data {kafka.data_dir})")
    return 0


def run_status(args: argparse.Namespace) -> int:
    cluster, _ = _cluster(args)
    status = cluster.status() if cluster is not None else _broker(args)[0].status()
    print(status.describe())
    return 0 if status.up else EXIT_DOWN


def run_logs(args: argparse.Namespace) -> int:
    from devstack.kafka.server import tail
    from txmon.errors import UserError

    kafka, _ = _broker(args)
    path = kafka.log_file
    if not path.is_file():
        raise UserError(f"no broker log yet at {path} (has `txmon kafka up` run?)")
    for line in tail(path, max(args.lines, 0)):
        print(line)
    if not args.follow:
        return 0
    sys.stdout.flush()
    fh = open(path, errors="replace")  # noqa: SIM115 - reopened on rotation
    fh.seek(0, 2)
    inode = path.stat().st_ino
    try:
        while True:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
                continue
            time.sleep(0.3)
            try:
                if path.stat().st_ino != inode:  # rolled over by log4j
                    fh.close()
                    fh = open(path, errors="replace")  # noqa: SIM115
                    inode = path.stat().st_ino
            except FileNotFoundError:
                pass
    finally:
        fh.close()
