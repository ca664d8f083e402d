"""Subcommands of the observability side: export, notify, grafana sync, report, monitoring."""

from __future__ import annotations

import argparse
import os

from txmon.config import env_float, env_int, env_str


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="serve pipeline metrics for Prometheus (/metrics)")
    p.add_argument("--host", default=env_str("TXMON_EXPORTER_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=env_int("TXMON_EXPORTER_PORT", 9108))
    p.add_argument("--group", default=env_str("TXMON_EXPORTER_GROUP", "txmon-exporter"),
                   help="the exporter's own consumer group (default: %(default)s)")
    p.add_argument("--processor-group", default=env_str("TXMON_APP_ID", "txmon-processor"),
                   help="consumer group whose lag is reported (default: %(default)s)")
    p.add_argument("--lag-interval", type=float,
                   default=env_float("TXMON_EXPORTER_LAG_INTERVAL", 10.0),
                   help="seconds between consumer-lag queries (default: %(default)s)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("notify", help="Alertmanager webhook receiver: print, forward to Slack")
    p.add_argument("--host", default=env_str("TXMON_NOTIFY_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=env_int("TXMON_NOTIFY_PORT", 9095))
    p.add_argument("--slack-url", default=os.environ.get("SLACK_WEBHOOK_URL"),
                   help="Slack incoming webhook (default: $SLACK_WEBHOOK_URL; unset: print only)")
    p.set_defaults(func=run_notify)

    g = sub.add_parser("grafana", help="Grafana without provisioning").add_subparsers(
        dest="grafana_command", required=True, metavar="ACTION")
    p = g.add_parser("sync", help="upload dashboards, annotate incidents from the alerts topic")
    p.add_argument("--url", default=os.environ.get("GRAFANA_URL"), help="Grafana base URL")
    p.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                   help="service account token (default: $GRAFANA_TOKEN)")
    p.add_argument("--prometheus-url", default=os.environ.get("TXMON_PROMETHEUS_URL"),
                   help="create the txmon-prometheus datasource pointing here when missing")
    p.add_argument("--folder-uid", default=None, help="Grafana folder for the dashboards")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(func=run_grafana_sync)

    p = sub.add_parser("report", help="PNG of per-status counts per minute, incidents shaded")
    p.add_argument("--from", dest="start", help="ISO time, UTC by default (default: first)")
    p.add_argument("--to", dest="end", help="ISO time, exclusive (default: last window)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--title", default=None)
    p.set_defaults(func=run_report)

    p = sub.add_parser("monitoring", help="local Prometheus and Alertmanager: up, down, status")
    p.add_argument("action", choices=("up", "down", "status"))
    p.set_defaults(func=run_monitoring)


def run_export(args) -> int:
    from exporter.consume import run_exporter
    from txmon.config import KafkaSettings
    from txmon.contracts import Topics
    from txmon.kafka.admin import require_kafka

    settings = KafkaSettings.from_env()
    require_kafka(settings)
    return run_exporter(settings, Topics.from_env(), host=args.host,
                        port=args.port, group=args.group, processor_group=args.processor_group,
                        lag_interval=args.lag_interval)


def run_notify(args) -> int:
    from exporter.notify import serve

    return serve(args.host, args.port, args.slack_url)


def run_grafana_sync(args) -> int:
    from exporter.grafana_sync import run_sync
    from txmon.config import KafkaSettings
    from txmon.contracts import Topics
    from txmon.errors import UserError

    if not args.url:
        raise UserError("--url (or GRAFANA_URL) is required")
    try:
        result = run_sync(args.url, args.token, KafkaSettings.from_env(), Topics.from_env(),
                          prometheus_url=args.prometheus_url, folder_uid=args.folder_uid,
                          timeout=args.timeout)
    except UserError:
        raise
    except Exception as exc:  # grafana-client / network errors: one line, not a traceback
        raise UserError(f"Grafana at {args.url}: {exc}") from None
    print(f"dashboards uploaded: {result.dashboards}; datasource: {result.datasource}; "
          f"incident annotations: {result.annotations_created} created, "
          f"{result.annotations_updated} updated, {result.annotations_unchanged} unchanged")
    return 0


def run_report(args) -> int:
    from pathlib import Path

    from exporter.consume import read_topic
    from exporter.report import parse_time, render
    from txmon.config import KafkaSettings
    from txmon.contracts import Alert, Topics, WindowCount
    from txmon.kafka.admin import require_kafka

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


def run_monitoring(args) -> int:
    from exporter import monitoring

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
