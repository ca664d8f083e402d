"""Configuration from the environment, read in one place.

Every variable is documented in the README's configuration table; CLI flags override
them. Kafka security settings are passed through to both client libraries, so one set
of variables configures every service.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from txmon.errors import UserError
from txmon.kafka import librdkafka_logger

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def env_str(name: str, default: str) -> str:
    return os.environ.get(name) or default


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int)


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float)


def _env_number(name: str, default, kind: type):
    """A malformed setting is the user's to fix: one line naming it, not a traceback."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise UserError(f"{name}={value!r} is not {expected}") from None


def shared_data_dir() -> Path:
    """The reference data; never copied into the project (see ../shared/README.md)."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cloudwalk"
    return Path(os.environ.get("TXMON_DATA_DIR") or default)


def state_dir() -> Path:
    """Where local runs keep data, logs and pid files (not in the repo)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("TXMON_STATE_DIR") or Path(base) / "txmon")


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the broker: bootstrap servers plus optional SASL/TLS."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> KafkaSettings:
        return cls(
            bootstrap=env_str("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
            security_protocol=env_str("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
            sasl_mechanism=os.environ.get("KAFKA_SASL_MECHANISM") or None,
            sasl_username=os.environ.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=os.environ.get("KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=os.environ.get("KAFKA_SSL_CAFILE") or None,
        )

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
