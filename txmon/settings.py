"""Every setting txmon reads from the environment, declared once: its variable, its
default, what it is for and how its text is parsed.

Each group is a frozen pydantic-settings model whose `from_env()` parses only that
group's variables, so a malformed variable stops the command that needs it (one line
naming it, exit 2) and no other. A field names its variable itself (its validation
alias: no prefix rule makes names up), its meaning is its description and its type says
how the text is read. CLI flags override the loaded group (`with_flags`), and the
README's configuration table is generated from the same fields (`python -m txmon.settings`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import ssl
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from txmon.errors import UserError
from txmon.kafka import librdkafka_logger

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
README_BEGIN = "<!-- settings:begin (generated: `python -m txmon.settings --update README.md`) -->"
README_END = "<!-- settings:end -->"
#: The error type of a variable whose text does not parse: `VAR='text' is not ...`.
BAD_TEXT = "txmon_bad_text"


# Parsing ------------------------------------------------------------------------------
# Text (a variable's, or a string given in code) is parsed by the field's type below,
# with the message a user reads; a value already typed (a test's, an argparse flag's)
# is left to pydantic.


def _not(what: str) -> PydanticCustomError:
    return PydanticCustomError(BAD_TEXT, "is not {what}", {"what": what})


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise _not("an integer") from None


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _not("a number") from None


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE or value in FALSE:
        return value in TRUE
    raise _not("a boolean (1/0, true/false, yes/no, on/off)")


def _port(raw: str) -> int:
    port = _integer(raw)
    if not 0 <= port <= 65535:
        raise _not("a port (0-65535)")
    return port


def _words(raw: str) -> str:
    """Kept as text (the README shows it so); checked here so that a launcher splitting it
    later cannot fail with a traceback."""
    try:
        shlex.split(raw)
    except ValueError:
        raise _not("shell words (a quote is not closed)") from None
    return raw


def _text(parse: Callable[[str], Any]) -> BeforeValidator:
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


Integer = Annotated[int, _text(_integer)]
Number = Annotated[float, _text(_number)]
Boolean = Annotated[bool, _text(_boolean)]
Port = Annotated[int, _text(_port)]
Upper = Annotated[str, _text(str.upper)]
Words = Annotated[str, _text(_words)]

Derive = Callable[[Mapping[str, str]], Any]
#: Defaults that depend on other variables (the state dir), by variable. Not kept in the
#: field: pydantic computes a default without the mapping `from_env` was given.
_DERIVED: dict[str, Derive] = {}


def setting(var: str, default: Any, doc: str, *, derive: Derive | None = None,
            shown: str | None = None, secret: bool = False) -> Any:
    """A field read from `var`. `derive` computes a default that depends on other
    variables (the state dir); `shown` is how the README writes such a default; a
    `secret` (a password, a token) is masked in repr, and so in logs and tracebacks."""
    if derive is not None:
        _DERIVED[var] = derive
    extra = {**({"shown": shown} if shown else {}), **({"secret": True} if secret else {})}
    return Field(default, validation_alias=var, description=doc, json_schema_extra=extra or None)


#: What a set secret looks like in a repr: that it is set, never what it is.
MASK = "***"
#: librdkafka properties whose values are secrets (KafkaSettings.extra).
_SECRET_PROPERTY = re.compile(r"password|secret|private|token", re.IGNORECASE)


def masked(value: Any, f: FieldInfo) -> Any:
    """`value` as a repr may show it."""
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    if extra.get("secret"):
        return None if value is None else MASK
    if isinstance(value, dict):
        return {k: MASK if _SECRET_PROPERTY.search(str(k)) else v for k, v in value.items()}
    return value


def variable(f: FieldInfo) -> str | None:
    """The variable a field is read from (None: not from the environment)."""
    return f.validation_alias if isinstance(f.validation_alias, str) else None


class Variables(PydanticBaseSettingsSource):
    """The source `from_env` reads: each field's own variable from a mapping (the process
    environment, or a test's dict), an empty one counting as unset as a shell's
    `VAR= command` means, and derived defaults for the fields left unset.

    pydantic-settings' EnvSettingsSource reads os.environ only and, as the groups take
    field names in code, would also read a bare `port` or `host` variable into a field."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """(the variable's text or None, the key to validate it under, not JSON)."""
        var = variable(field) or field_name
        return self.env.get(var) or None, var, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, f in self.settings_cls.model_fields.items():
            if variable(f) is None:
                continue  # set in code only (KafkaSettings.extra)
            raw, var, _ = self.get_field_value(f, name)
            if raw is not None:
                values[var] = raw
            elif var in _DERIVED:
                values[var] = _DERIVED[var](self.env)
        return values


class Group(BaseSettings):
    """A group of settings, frozen and equal by value. Built in code
    (`KafkaSettings(bootstrap=...)`) it holds its arguments and the defaults, whatever
    the environment says: only `from_env` reads variables."""

    # Defaults stand as declared, unvalidated (BaseSettings would check them): a derived
    # one is None until `from_env` derives it. The schema is built on first use, not at
    # import, which `txmon --help` pays for.
    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                                      validate_by_alias=True, validate_default=False,
                                      defer_build=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   **_others: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The arguments only: no os.environ, .env file or secrets dir behind them."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """This group from `env` (os.environ by default): see `load`."""
        return load(cls, env)

    def __repr_args__(self):
        for name, f in type(self).model_fields.items():
            yield name, masked(getattr(self, name), f)


G = TypeVar("G", bound=Group)


def load(cls: type[G], env: Mapping[str, str] | None = None) -> G:
    """One group from `env` (the process environment by default). A malformed variable
    is a UserError of one line naming it and its text."""
    env = os.environ if env is None else env
    try:
        return cls(**Variables(cls, env)())
    except ValidationError as exc:
        raise UserError(_one_line(cls, exc)) from None


def _one_line(cls: type[Group], exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    error = next((e for e in errors if e["type"] == BAD_TEXT), errors[0])
    where = error["loc"][0] if error["loc"] else cls.__name__
    return f"{where}={error['input']!r} {error['msg']}"


def default(group: type[Group], name: str) -> Any:
    """A field's declared default. Pydantic keeps defaults in the model's fields, not as
    class attributes: `default(BrokerSettings, "port")`, not `BrokerSettings.port`."""
    return group.model_fields[name].default


def with_flags(group: G, args: argparse.Namespace) -> G:
    """The group with every flag the user gave (not None) in place of its value."""
    names = type(group).model_fields
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return group.model_copy(update=given)


def export(group: Group, env: dict[str, str] | None = None) -> None:
    """Write a loaded group (flags applied) back to its variables, so that processes
    started from this one (uvicorn's workers, which build their app from the
    environment) see the flags too. Unset (None) values leave their variable alone."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    for name, f in type(group).model_fields.items():
        value, var = getattr(group, name), variable(f)
        if var and value is not None:
            env[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)


def shown_default(f: FieldInfo) -> str:
    """How the README and a flag's help write a field's default."""
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    if extra.get("shown"):
        return str(extra["shown"])
    value = f.default
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flag_help(cls: type[Group], name: str, text: str) -> str:
    """A flag's help naming the variable it overrides and the default, from the model."""
    f = cls.model_fields[name]
    return f"{text} ({variable(f)}, default {shown_default(f)})".replace("%", "%%")


# Paths --------------------------------------------------------------------------------


def _xdg_state(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "txmon"


def _state(env: Mapping[str, str]) -> Path:
    return Paths.from_env(env).state_dir


class Paths(Group):
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


class KafkaSettings(Group):
    """How to reach the broker: bootstrap servers plus optional SASL/TLS, passed to both
    client libraries so one set of variables configures every service."""

    bootstrap: str = setting("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092",
                             "brokers, for every component")
    security_protocol: Upper = setting(
        "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "`SASL_PLAINTEXT`, `SASL_SSL`, `SSL`")
    sasl_mechanism: str | None = setting(
        "KAFKA_SASL_MECHANISM", None, "SASL mechanism (PLAIN, SCRAM-SHA-256/512)")
    sasl_username: str | None = setting("KAFKA_SASL_USERNAME", None, "SASL user")
    sasl_password: str | None = setting("KAFKA_SASL_PASSWORD", None, "SASL password",
                                        secret=True)
    ssl_cafile: str | None = setting("KAFKA_SSL_CAFILE", None, "CA bundle for TLS")
    #: librdkafka properties set in code (tests, benchmarks), not from the environment.
    extra: dict[str, str] = Field(default_factory=dict)

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


class TopicLayout(Group):
    """How the topics txmon creates are laid out on the cluster."""

    partitions: Integer = setting("TXMON_PARTITIONS", 3,
                              "transactions partitions: the counting stage's scale-out")
    replication: Integer | None = setting(
        "TXMON_REPLICATION", None,
        "copies of every topic txmon creates; unset: 3 on a cluster of three or more "
        "brokers, else 1", shown="from the cluster")
    min_insync: Integer | None = setting(
        "TXMON_MIN_INSYNC_REPLICAS", None,
        "`min.insync.replicas` of those topics: acks=all writes need this many copies; "
        "unset: 2 when replicated three times or more, else 1", shown="from replication")
    partials_retention_hours: Integer = setting(
        "TXMON_PARTIALS_RETENTION_HOURS", 24,
        "retention of the internal partials topic, which the merge re-reads after a restart")
    idempotency_hours: Integer = setting(
        "TXMON_IDEMPOTENCY_HOURS", 24,
        "how long POST /transactions remembers an `Idempotency-Key` and its answer (the "
        "idempotency topic's retention, and the API's memory of it)")


#: kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS.
KAFKA_JVM_PERFORMANCE_OPTS = ("-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "
                              "-XX:InitiatingHeapOccupancyPercent=35 "
                              "-XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true")


class BrokerSettings(Group):
    """The local broker `txmon kafka` runs."""

    version: str = setting("TXMON_KAFKA_VERSION", "4.4.0",
                           "Kafka version for `txmon kafka`, pinned here and nowhere else")
    port: Port = setting("TXMON_KAFKA_PORT", 9092, "local broker port (`--port`)")
    controller_port: Port = setting(
        "TXMON_KAFKA_CONTROLLER_PORT", 9094,
        "KRaft controller port (`--controller-port`); 9093 is Alertmanager's")
    heap: str = setting("TXMON_KAFKA_HEAP", "512m", "local broker JVM heap (`--heap`)")
    data_dir: Path = setting("TXMON_KAFKA_DATA_DIR", None, "local broker data (`--data-dir`)",
                             derive=lambda env: _state(env) / "kafka",
                             shown="$TXMON_STATE_DIR/kafka")
    jvm_flags: Words = setting(
        "TXMON_KAFKA_JVM_FLAGS", KAFKA_JVM_PERFORMANCE_OPTS,
        "the local broker JVM's tuning flags, as Kafka's KAFKA_JVM_PERFORMANCE_OPTS (the "
        "default is kafka-server-start.sh's)")
    cds: Boolean = setting("TXMON_KAFKA_CDS", True,
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


class TestSuite(Group):
    """Read by tests/ only; declared here so that they are documented with the rest."""

    __test__ = False  # not a pytest class

    kafka_heap: str = setting("TXMON_TEST_KAFKA_HEAP", "384m", "heap of the test session's broker")
    kafka_jvm_flags: Words = setting(
        "TXMON_TEST_KAFKA_JVM_FLAGS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
        "-Djava.awt.headless=true",
        "TXMON_KAFKA_JVM_FLAGS for every broker the tests start, unless that is set: the "
        "C1 compiler alone and the serial collector halve a broker's CPU, and the suite "
        "runs up to a dozen brokers on 2 cores")
    ci: Boolean = setting("CI", False, "`true` makes tests that need the reference data or "
                       "Prometheus fail instead of skip", shown="unset")


# The pipeline ---------------------------------------------------------------------------


class ProcessorSettings(Group):
    """The streaming worker (`txmon process`)."""

    app_id: str = setting("TXMON_APP_ID", "txmon-processor",
                          "the worker's consumer group (the merge stage uses `<id>-merge`, and its "
                          "transactional.id `<id>-merge-p0`)")
    lateness_s: Number = setting(
        "TXMON_ALLOWED_LATENESS_SECONDS", 10.0,
        "an event this much older than the newest one seen still counts in its window "
        "(`process --lateness`)")
    idle_timeout_s: Number = setting(
        "TXMON_IDLE_TIMEOUT_SECONDS", 15.0,
        "silence before wall-clock time closes windows (`process --idle-timeout`)")
    max_future_s: Number = setting(
        "TXMON_MAX_FUTURE_SECONDS", 86_400.0,
        "events further ahead of the clock are dead-lettered (`future`)")
    max_empty_minutes: Integer = setting(
        "TXMON_MAX_EMPTY_MINUTES", 1440,
        "longer gaps are not filled with empty minutes (a bogus first event)")
    batch_size: Integer = setting("TXMON_BATCH_SIZE", 5000, "counting batch: most events")
    batch_within_s: Number = setting("TXMON_BATCH_WITHIN_SECONDS", 0.2,
                                    "counting batch: longest wait")
    kafka_wait_s: Number = setting(
        "TXMON_KAFKA_WAIT_SECONDS", 300.0,
        "a worker started before its broker waits this long for it")
    session_timeout_ms: Integer = setting(
        "TXMON_SESSION_TIMEOUT_MS", 10_000, "how soon a dead worker's partitions move")
    tick_s: Number = setting(
        "TXMON_TICK_SECONDS", 1.0,
        "heartbeat, idle check and checkpoint (partition state saved) period")
    processing_guarantee: Literal["exactly_once", "at_least_once"] = setting(
        "TXMON_PROCESSING_GUARANTEE", "exactly_once",
        "`exactly_once`: each counting checkpoint and each merge step one Kafka "
        "transaction, so a read_committed reader sees every partial, dead letter, minute "
        "and alert once; `at_least_once`: no transactions, a crash may write one again "
        "with the same id and content (bench/README.md has the cost of each)")
    transaction_timeout_ms: Integer = setting(
        "TXMON_TRANSACTION_TIMEOUT_MS", 15_000,
        "both stages' Kafka transactions: longer than a step and its commit; a worker "
        "that dies mid-commit holds up read_committed readers of what it wrote at most "
        "this long, unless its successor fences it first")
    prefetch_kbytes: Integer = setting(
        "TXMON_PREFETCH_KBYTES", 16_384,
        "the counting consumer's prefetch (librdkafka `queued.max.messages.kbytes`, "
        "its default 64 MiB is the worker's largest memory item); see bench/README.md")
    prefetch_messages: Integer = setting(
        "TXMON_PREFETCH_MESSAGES", 50_000,
        "messages a partition prefetched (librdkafka `queued.min.messages`): memory "
        "against throughput")
    fetch_backoff_ms: Integer = setting(
        "TXMON_FETCH_BACKOFF_MS", 10,
        "how long the counting consumer postpones a fetch once its prefetch is full "
        "(librdkafka `fetch.queue.backoff.ms`): its 1 s default left the worker waiting "
        "on fetches through a backlog (bench/README.md)")
    model_path: str | None = setting(
        "TXMON_MODEL_PATH", None, "`process --model`, `train --out`",
        derive=lambda env: str(_state(env) / "model.joblib"),
        shown="$TXMON_STATE_DIR/model.joblib")
    warmup_windows: Integer = setting(
        "TXMON_WARMUP_WINDOWS", 60, "without a model: minutes to learn from before alerting")
    recovery_window: Integer = setting(
        "TXMON_RECOVERY_WINDOW", 10,
        "closed normal minutes that resolve an incident; a re-trigger inside them is an "
        "update of the same incident")
    runbook_url: str = setting("TXMON_RUNBOOK_URL", "docs/runbook.md#transactionanomaly",
                               "the runbook link every alert record carries")
    metrics_port: Port = setting("TXMON_PROCESSOR_METRICS_PORT", 9109,
                                 "`process --metrics-port` (0 disables)")
    metrics_host: str = setting("TXMON_PROCESSOR_METRICS_HOST", "127.0.0.1",
                                "the worker's /metrics bind address")
    data_dir: str = setting("TXMON_PROCESSOR_DATA_DIR", None, "Faust data dir",
                            derive=lambda env: str(_state(env) / "processor"),
                            shown="$TXMON_STATE_DIR/processor")


class TrainSettings(Group):
    rate: Number = setting("TXMON_TRAIN_RATE", 20.0, "peak tx/s of simulated training days")


class ApiSettings(Group):
    """The HTTP API (`txmon api`)."""

    host: str = setting("TXMON_API_HOST", "127.0.0.1", "`api --host`")
    port: Port = setting("TXMON_API_PORT", 8000, "`api --port`")
    token: str | None = setting(
        "TXMON_API_TOKEN", None, "when set, requests need `Authorization: Bearer <token>`",
        secret=True)
    max_body_bytes: Integer = setting("TXMON_API_MAX_BODY_BYTES", 4096,
                                  "larger bodies get 413 (every route but POST /transactions)")
    max_batch_bytes: Integer = setting(
        "TXMON_API_MAX_BATCH_BYTES", 16 * 1024 * 1024,
        "a POST /transactions body larger than this gets 413 (`api --max-batch-bytes`)")
    max_batch_records: Integer = setting(
        "TXMON_API_MAX_BATCH_RECORDS", 100_000,
        "a POST /transactions batch of more records gets 413: bounds a request's memory "
        "and the time to its answer")
    delivery_timeout_ms: Integer = setting(
        "TXMON_API_DELIVERY_TIMEOUT_MS", 300_000,
        "a record the broker has not acknowledged by then fails its request (POST "
        "/transactions 503, /check 500); librdkafka's own default")
    transaction_timeout_ms: Integer = setting(
        "TXMON_API_TRANSACTION_TIMEOUT_MS", 30_000,
        "longest a POST /transactions batch's Kafka transaction may stay open; after an "
        "API crash, read_committed consumers wait up to this for its open transaction")
    workers: Integer = setting(
        "TXMON_API_WORKERS", 1,
        "`api --workers`: uvicorn worker processes sharing the port (each its own producer)")
    access_log: Boolean = setting(
        "TXMON_API_ACCESS_LOG", False,
        "`api --access-log`: log every request (costs about a third of the request rate)")


class ProducerSettings(Group):
    """librdkafka tuning for `txmon produce` and `txmon replay`."""

    compression: str = setting("TXMON_PRODUCER_COMPRESSION", "lz4", "producer compression")
    linger_ms: Number = setting("TXMON_PRODUCER_LINGER_MS", 50.0, "producer batching delay")
    batch_messages: Integer = setting("TXMON_PRODUCER_BATCH_MESSAGES", 100_000,
                                  "records per producer batch")
    batch_bytes: Integer = setting(
        "TXMON_PRODUCER_BATCH_BYTES", 1_000_000,
        "bytes per batch; must stay under the broker's message.max.bytes even uncompressed")
    queue_messages: Integer = setting("TXMON_PRODUCER_QUEUE_MESSAGES", 2_000_000,
                                  "records the producer queues unsent")
    queue_kbytes: Integer = setting("TXMON_PRODUCER_QUEUE_KBYTES", 1024 * 1024,
                                "KiB the producer queues unsent")
    timeout_ms: Integer = setting("TXMON_PRODUCER_TIMEOUT_MS", 120_000,
                              "a record undelivered this long is a delivery failure")


# Observability --------------------------------------------------------------------------


class ExporterSettings(Group):
    """The Prometheus exporter (`txmon export`)."""

    host: str = setting("TXMON_EXPORTER_HOST", "127.0.0.1", "exporter bind address")
    port: Port = setting("TXMON_EXPORTER_PORT", 9108, "exporter port")
    group: str = setting("TXMON_EXPORTER_GROUP", "txmon-exporter",
                         "the exporter's own consumer group")
    lag_interval: Number = setting("TXMON_EXPORTER_LAG_INTERVAL", 10.0,
                                  "seconds between consumer-lag polls")


class NotifySettings(Group):
    """The Alertmanager webhook receiver (`txmon notify`)."""

    host: str = setting("TXMON_NOTIFY_HOST", "127.0.0.1", "webhook receiver bind address")
    port: Port = setting("TXMON_NOTIFY_PORT", 9095, "webhook receiver port")
    slack_url: str | None = setting("SLACK_WEBHOOK_URL", None,  # its path is the credential
                                    "`txmon notify` forwards there too", secret=True)


class MonitoringSettings(Group):
    """The local Prometheus and Alertmanager (`txmon monitoring up`)."""

    prometheus_port: Port = setting("TXMON_PROMETHEUS_PORT", 9090, "`txmon monitoring up`")
    alertmanager_port: Port = setting("TXMON_ALERTMANAGER_PORT", 9093, "`txmon monitoring up`")


class GrafanaSettings(Group):
    """`txmon grafana sync`."""

    url: str | None = setting("GRAFANA_URL", None, "Grafana base URL (`grafana sync --url`)")
    token: str | None = setting("GRAFANA_TOKEN", None, "Grafana service account token",
                                secret=True)
    prometheus_url: str | None = setting(
        "TXMON_PROMETHEUS_URL", None,
        "`grafana sync` creates the txmon-prometheus datasource pointing here when missing")


# The demo -------------------------------------------------------------------------------


class DemoSettings(Group):
    """Everything `make demo` can be told."""

    seconds: Number = setting("DEMO_SECONDS", 210.0, "how long `make demo` streams")
    forever: Boolean = setting("DEMO_FOREVER", False, "`1` streams until Ctrl-C")
    tps: Number = setting("DEMO_TPS", 20.0, "demo volume now (transactions/s)")
    rate: Number | None = setting("DEMO_RATE", None, "a fixed peak rate instead of DEMO_TPS")
    incident: str = setting("DEMO_INCIDENT", "denied:x4:2m30s@30s",
                            "the injected incident (`txmon produce --incident` syntax)")
    backfill_minutes: Integer = setting("DEMO_BACKFILL_MINUTES", 30, "demo history, in minutes")
    train_days: Integer = setting("DEMO_TRAIN_DAYS", 1, "simulated days the demo's model learns")
    monitoring: Boolean = setting("DEMO_MONITORING", True, "Prometheus/Alertmanager on or off")
    seed: Integer = setting("DEMO_SEED", 7, "the demo's random seed")


# The README's table ---------------------------------------------------------------------


def groups() -> list[type[Group]]:
    from txmon.contracts.topics import Topics  # contracts build on this module

    return [KafkaSettings, Topics, TopicLayout, Paths, BrokerSettings, TestSuite,
            ProcessorSettings, TrainSettings, ApiSettings, ExporterSettings, NotifySettings,
            MonitoringSettings, GrafanaSettings, ProducerSettings, DemoSettings]


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for group in groups():
        for f in group.model_fields.values():
            if variable(f):
                rows.append(f"| `{variable(f)}` | `{shown_default(f)}` "
                            f"| {f.description} |".replace("`unset`", "unset"))
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
