"""`txmon process`: the streaming worker."""

from __future__ import annotations

import argparse

from txmon.settings import ProcessorSettings, flag_help, with_flags

P = ProcessorSettings


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


def run_process(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from processor.app import create_worker
    from processor.merging import merge_topics
    from txmon.contracts import topics
    from txmon.kafka.admin import ensure_topics, partition_count, pipeline_topics, wait_for_kafka
    from txmon.settings import KafkaSettings

    cfg = with_flags(ProcessorSettings.from_env(), args)
    settings = KafkaSettings.from_env()
    names = topics()
    wait_for_kafka(settings, cfg.kafka_wait_s)
    ensure_topics(settings, pipeline_topics(names) + merge_topics(cfg))
    partitions = partition_count(settings, names.transactions)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.metrics_host)
    worker = create_worker(cfg, settings, names, partitions,
                           loglevel="DEBUG" if args.verbose else "INFO")
    worker.execute_from_commandline()
    return 0
