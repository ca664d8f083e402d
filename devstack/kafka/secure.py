"""`txmon kafka up --secure`: the local broker (or cluster) with SASL/SCRAM-SHA-512 and ACLs.

Clients authenticate with SCRAM-SHA-512 on the one client listener, which brokers also
use between themselves; the connections to the KRaft controllers use SASL/PLAIN with the
admin user. With the operator's TLS files (`--tls-cert/--tls-key/--tls-ca`,
devstack.kafka.tls) both listeners are SASL_SSL, else SASL_PLAINTEXT (loopback only, so
a local broker is usable without a CA). The StandardAuthorizer denies everything no ACL
allows. Users:

- ``admin``: super user (the brokers themselves, and topic/ACL administration);
- ``txmon``: the services (producer, processor, API, exporter): topics and groups;
- ``reader``: read-only, for dashboards and tools: read and describe, nothing else.

Passwords are random, generated once into ``credentials.env`` in the data dir (mode
0600, the dir 0700; never in the repo) and the SCRAM credentials are written into the
metadata when the storage is formatted (StorageTool ``--add-scram``, given in a 0600
@argfile rather than on the command line: devstack.kafka.server), so they exist before
the broker first starts. The admin password is also in each node's server.properties
(its JAAS config), kept 0600 as well. A cluster keeps one ``credentials.env`` (and one
``tls`` dir) in its own data dir for all its nodes, each formatted with the same users.
Services read them from the environment (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE).
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from devstack.kafka import tls
from txmon.errors import UserError
from txmon.kafka import librdkafka_logger

MECHANISM = "SCRAM-SHA-512"
CREDENTIALS_FILE = "credentials.env"
ADMIN, SERVICE, READER = "admin", "txmon", "reader"
USERS = (ADMIN, SERVICE, READER)


@dataclass(frozen=True)
class Secured:
    """A secure data dir's passwords (user -> password) and its TLS dir, if TLS."""

    creds: dict[str, str]
    tls_dir: Path | None = None

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.tls_dir else "SASL_PLAINTEXT"

    def client_config(self, user: str) -> dict[str, str]:
        """librdkafka settings for one user."""
        conf = {"security.protocol": self.protocol, "sasl.mechanism": MECHANISM,
                "sasl.username": user, "sasl.password": self.creds[user]}
        if self.tls_dir:
            conf["ssl.ca.location"] = str(tls.ca_file(self.tls_dir))
        return conf

    def env_exports(self, bootstrap: str, user: str) -> dict[str, str]:
        """What a service needs in its environment to connect as `user`."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_SECURITY_PROTOCOL": self.protocol,
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.creds[user],
        }
        if self.tls_dir:
            env["KAFKA_SSL_CAFILE"] = str(tls.ca_file(self.tls_dir))
        return env


def credentials_path(data_dir: Path) -> Path:
    return Path(data_dir) / CREDENTIALS_FILE


def load_credentials(data_dir: Path) -> dict[str, str] | None:
    """user -> password from the data dir, or None for a broker that is not secure."""
    path = credentials_path(data_dir)
    if not path.is_file():
        return None
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    missing = [u for u in USERS if u not in out]
    if missing:
        raise UserError(f"{path} lacks passwords for {', '.join(missing)}")
    return out


def load(data_dir: Path) -> Secured | None:
    """The data dir's security, or None for a broker that is not secure: `status`,
    `down`, `logs` and a second `up` speak to it as it was set up."""
    creds = load_credentials(data_dir)
    return Secured(creds, tls.installed(data_dir)) if creds else None


def _formatted(data_dir: Path) -> bool:
    """Storage already formatted here, a single broker's or a cluster node's."""
    return any(data_dir.glob("data/meta.properties")) or any(
        data_dir.glob("node-*/data/meta.properties"))


def ensure_credentials(data_dir: Path) -> dict[str, str]:
    """The data dir's passwords, generated on first use (the storage must then be new:
    SCRAM credentials are written when it is formatted)."""
    data_dir = Path(data_dir)
    existing = load_credentials(data_dir)
    if existing:
        return existing
    if _formatted(data_dir):
        raise UserError(f"{data_dir} already holds a broker formatted without --secure; "
                        "use another --data-dir (or remove this one) for a secure broker")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    creds = {user: secrets.token_urlsafe(24) for user in USERS}
    path = credentials_path(data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# SCRAM-SHA-512 passwords of this broker (txmon kafka up --secure)\n")
        fh.writelines(f"{user}={pw}\n" for user, pw in creds.items())
    return creds


def prepare(data_dir: Path, files: tls.TlsFiles | None = None) -> Secured:
    """`up --secure`: the data dir's passwords (new ones for a new data dir) and, with
    `files`, the TLS files installed. A data dir set up without TLS keeps it that way:
    its clients were told SASL_PLAINTEXT; one with TLS keeps TLS without the flags."""
    data_dir = Path(data_dir)
    had_creds = load_credentials(data_dir) is not None
    if files and had_creds and not tls.installed(data_dir) and _formatted(data_dir):
        raise UserError(f"{data_dir} holds a secure broker without TLS; use another "
                        "--data-dir for a TLS broker")
    stores = tls.read(files) if files else None
    creds = ensure_credentials(data_dir)
    tls_dir = tls.write(stores, data_dir) if stores else tls.installed(data_dir)
    return Secured(creds, tls_dir)


def _jaas(module: str, user: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{u}="{p}"' for u, p in users.items())
    return f'{module} required username="{user}" password="{password}"{extra};'


def server_properties(host: str, port: int, controller_port: int,
                      sec: Secured) -> dict[str, str]:
    """The listeners: clients and brokers on `<protocol>` (SCRAM), controllers on
    CONTROLLER (PLAIN, admin only), both TLS when the data dir has TLS files."""
    admin = sec.creds[ADMIN]
    proto = sec.protocol
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    props = {
        "listeners": f"{proto}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{proto}://{host}:{port}",
        "listener.security.protocol.map": f"CONTROLLER:{proto},{proto}:{proto}",
        "inter.broker.listener.name": proto,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{proto.lower()}.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{proto.lower()}.{MECHANISM.lower()}.sasl.jaas.config":
            _jaas(scram, ADMIN, admin),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            _jaas(plain, ADMIN, admin, **{ADMIN: admin}),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }
    if sec.tls_dir:
        props.update(tls.server_properties(sec.tls_dir))
    return props


def format_args(creds: dict[str, str]) -> list[str]:
    """StorageTool arguments creating every user's SCRAM credential at format time
    (LocalKafka passes them in a private @argfile, never on a command line)."""
    out = []
    for user, password in creds.items():
        out += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return out


def shell_exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def make_secure(kafka, sec: Secured) -> None:
    """Turn a LocalKafka (a single broker or one cluster node, not started yet) into a
    secure one."""
    from devstack.kafka.server import HOST

    kafka.extra_properties.update(
        server_properties(HOST, kafka.port, kafka.controller_port, sec))
    kafka.client_config.update(sec.client_config(ADMIN))
    kafka.format_args = format_args(sec.creds)
    _private_file(kafka.properties_file)


def _private_file(path: Path) -> None:
    """Make `path` 0600, creating it empty if need be: server.properties holds the admin
    password, and LocalKafka's rewrite at each start keeps the mode of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def apply_acls(bootstrap: str, sec: Secured, read_topics: list[str] | None = None,
               timeout: float = 30.0) -> int:
    """The ACLs of the service and reader users (idempotent); returns how many bindings.

    `txmon` may do anything with topics and consumer groups and create topics (the
    processor and Faust create theirs), but is no super user: it cannot change ACLs or
    broker configs. `reader` may only read and describe `read_topics` (default: the
    window-counts and alerts topics) with any consumer group."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    from txmon.contracts.topics import topics

    if read_topics is None:
        names = topics()
        read_topics = [names.window_counts, names.alerts]
    allow = AclPermissionType.ALLOW
    literal = ResourcePatternType.LITERAL

    def binding(user, rtype, name, op):
        return AclBinding(rtype, name, literal, f"User:{user}", "*", op, allow)

    bindings = [
        binding(SERVICE, ResourceType.TOPIC, "*", AclOperation.ALL),
        binding(SERVICE, ResourceType.GROUP, "*", AclOperation.ALL),
        binding(SERVICE, ResourceType.TRANSACTIONAL_ID, "*", AclOperation.ALL),
        binding(SERVICE, ResourceType.BROKER, "kafka-cluster", AclOperation.CREATE),
        binding(SERVICE, ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE),
        binding(SERVICE, ResourceType.BROKER, "kafka-cluster", AclOperation.DESCRIBE_CONFIGS),
        binding(SERVICE, ResourceType.BROKER, "kafka-cluster", AclOperation.IDEMPOTENT_WRITE),
        binding(READER, ResourceType.GROUP, "*", AclOperation.READ),
    ]
    for topic in read_topics:
        bindings.append(binding(READER, ResourceType.TOPIC, topic, AclOperation.READ))
        bindings.append(binding(READER, ResourceType.TOPIC, topic, AclOperation.DESCRIBE))
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": librdkafka_logger(),
                         **sec.client_config(ADMIN)})
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
    return len(bindings)
