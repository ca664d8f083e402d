"""`txmon process`, `txmon alerts`, `txmon api`."""

from __future__ import annotations

import argparse

from txmon.settings import ApiSettings, ProcessorSettings, export, flag_help, with_flags

P, A = ProcessorSettings, ApiSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="run the streaming worker (windows, scoring, alerts)")
    p.add_argument("--lateness", type=float, dest="lateness_s",
                   help=flag_help(P, "lateness_s", "allowed lateness in seconds"))
    p.add_argument("--idle-timeout", type=float, dest="idle_timeout_s",
                   help=flag_help(P, "idle_timeout_s",
                                  "seconds of silence before wall-clock time closes windows"))
    p.add_argument("--model", dest="model_path",
                   help=flag_help(P, "model_path", "model file from `txmon train`"))
    p.add_argument("--metrics-port", type=int, dest="metrics_port",
                   help=flag_help(P, "metrics_port", "port of /metrics, 0 to disable"))
    p.add_argument("--data-dir", dest="data_dir",
                   help=flag_help(P, "data_dir", "Faust data dir"))
    p.set_defaults(func=run_process)

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


def run_process(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from processor.app import create_worker, faust_topics
    from txmon.config import KafkaSettings
    from txmon.contracts import topics
    from txmon.kafka.admin import ensure_topics, partition_count, pipeline_topics, wait_for_kafka

    cfg = with_flags(ProcessorSettings.from_env(), args)
    settings = KafkaSettings.from_env()
    names = topics()
    wait_for_kafka(settings, cfg.kafka_wait_s)
    ensure_topics(settings, pipeline_topics(names) + faust_topics(cfg))
    partitions = partition_count(settings, names.transactions)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.metrics_host)
    worker = create_worker(cfg, settings, names, partitions,
                           loglevel="DEBUG" if args.verbose else "INFO")
    worker.execute_from_commandline()
    return 0


def run_alerts(args: argparse.Namespace) -> int:
    from processor.api.follow import follow_alerts

    return follow_alerts(args)


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from txmon.config import KafkaSettings
    from txmon.errors import UserError
    from txmon.kafka.admin import require_kafka

    cfg = with_flags(ApiSettings.from_env(), args)
    if cfg.workers < 1:
        raise UserError(f"--workers/TXMON_API_WORKERS={cfg.workers}: at least 1")
    require_kafka(KafkaSettings.from_env())
    # Each worker process builds its app from the environment (uvicorn imports the
    # factory there), so the flags travel to them as their variables.
    export(cfg)
    # uvloop and httptools when installed (they are dependencies): about twice the
    # requests a second of the pure-Python loop and parser.
    uvicorn.run("processor.api.app:create_api", factory=True, workers=cfg.workers,
                host=cfg.host, port=cfg.port, log_level="info", access_log=cfg.access_log)
    return 0
