"""`txmon api` (HTTP ingest, history and the live page) and `txmon alerts`."""

from __future__ import annotations

import argparse

from txmon.settings import ApiSettings, export, flag_help, with_flags

A = ApiSettings


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("alerts", help="print alerts from the alerts topic")
    a.add_argument("--follow", "-f", action="store_true", help="keep printing new alerts")
    a.add_argument("--from-start", action="store_true",
                   help="start from the oldest alert (default with --follow: only new ones)")
    a.add_argument("--json", action="store_true", help="print raw JSON records")
    a.set_defaults(func=run_alerts)

    api = sub.add_parser("api", help="serve the HTTP API (/check, /transactions, "
                                     "/history_counts, /alerts)")
    api.add_argument("--host", help=flag_help(A, "host", "bind address"))
    api.add_argument("--port", type=int, help=flag_help(A, "port", "port"))
    api.add_argument("--access-log", action=argparse.BooleanOptionalAction,
                     help=flag_help(A, "access_log", "log every request (costs about a third "
                                    "of the request rate)"))
    api.add_argument("--workers", type=int,
                     help=flag_help(A, "workers", "uvicorn worker processes"))
    api.add_argument("--max-batch-bytes", type=int, dest="max_batch_bytes",
                     help=flag_help(A, "max_batch_bytes", "largest POST /transactions body"))
    api.set_defaults(func=run_api)



def run_alerts(args: argparse.Namespace) -> int:
    from api.follow import follow_alerts

    return follow_alerts(args)


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from txmon.errors import UserError
    from txmon.kafka.admin import require_kafka
    from txmon.settings import KafkaSettings

    cfg = with_flags(ApiSettings.from_env(), args)
    if cfg.workers < 1:
        raise UserError(f"--workers/TXMON_API_WORKERS={cfg.workers}: at least 1")
    require_kafka(KafkaSettings.from_env())
    # Each worker process builds its app from the environment (uvicorn imports the
    # factory there), so the flags travel to them as their variables.
    export(cfg)
    # uvloop and httptools when installed (they are dependencies): about twice the
    # requests a second of the pure-Python loop and parser.
    uvicorn.run("api.app:create_api", factory=True, workers=cfg.workers,
                host=cfg.host, port=cfg.port, log_level="info", access_log=cfg.access_log)
    return 0
