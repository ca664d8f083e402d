"""Every setting txmon reads from the environment, declared once: its variable, its
default, what it is for and how its text is parsed.

Each group is a frozen dataclass whose `from_env()` parses only that group's variables,
so a malformed variable stops the command that needs it (one line naming it, exit 2)
and no other. CLI flags override the loaded group (`with_flags`), and the README's
configuration table is generated from the same fields (`python -m txmon.settings`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import ssl
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from txmon.errors import UserError
from txmon.kafka import librdkafka_logger

G = TypeVar("G")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
README_BEGIN = "<!-- settings:begin (generated: `python -m txmon.settings --update README.md`) -->"
README_END = "<!-- settings:end -->"


# Parsing ------------------------------------------------------------------------------


def parse_int(var: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{var}={raw!r} is not an integer") from None


def parse_float(var: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"{var}={raw!r} is not a number") from None


def parse_bool(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise UserError(f"{var}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def parse_port(var: str, raw: str) -> int:
    port = parse_int(var, raw)
    if not 0 <= port <= 65535:
        raise UserError(f"{var}={raw!r} is not a port (0-65535)")
    return port


def _parse_upper(var: str, raw: str) -> str:
    return raw.upper()


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "int": parse_int,
    "float": parse_float,
    "bool": parse_bool,
    "str": lambda var, raw: raw,
    "Path": lambda var, raw: Path(raw),
}


def setting(var: str, default: Any, doc: str, *, parse: Callable[[str, str], Any] | None = None,
            derive: Callable[[Mapping[str, str]], Any] | None = None,
            shown: str | None = None) -> Any:
    """A field read from `var`. `derive` computes a default that depends on other
    variables (the state dir); `shown` is how the README writes such a default."""
    meta = {"env": var, "doc": doc, "parse": parse, "derive": derive, "shown": shown}
    return field(default=default, metadata=meta)


def port_setting(var: str, default: int, doc: str) -> Any:
    return setting(var, default, doc, parse=parse_port)


def _parser(f: dataclasses.Field) -> Callable[[str, str], Any]:
    kind = str(f.type).removesuffix(" | None")
    return f.metadata["parse"] or _PARSERS[kind]


def load(cls: type[G], env: Mapping[str, str] | None = None) -> G:
    """One group from `env` (the process environment by default). An empty variable
    counts as unset, as a shell's `VAR= command` means."""
    env = os.environ if env is None else env
    values = {}
    for f in fields(cls):  # type: ignore[arg-type]
        var = f.metadata.get("env")
        if var is None:
            continue
        raw = env.get(var)
        if raw:
            values[f.name] = _parser(f)(var, raw)
        elif f.metadata["derive"]:
            values[f.name] = f.metadata["derive"](env)
    return cls(**values)


def with_flags(group: G, args: argparse.Namespace) -> G:
    """The group with every flag the user gave (not None) in place of its value."""
    names = {f.name for f in fields(group)}  # type: ignore[arg-type]
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return dataclasses.replace(group, **given)  # type: ignore[type-var]


def export(group: Any, env: dict[str, str] | None = None) -> None:
    """Write a loaded group (flags applied) back to its variables, so that processes
    started from this one (uvicorn's workers, which build their app from the
    environment) see the flags too. Unset (None) values leave their variable alone."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    for f in fields(group):
        value = getattr(group, f.name)
        if "env" in f.metadata and value is not None:
            env[f.metadata["env"]] = ("1" if value else "0") if isinstance(value, bool) \
                else str(value)


def shown_default(f: dataclasses.Field) -> str:
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    value = f.default
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flag_help(cls: type, name: str, text: str) -> str:
    """A flag's help naming the variable it overrides and the default, from the model."""
    f = next(f for f in fields(cls) if f.name == name)
    return f"{text} ({f.metadata['env']}, default {shown_default(f)})".replace("%", "%%")


class _Group:
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None):
        return load(cls, env)


# Paths --------------------------------------------------------------------------------


def _xdg_state(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "txmon"


def _state(env: Mapping[str, str]) -> Path:
    return Paths.from_env(env).state_dir


@dataclass(frozen=True)
class Paths(_Group):
    state_dir: Path = setting(
        "TXMON_STATE_DIR", None, "local data, logs, pid files, default model: outside the repo",
        derive=_xdg_state, shown="$XDG_STATE_HOME/txmon")
    data_dir: Path = setting(
        "TXMON_DATA_DIR", None,
        "the reference CSVs; never copied into the project (see ../shared/README.md)",
        derive=lambda env: Path(__file__).resolve().parents[2] / "shared" / "data" / "cloudwalk",
        shown="../shared/data/cloudwalk")
    cache_dir: Path = setting(
        "TXMON_CACHE_DIR", None, "Kafka jars fetched with Maven, shared by every checkout",
        derive=lambda env: Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "txmon",
        shown="$XDG_CACHE_HOME/txmon")


def shared_data_dir() -> Path:
    return Paths.from_env().data_dir


def state_dir() -> Path:
    return Paths.from_env().state_dir


# Kafka --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaSettings(_Group):
    """How to reach the broker: bootstrap servers plus optional SASL/TLS, passed to both
    client libraries so one set of variables configures every service."""

    bootstrap: str = setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092",
                             "brokers, for every component")
    security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "`SASL_PLAINTEXT`, `SASL_SSL`, `SSL`",
        parse=_parse_upper)
    sasl_mechanism: str | None = setting(
        "KAFKA_SASL_MECHANISM", None, "SASL mechanism (PLAIN, SCRAM-SHA-256/512)")
    sasl_username: str | None = setting("KAFKA_SASL_USERNAME", None, "SASL user")
    sasl_password: str | None = setting("KAFKA_SASL_PASSWORD", None, "SASL password")
    ssl_cafile: str | None = setting("KAFKA_SSL_CAFILE", None, "CA bundle for TLS")
    extra: dict[str, str] = field(default_factory=dict)

    def confluent(self, **overrides: object) -> dict[str, object]:
        """librdkafka configuration for confluent-kafka clients."""
        conf: dict[str, object] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password
        if self.ssl_cafile:
            conf["ssl.ca.location"] = self.ssl_cafile
        conf.update(self.extra)
        conf.update(overrides)
        conf.setdefault("logger", librdkafka_logger())
        return conf

    def faust_url(self) -> str:
        """Faust's broker URL: kafka://host:port;host:port."""
        return ";".join("kafka://" + s.strip() for s in self.bootstrap.split(",") if s.strip())

    def faust_credentials(self):
        """Faust/aiokafka credentials object, or None for PLAINTEXT."""
        import faust

        proto = self.security_protocol
        if proto == "PLAINTEXT":
            return None
        context = None
        if proto in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
        if proto == "SSL":
            return faust.SSLCredentials(context)
        mechanism = (self.sasl_mechanism or "PLAIN").upper()
        if mechanism.startswith("SCRAM"):
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=mechanism,
                ssl_context=context,
            )
        return faust.SASLCredentials(
            username=self.sasl_username, password=self.sasl_password, ssl_context=context
        )


@dataclass(frozen=True)
class TopicLayout(_Group):
    """How the topics txmon creates are laid out on the cluster."""

    partitions: int = setting("TXMON_PARTITIONS", 3,
                              "transactions partitions: the counting stage's scale-out")
    replication: int | None = setting(
        "TXMON_REPLICATION", None,
        "copies of every topic txmon creates; unset: 3 on a cluster of three or more "
        "brokers, else 1", shown="from the cluster")
    min_insync: int | None = setting(
        "TXMON_MIN_INSYNC_REPLICAS", None,
        "`min.insync.replicas` of those topics: acks=all writes need this many copies; "
        "unset: 2 when replicated three times or more, else 1", shown="from replication")
    partials_retention_hours: int = setting(
        "TXMON_PARTIALS_RETENTION_HOURS", 24,
        "retention of the internal partials topic, which the merge re-reads after a restart")


@dataclass(frozen=True)
class BrokerSettings(_Group):
    """The local broker `txmon kafka` runs."""

    version: str = setting("TXMON_KAFKA_VERSION", "4.4.0",
                           "Kafka version for `txmon kafka`, pinned here and nowhere else")
    port: int = port_setting("TXMON_KAFKA_PORT", 9092, "local broker port (`--port`)")
    controller_port: int = port_setting(
        "TXMON_KAFKA_CONTROLLER_PORT", 9094,
        "KRaft controller port (`--controller-port`); 9093 is Alertmanager's")
    heap: str = setting("TXMON_KAFKA_HEAP", "512m", "local broker JVM heap (`--heap`)")
    data_dir: Path = setting("TXMON_KAFKA_DATA_DIR", None, "local broker data (`--data-dir`)",
                             derive=lambda env: _state(env) / "kafka",
                             shown="$TXMON_STATE_DIR/kafka")
    cds: bool = setting("TXMON_KAFKA_CDS", True,
                        "reuse a JVM class-data archive for faster broker starts")
    tls_cert: Path | None = setting(
        "TXMON_KAFKA_TLS_CERT", None,
        "with `--secure`: the broker's PEM certificate (chain), naming 127.0.0.1 (`--tls-cert`)")
    tls_key: Path | None = setting(
        "TXMON_KAFKA_TLS_KEY", None,
        "with `--secure`: its unencrypted PEM private key (`--tls-key`)")
    tls_ca: Path | None = setting(
        "TXMON_KAFKA_TLS_CA", None,
        "with `--secure`: the PEM CA that signed it, which clients trust (`--tls-ca`)")


@dataclass(frozen=True)
class TestSuite(_Group):
    """Read by tests/ only; declared here so that they are documented with the rest."""

    __test__ = False  # not a pytest class

    kafka_heap: str = setting("TXMON_TEST_KAFKA_HEAP", "384m", "heap of the test session's broker")
    ci: bool = setting("CI", False, "`true` makes tests that need the reference data or "
                       "Prometheus fail instead of skip", shown="unset")


# The pipeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessorSettings(_Group):
    """The streaming worker (`txmon process`)."""

    app_id: str = setting("TXMON_APP_ID", "txmon-processor",
                          "the worker's consumer group (the merge stage uses `<id>-merge`)")
    lateness_s: float = setting(
        "TXMON_ALLOWED_LATENESS_SECONDS", 10.0,
        "an event this much older than the newest one seen still counts in its window "
        "(`process --lateness`)")
    idle_timeout_s: float = setting(
        "TXMON_IDLE_TIMEOUT_SECONDS", 15.0,
        "silence before wall-clock time closes windows (`process --idle-timeout`)")
    max_future_s: float = setting(
        "TXMON_MAX_FUTURE_SECONDS", 86_400.0,
        "events further ahead of the clock are dead-lettered (`future`)")
    max_empty_minutes: int = setting(
        "TXMON_MAX_EMPTY_MINUTES", 1440,
        "longer gaps are not filled with empty minutes (a bogus first event)")
    batch_size: int = setting("TXMON_BATCH_SIZE", 5000, "counting batch: most events")
    batch_within_s: float = setting("TXMON_BATCH_WITHIN_SECONDS", 0.2,
                                    "counting batch: longest wait")
    kafka_wait_s: float = setting(
        "TXMON_KAFKA_WAIT_SECONDS", 300.0,
        "a worker started before its broker waits this long for it")
    session_timeout_ms: int = setting(
        "TXMON_SESSION_TIMEOUT_MS", 10_000, "how soon a dead worker's partitions move")
    tick_s: float = setting(
        "TXMON_TICK_SECONDS", 1.0,
        "heartbeat, idle check and checkpoint (partition state saved) period")
    prefetch_kbytes: int = setting(
        "TXMON_PREFETCH_KBYTES", 16_384,
        "the counting consumer's prefetch (librdkafka `queued.max.messages.kbytes`, "
        "its default 64 MiB is the worker's largest memory item); see bench/README.md")
    prefetch_messages: int = setting(
        "TXMON_PREFETCH_MESSAGES", 50_000,
        "messages a partition prefetched (librdkafka `queued.min.messages`): memory "
        "against throughput")
    fetch_backoff_ms: int = setting(
        "TXMON_FETCH_BACKOFF_MS", 10,
        "how long the counting consumer postpones a fetch once its prefetch is full "
        "(librdkafka `fetch.queue.backoff.ms`): its 1 s default left the worker waiting "
        "on fetches through a backlog (bench/README.md)")
    model_path: str | None = setting(
        "TXMON_MODEL_PATH", None, "`process --model`, `train --out`",
        derive=lambda env: str(_state(env) / "model.joblib"),
        shown="$TXMON_STATE_DIR/model.joblib")
    warmup_windows: int = setting(
        "TXMON_WARMUP_WINDOWS", 60, "without a model: minutes to learn from before alerting")
    recovery_window: int = setting(
        "TXMON_RECOVERY_WINDOW", 10,
        "closed normal minutes that resolve an incident; a re-trigger inside them is an "
        "update of the same incident")
    runbook_url: str = setting("TXMON_RUNBOOK_URL", "docs/runbook.md#transactionanomaly",
                               "the runbook link every alert record carries")
    metrics_port: int = port_setting("TXMON_PROCESSOR_METRICS_PORT", 9109,
                             "`process --metrics-port` (0 disables)")
    metrics_host: str = setting("TXMON_PROCESSOR_METRICS_HOST", "127.0.0.1",
                                "the worker's /metrics bind address")
    data_dir: str = setting("TXMON_PROCESSOR_DATA_DIR", None, "Faust data dir",
                            derive=lambda env: str(_state(env) / "processor"),
                            shown="$TXMON_STATE_DIR/processor")


@dataclass(frozen=True)
class TrainSettings(_Group):
    rate: float = setting("TXMON_TRAIN_RATE", 20.0, "peak tx/s of simulated training days")


@dataclass(frozen=True)
class ApiSettings(_Group):
    """The HTTP API (`txmon api`)."""

    host: str = setting("TXMON_API_HOST", "127.0.0.1", "`api --host`")
    port: int = port_setting("TXMON_API_PORT", 8000, "`api --port`")
    token: str | None = setting(
        "TXMON_API_TOKEN", None, "when set, requests need `Authorization: Bearer <token>`")
    max_body_bytes: int = setting("TXMON_API_MAX_BODY_BYTES", 4096,
                                  "larger bodies get 413 (every route but POST /transactions)")
    max_batch_bytes: int = setting(
        "TXMON_API_MAX_BATCH_BYTES", 16 * 1024 * 1024,
        "a POST /transactions body larger than this gets 413 (`api --max-batch-bytes`)")
    max_batch_records: int = setting(
        "TXMON_API_MAX_BATCH_RECORDS", 100_000,
        "a POST /transactions batch of more records gets 413: bounds a request's memory "
        "and the time to its answer")
    delivery_timeout_ms: int = setting(
        "TXMON_API_DELIVERY_TIMEOUT_MS", 300_000,
        "a record the broker has not acknowledged by then fails its request (POST "
        "/transactions 503, /check 500); librdkafka's own default")
    workers: int = setting(
        "TXMON_API_WORKERS", 1,
        "`api --workers`: uvicorn worker processes sharing the port (each its own producer)")
    access_log: bool = setting(
        "TXMON_API_ACCESS_LOG", False,
        "`api --access-log`: log every request (costs about a third of the request rate)")


@dataclass(frozen=True)
class ProducerSettings(_Group):
    """librdkafka tuning for `txmon produce` and `txmon replay`."""

    compression: str = setting("TXMON_PRODUCER_COMPRESSION", "lz4", "producer compression")
    linger_ms: float = setting("TXMON_PRODUCER_LINGER_MS", 50.0, "producer batching delay")
    batch_messages: int = setting("TXMON_PRODUCER_BATCH_MESSAGES", 100_000,
                                  "records per producer batch")
    batch_bytes: int = setting(
        "TXMON_PRODUCER_BATCH_BYTES", 1_000_000,
        "bytes per batch; must stay under the broker's message.max.bytes even uncompressed")
    queue_messages: int = setting("TXMON_PRODUCER_QUEUE_MESSAGES", 2_000_000,
                                  "records the producer queues unsent")
    queue_kbytes: int = setting("TXMON_PRODUCER_QUEUE_KBYTES", 1024 * 1024,
                                "KiB the producer queues unsent")
    timeout_ms: int = setting("TXMON_PRODUCER_TIMEOUT_MS", 120_000,
                              "a record undelivered this long is a delivery failure")


# Observability --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExporterSettings(_Group):
    """The Prometheus exporter (`txmon export`)."""

    host: str = setting("TXMON_EXPORTER_HOST", "127.0.0.1", "exporter bind address")
    port: int = port_setting("TXMON_EXPORTER_PORT", 9108, "exporter port")
    group: str = setting("TXMON_EXPORTER_GROUP", "txmon-exporter",
                         "the exporter's own consumer group")
    lag_interval: float = setting("TXMON_EXPORTER_LAG_INTERVAL", 10.0,
                                  "seconds between consumer-lag polls")


@dataclass(frozen=True)
class NotifySettings(_Group):
    """The Alertmanager webhook receiver (`txmon notify`)."""

    host: str = setting("TXMON_NOTIFY_HOST", "127.0.0.1", "webhook receiver bind address")
    port: int = port_setting("TXMON_NOTIFY_PORT", 9095, "webhook receiver port")
    slack_url: str | None = setting("SLACK_WEBHOOK_URL", None,
                                    "`txmon notify` forwards there too")


@dataclass(frozen=True)
class MonitoringSettings(_Group):
    """The local Prometheus and Alertmanager (`txmon monitoring up`)."""

    prometheus_port: int = port_setting("TXMON_PROMETHEUS_PORT", 9090, "`txmon monitoring up`")
    alertmanager_port: int = port_setting("TXMON_ALERTMANAGER_PORT", 9093, "`txmon monitoring up`")


@dataclass(frozen=True)
class GrafanaSettings(_Group):
    """`txmon grafana sync`."""

    url: str | None = setting("GRAFANA_URL", None, "Grafana base URL (`grafana sync --url`)")
    token: str | None = setting("GRAFANA_TOKEN", None, "Grafana service account token")
    prometheus_url: str | None = setting(
        "TXMON_PROMETHEUS_URL", None,
        "`grafana sync` creates the txmon-prometheus datasource pointing here when missing")


# The demo -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSettings(_Group):
    """Everything `make demo` can be told."""

    seconds: float = setting("DEMO_SECONDS", 210.0, "how long `make demo` streams")
    forever: bool = setting("DEMO_FOREVER", False, "`1` streams until Ctrl-C")
    tps: float = setting("DEMO_TPS", 20.0, "demo volume now (transactions/s)")
    rate: float | None = setting("DEMO_RATE", None, "a fixed peak rate instead of DEMO_TPS")
    incident: str = setting("DEMO_INCIDENT", "denied:x4:2m30s@30s",
                            "the injected incident (`txmon produce --incident` syntax)")
    backfill_minutes: int = setting("DEMO_BACKFILL_MINUTES", 30, "demo history, in minutes")
    train_days: int = setting("DEMO_TRAIN_DAYS", 1, "simulated days the demo's model learns")
    monitoring: bool = setting("DEMO_MONITORING", True, "Prometheus/Alertmanager on or off")
    seed: int = setting("DEMO_SEED", 7, "the demo's random seed")


# The README's table ---------------------------------------------------------------------


def groups() -> list[type]:
    from txmon.contracts.topics import Topics  # contracts build on this module

    return [KafkaSettings, Topics, TopicLayout, Paths, BrokerSettings, TestSuite,
            ProcessorSettings, TrainSettings, ApiSettings, ExporterSettings, NotifySettings,
            MonitoringSettings, GrafanaSettings, ProducerSettings, DemoSettings]


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for group in groups():
        for f in fields(group):
            if "env" in f.metadata:
                rows.append(f"| `{f.metadata['env']}` | `{shown_default(f)}` "
                            f"| {f.metadata['doc']} |".replace("`unset`", "unset"))
    return "\n".join(rows) + "\n"


def readme_block(text: str) -> str:
    """The generated part of a README, markers included ('' when it has none)."""
    match = re.search(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), text, re.S)
    return match.group(0) if match else ""


def render_readme(text: str, path: str = "README.md") -> str:
    if not readme_block(text):
        raise UserError(f"{path}: no {README_BEGIN} ... {README_END} markers")
    return text.replace(readme_block(text), f"{README_BEGIN}\n{markdown_table()}{README_END}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m txmon.settings",
                                description="The configuration table, from the model.")
    p.add_argument("--markdown", action="store_true", help="print the Markdown table")
    p.add_argument("--update", metavar="README", help="rewrite the table in this file")
    args = p.parse_args(argv)
    if args.update:
        path = Path(args.update)
        path.write_text(render_readme(path.read_text(), args.update))
    else:
        sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
