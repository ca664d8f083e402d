"""`txmon demo up | down | status` (`make demo`, `make down`)."""

from __future__ import annotations

import argparse

from demo.stack import down, status
from txmon.settings import DemoSettings, flag_help, with_flags


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the whole pipeline with simulated traffic and an incident (make demo)",
        description="up: fresh broker, model, worker, API, exporter, notify, Prometheus and "
        "Alertmanager where installed, then real-time simulated traffic with an injected "
        "incident (moved to the next minute boundary), printing minutes, alerts and "
        "notifications. Every DEMO_* variable is in the README's configuration table.")
    actions = p.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    u = actions.add_parser("up", help="start everything and stream (ends by itself)")
    D = DemoSettings
    u.add_argument("--seconds", type=float, help=flag_help(D, "seconds", "real-time streaming"))
    u.add_argument("--forever", action="store_const", const=True,
                   help=flag_help(D, "forever", "keep streaming"))
    u.add_argument("--incident", help=flag_help(D, "incident", "producer --incident spec"))
    u.add_argument("--tps", type=float, help=flag_help(D, "tps", "transactions/s at this hour"))
    u.set_defaults(func=run_up)
    d = actions.add_parser("down", help="stop everything the demo started (safe twice)")
    d.set_defaults(func=lambda args: down())
    s = actions.add_parser("status", help="what the demo runs (exit 0 all up, 3 not)")
    s.set_defaults(func=lambda args: status())


def run_up(args: argparse.Namespace) -> int:
    from demo.run import up

    return up(with_flags(DemoSettings.from_env(), args))
