"""`txmon process`, `txmon alerts`, `txmon api`."""

from __future__ import annotations

import argparse
import dataclasses

from txmon.config import env_int, env_str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("process", help="run the streaming worker (windows, scoring, alerts)")
    p.add_argument("--lateness", type=float, dest="lateness_s",
                   help="allowed lateness in seconds (TXMON_ALLOWED_LATENESS_SECONDS, 10)")
    p.add_argument("--idle-timeout", type=float, dest="idle_timeout_s",
                   help="seconds of silence before wall-clock time closes windows "
                        "(TXMON_IDLE_TIMEOUT_SECONDS, 15)")
    p.add_argument("--model", dest="model_path",
                   help="model file from `txmon train` (TXMON_MODEL_PATH)")
    p.add_argument("--metrics-port", type=int, dest="metrics_port",
                   help="port of /metrics, 0 to disable (TXMON_PROCESSOR_METRICS_PORT, 9109)")
    p.add_argument("--data-dir", dest="data_dir",
                   help="Faust data dir (TXMON_PROCESSOR_DATA_DIR)")
    p.set_defaults(func=run_process)

    a = sub.add_parser("alerts", help="print alerts from the alerts topic")
    a.add_argument("--follow", "-f", action="store_true", help="keep printing new alerts")
    a.add_argument("--from-start", action="store_true",
                   help="start from the oldest alert (default with --follow: only new ones)")
    a.add_argument("--json", action="store_true", help="print raw JSON records")
    a.set_defaults(func=run_alerts)

    api = sub.add_parser("api", help="serve the HTTP API (/check, /history_counts, /alerts)")
    api.add_argument("--host", default=env_str("TXMON_API_HOST", "127.0.0.1"),
                     help="bind address (TXMON_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, default=env_int("TXMON_API_PORT", 8000),
                     help="port (TXMON_API_PORT, 8000)")
    api.add_argument("--access-log", action=argparse.BooleanOptionalAction,
                     default=env_str("TXMON_API_ACCESS_LOG", "0") == "1",
                     help="log every request (costs about a third of the request rate)")
    api.set_defaults(func=run_api)


def run_process(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from processor.app import create_worker, faust_topics
    from processor.config import ProcessorConfig
    from txmon.config import KafkaSettings
    from txmon.contracts import topics
    from txmon.kafka.admin import ensure_topics, partition_count, pipeline_topics, wait_for_kafka

    overrides = {k: v for k, v in vars(args).items()
                 if k in ProcessorConfig.__dataclass_fields__ and v is not None}
    cfg = dataclasses.replace(ProcessorConfig(), **overrides)
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

    from processor.api.app import create_api
    from txmon.config import KafkaSettings
    from txmon.kafka.admin import require_kafka

    require_kafka(KafkaSettings.from_env())
    # uvloop and httptools when installed (they are dependencies): about twice the
    # requests a second of the pure-Python loop and parser.
    uvicorn.run(create_api(), host=args.host, port=args.port, log_level="info",
                access_log=args.access_log)
    return 0
