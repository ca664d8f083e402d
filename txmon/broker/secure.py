"""`txmon kafka up --secure`: the local broker with SASL/SCRAM-SHA-512 and ACLs.

Clients authenticate with SCRAM-SHA-512 on the one client listener (SASL_PLAINTEXT on
127.0.0.1); the broker's own connection to its KRaft controller uses SASL/PLAIN with the
admin user. The StandardAuthorizer denies everything no ACL allows. Users:

- ``admin``: super user (the broker itself, and topic/ACL administration);
- ``txmon``: the services (producer, processor, API, exporter): topics and groups;
- ``reader``: read-only, for dashboards and tools: read and describe, nothing else.

Passwords are random, generated once into ``credentials.env`` in the data dir (mode
0600, the dir 0700; never in the repo) and the SCRAM credentials are written into the
metadata when the storage is formatted (StorageTool ``--add-scram``), so they exist
before the broker first starts. Services read them from the environment
(KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD).
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

from txmon.errors import UserError
from txmon.kafka import librdkafka_logger

MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_PLAINTEXT"
CREDENTIALS_FILE = "credentials.env"
ADMIN, SERVICE, READER = "admin", "txmon", "reader"
USERS = (ADMIN, SERVICE, READER)


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


def ensure_credentials(data_dir: Path) -> dict[str, str]:
    """The data dir's passwords, generated on first use (the storage must then be new:
    SCRAM credentials are written when it is formatted)."""
    data_dir = Path(data_dir)
    existing = load_credentials(data_dir)
    if existing:
        return existing
    if (data_dir / "data" / "meta.properties").is_file():
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


def _jaas(module: str, user: str, password: str, **users: str) -> str:
    extra = "".join(f' user_{u}="{p}"' for u, p in users.items())
    return f'{module} required username="{user}" password="{password}"{extra};'


def server_properties(host: str, port: int, controller_port: int,
                      creds: dict[str, str]) -> dict[str, str]:
    admin = creds[ADMIN]
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return {
        "listeners": f"{PROTOCOL}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{PROTOCOL}://{host}:{port}",
        "listener.security.protocol.map": f"CONTROLLER:{PROTOCOL},{PROTOCOL}:{PROTOCOL}",
        "inter.broker.listener.name": PROTOCOL,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "sasl.mechanism.controller.protocol": "PLAIN",
        f"listener.name.{PROTOCOL.lower()}.sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{PROTOCOL.lower()}.{MECHANISM.lower()}.sasl.jaas.config":
            _jaas(scram, ADMIN, admin),
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config":
            _jaas(plain, ADMIN, admin, **{ADMIN: admin}),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN}",
        "allow.everyone.if.no.acl.found": "false",
    }


def format_args(creds: dict[str, str]) -> list[str]:
    """StorageTool arguments creating every user's SCRAM credential at format time."""
    out = []
    for user, password in creds.items():
        out += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
    return out


def client_config(user: str, password: str) -> dict[str, str]:
    """librdkafka settings for one user."""
    return {"security.protocol": PROTOCOL, "sasl.mechanism": MECHANISM,
            "sasl.username": user, "sasl.password": password}


def env_exports(bootstrap: str, user: str, password: str) -> dict[str, str]:
    """What a service needs in its environment to connect as `user`."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SECURITY_PROTOCOL": PROTOCOL,
        "KAFKA_SASL_MECHANISM": MECHANISM,
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": password,
    }


def shell_exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())


def make_secure(kafka, creds: dict[str, str] | None = None) -> dict[str, str]:
    """Turn a LocalKafka (not started yet) into the secure one; returns the passwords."""
    from txmon.broker.server import HOST

    creds = creds or ensure_credentials(kafka.data_dir)
    kafka.extra_properties.update(
        server_properties(HOST, kafka.port, kafka.controller_port, creds))
    kafka.client_config.update(client_config(ADMIN, creds[ADMIN]))
    kafka.format_args = format_args(creds)
    return creds


def attach_if_secure(kafka) -> dict[str, str] | None:
    """A data dir with credentials is a secure broker's: `status`/`up` must speak SASL."""
    creds = load_credentials(kafka.data_dir)
    if creds:
        make_secure(kafka, creds)
    return creds


def apply_acls(bootstrap: str, creds: dict[str, str], read_topics: list[str] | None = None,
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
                         **client_config(ADMIN, creds[ADMIN])})
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
    return len(bindings)
