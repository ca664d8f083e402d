"""`txmon demo up | down | status` (`make demo`, `make down`)."""

from __future__ import annotations

import argparse

from demo.stack import DemoConfig, down, status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the whole pipeline with simulated traffic and an incident (make demo)",
        description="up: fresh broker, model, worker, API, exporter, notify, Prometheus and "
        "Alertmanager where installed, then real-time simulated traffic with an injected "
        "incident, printing minutes, alerts and notifications. Variables: DEMO_SECONDS "
        "(210), DEMO_FOREVER (0), DEMO_TPS (20), DEMO_RATE, DEMO_INCIDENT "
        "(denied:x4:2m30s@30s, moved to the next minute boundary), DEMO_BACKFILL_MINUTES "
        "(30), DEMO_TRAIN_DAYS (1), DEMO_MONITORING (1), DEMO_SEED (7).")
    actions = p.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    u = actions.add_parser("up", help="start everything and stream (ends by itself)")
    u.add_argument("--seconds", type=float, help="real-time streaming (DEMO_SECONDS, 210)")
    u.add_argument("--forever", action="store_true", help="keep streaming (DEMO_FOREVER=1)")
    u.add_argument("--incident", help="producer --incident spec (DEMO_INCIDENT)")
    u.add_argument("--tps", type=float, help="transactions/s at this hour (DEMO_TPS, 20)")
    u.set_defaults(func=run_up)
    d = actions.add_parser("down", help="stop everything the demo started (safe twice)")
    d.set_defaults(func=lambda args: down())
    s = actions.add_parser("status", help="what the demo runs (exit 0 all up, 3 not)")
    s.set_defaults(func=lambda args: status())


def run_up(args: argparse.Namespace) -> int:
    import dataclasses

    from demo.run import up

    cfg = DemoConfig.from_env()
    overrides = {"seconds": args.seconds, "incident": args.incident, "tps": args.tps}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.forever:
        cfg = dataclasses.replace(cfg, forever=True)
    return up(cfg)
