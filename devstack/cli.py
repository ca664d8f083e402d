"""`txmon kafka` and `txmon monitoring`: the local services tests and the demo run."""

from __future__ import annotations

import argparse

from devstack.kafka import cli as kafka_cli


def register(sub: argparse._SubParsersAction) -> None:
    kafka_cli.register(sub)
    p = sub.add_parser("monitoring", help="local Prometheus and Alertmanager: up, down, status")
    p.add_argument("action", choices=("up", "down", "status"))
    p.set_defaults(func=run_monitoring)


def run_monitoring(args) -> int:
    from devstack import monitoring

    if args.action == "up":
        for line in monitoring.up():
            print(line)
        return 0
    if args.action == "down":
        for line in monitoring.down():
            print(line)
        return 0
    lines, all_up = monitoring.status()
    for line in lines:
        print(line)
    return 0 if all_up else 3
