"""The worker's settings: environment variables (documented in the README), overridable
by `txmon process` flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from txmon.config import env_float, env_int, env_str, state_dir

#: Closed normal minutes in a row that resolve an incident (see processor/incidents.py).
RECOVERY_WINDOW = 10
RUNBOOK_URL = "docs/runbook.md#transactionanomaly"


@dataclass(frozen=True)
class ProcessorConfig:
    app_id: str = field(default_factory=lambda: env_str("TXMON_APP_ID", "txmon-processor"))
    #: An event this much older than the newest one seen still counts in its window.
    lateness_s: float = field(
        default_factory=lambda: env_float("TXMON_ALLOWED_LATENESS_SECONDS", 10.0))
    #: Silence after which wall-clock time advances a partition's watermark.
    idle_timeout_s: float = field(
        default_factory=lambda: env_float("TXMON_IDLE_TIMEOUT_SECONDS", 15.0))
    #: An event further ahead of the wall clock than this is dead-lettered as `future`.
    max_future_s: float = field(
        default_factory=lambda: env_float("TXMON_MAX_FUTURE_SECONDS", 86_400.0))
    #: Gaps longer than this are not filled with empty minutes (a bogus first event).
    max_empty_minutes: int = field(
        default_factory=lambda: env_int("TXMON_MAX_EMPTY_MINUTES", 1440))
    batch_size: int = field(default_factory=lambda: env_int("TXMON_BATCH_SIZE", 5000))
    batch_within_s: float = field(
        default_factory=lambda: env_float("TXMON_BATCH_WITHIN_SECONDS", 0.2))
    #: How long a worker started before its broker waits for it.
    kafka_wait_s: float = field(
        default_factory=lambda: env_float("TXMON_KAFKA_WAIT_SECONDS", 300.0))
    #: Kafka group session timeout: how soon a dead worker's partitions move on.
    session_timeout_ms: int = field(
        default_factory=lambda: env_int("TXMON_SESSION_TIMEOUT_MS", 10_000))
    #: Heartbeat and checkpoint period: partition state is saved this often, not per batch.
    tick_s: float = field(default_factory=lambda: env_float("TXMON_TICK_SECONDS", 1.0))
    #: librdkafka's prefetch queue (default 64 MiB): the worker's largest memory item.
    prefetch_kbytes: int = field(
        default_factory=lambda: env_int("TXMON_PREFETCH_KBYTES", 16_384))
    #: Messages a partition librdkafka keeps prefetched (its default is 100,000).
    prefetch_messages: int = field(
        default_factory=lambda: env_int("TXMON_PREFETCH_MESSAGES", 50_000))
    model_path: str | None = field(
        default_factory=lambda: env_str("TXMON_MODEL_PATH", str(state_dir() / "model.joblib")))
    warmup_windows: int = field(default_factory=lambda: env_int("TXMON_WARMUP_WINDOWS", 60))
    #: Closed normal minutes in a row before an incident resolves; a re-trigger inside
    #: them is an update of the same incident.
    recovery_window: int = field(
        default_factory=lambda: env_int("TXMON_RECOVERY_WINDOW", RECOVERY_WINDOW))
    #: The runbook link every alert record carries.
    runbook_url: str = field(
        default_factory=lambda: env_str("TXMON_RUNBOOK_URL", RUNBOOK_URL))
    metrics_port: int = field(
        default_factory=lambda: env_int("TXMON_PROCESSOR_METRICS_PORT", 9109))
    metrics_host: str = field(
        default_factory=lambda: env_str("TXMON_PROCESSOR_METRICS_HOST", "127.0.0.1"))
    data_dir: str = field(
        default_factory=lambda: env_str("TXMON_PROCESSOR_DATA_DIR", str(state_dir() / "processor")))
