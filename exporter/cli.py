"""Subcommands of the observability side: export, notify, grafana sync, report."""

from __future__ import annotations

import argparse

from txmon.settings import (
    ExporterSettings,
    GrafanaSettings,
    NotifySettings,
    ProcessorSettings,
    flag_help,
    with_flags,
)

E, N, G = ExporterSettings, NotifySettings, GrafanaSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="serve pipeline metrics for Prometheus (/metrics)")
    p.add_argument("--host", help=flag_help(E, "host", "bind address"))
    p.add_argument("--port", type=int, help=flag_help(E, "port", "port of /metrics"))
    p.add_argument("--group", help=flag_help(E, "group", "the exporter's own consumer group"))
    p.add_argument("--processor-group", help=flag_help(
        ProcessorSettings, "app_id", "consumer group whose lag is reported"))
    p.add_argument("--lag-interval", type=float,
                   help=flag_help(E, "lag_interval", "seconds between consumer-lag queries"))
    p.set_defaults(func=run_export)

    p = sub.add_parser("notify", help="Alertmanager webhook receiver: print, forward to Slack")
    p.add_argument("--host", help=flag_help(N, "host", "bind address"))
    p.add_argument("--port", type=int, help=flag_help(N, "port", "port"))
    p.add_argument("--slack-url", help=flag_help(
        N, "slack_url", "Slack incoming webhook; unset: print only"))
    p.set_defaults(func=run_notify)

    g = sub.add_parser("grafana", help="Grafana without provisioning").add_subparsers(
        dest="grafana_command", required=True, metavar="ACTION")
    p = g.add_parser("sync", help="upload dashboards, annotate incidents from the alerts topic")
    p.add_argument("--url", help=flag_help(G, "url", "Grafana base URL"))
    p.add_argument("--token", help=flag_help(G, "token", "service account token"))
    p.add_argument("--prometheus-url", help=flag_help(
        G, "prometheus_url", "create the txmon-prometheus datasource pointing here when missing"))
    p.add_argument("--folder-uid", default=None, help="Grafana folder for the dashboards")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=run_grafana_sync)

    p = sub.add_parser("report", help="PNG of per-status counts per minute, incidents shaded")
    p.add_argument("--from", dest="start", help="ISO time, UTC by default (default: first)")
    p.add_argument("--to", dest="end", help="ISO time, exclusive (default: last window)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--title", default=None)
    p.set_defaults(func=run_report)



def run_export(args) -> int:
    from exporter.consume import run_exporter
    from txmon.contracts import Topics
    from txmon.kafka.admin import require_kafka
    from txmon.settings import KafkaSettings

    cfg = with_flags(ExporterSettings.from_env(), args)
    processor_group = args.processor_group or ProcessorSettings.from_env().app_id
    settings = KafkaSettings.from_env()
    require_kafka(settings)
    return run_exporter(settings, Topics.from_env(), host=cfg.host,
                        port=cfg.port, group=cfg.group, processor_group=processor_group,
                        lag_interval=cfg.lag_interval)


def run_notify(args) -> int:
    from exporter.notify import serve

    cfg = with_flags(NotifySettings.from_env(), args)
    return serve(cfg.host, cfg.port, cfg.slack_url)


def run_grafana_sync(args) -> int:
    from exporter.grafana_sync import run_sync
    from txmon.contracts import Topics
    from txmon.errors import UserError
    from txmon.settings import KafkaSettings

    cfg = with_flags(GrafanaSettings.from_env(), args)
    if not cfg.url:
        raise UserError("--url (or GRAFANA_URL) is required")
    try:
        result = run_sync(cfg, KafkaSettings.from_env(), Topics.from_env(),
                          folder_uid=args.folder_uid, timeout=args.timeout)
    except UserError:
        raise
    except Exception as exc:  # grafana-client / network errors: one line, not a traceback
        raise UserError(f"Grafana at {cfg.url}: {exc}") from None
    print(f"dashboards uploaded: {result.dashboards}; datasource: {result.datasource}; "
          f"incident annotations: {result.annotations_created} created, "
          f"{result.annotations_updated} updated, {result.annotations_unchanged} unchanged")
    return 0


def run_report(args) -> int:
    from pathlib import Path

    from exporter.consume import read_topic
    from exporter.report import parse_time, render
    from txmon.contracts import Alert, Topics, WindowCount
    from txmon.kafka.admin import require_kafka
    from txmon.settings import KafkaSettings

    settings, names = KafkaSettings.from_env(), Topics.from_env()
    require_kafka(settings)
    bad: list = []
    windows = read_topic(settings, names.window_counts, WindowCount,
                         on_bad=lambda v, e: bad.append(e))
    alerts = read_topic(settings, names.alerts, Alert, on_bad=lambda v, e: bad.append(e))
    summary = render(windows, alerts, Path(args.out),
                     start=parse_time(args.start) if args.start else None,
                     end=parse_time(args.end) if args.end else None, title=args.title)
    print(f"{summary['out']}: {summary['windows']} windows, {summary['transactions']:,} "
          f"transactions, {summary['incidents']} incidents, {summary['alerts']} alerts"
          + (f" ({len(bad)} undecodable records skipped)" if bad else ""))
    return 0
