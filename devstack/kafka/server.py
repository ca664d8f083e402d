"""One single-node KRaft broker (broker + controller in one JVM) in a data directory.

The broker runs detached in its own session so it outlives `txmon kafka up`; its pid is
recorded in the data directory, and every check asks both the process table and the
broker itself (a metadata request), so `status` never reports a dead or hung broker as up.
The same object serves the CLI, the pytest fixtures, the demo and the fault tests, which
kill and restart a broker keeping its data.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from devstack.kafka.fetch import FetchResult, fetch, java_executable, kafka_home
from devstack.processes import (
    cmdline,
    force_kill,
    pid_alive,
    port_accepts,
    port_free,
    read_pid,
    terminate,
    wait_ports_free,
    write_pid,
)
from txmon.errors import UserError
from txmon.settings import BrokerSettings

HOST = "127.0.0.1"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
FORMAT_ARGFILE = "format.args"
_ARGFILE_ESCAPES = str.maketrans(
    {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"})
# Generous: on a shared 2-core machine under heavy load a start can take ~40 s.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
_HEAP_RE = re.compile(r"^\d+[kKmMgG]?$")

log = logging.getLogger(__name__)


def _random_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. Like
    Kafka's Uuid.randomUuid, never one starting with `-`: kafka-storage's argument
    parser would take it for an option (1 format in 64 failed that way)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def argfile_text(args: list[str]) -> str:
    """The java launcher's @argfile syntax: each argument double-quoted on its own line,
    so whitespace, `#` (a comment) and quotes stay in it; inside quotes `\\` escapes."""
    return "".join(f'"{arg.translate(_ARGFILE_ESCAPES)}"\n' for arg in args)


@contextlib.contextmanager
def private_argfile(path: Path, args: list[str]):
    """`args` in an @argfile at `path` that only the owner can read, for the length of
    the block and no longer. O_EXCL: never through a file or link planted there."""
    path.unlink(missing_ok=True)  # left by a format that was killed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(argfile_text(args))
        yield path
    finally:
        path.unlink(missing_ok=True)


def cds_archive(java: str, version: str) -> Path:
    """Where the class-data-sharing archive for this JVM build and Kafka version lives.

    Loading Kafka's ~45 jars dominates its start on a busy 2-core machine; a dynamic CDS
    archive written by the first broker's clean exit cuts later starts by about a third.
    The JVM validates the archive and ignores one that does not match."""
    real = os.path.realpath(java)
    try:
        stamp = f"{real}:{os.stat(real).st_mtime_ns}"
    except OSError:
        stamp = real
    tag = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    return kafka_home(version) / f"cds-{tag}.jsa"


def tail(path: Path, lines: int) -> list[str]:
    if not path.is_file():
        return []
    with open(path, errors="replace") as fh:
        return [ln.rstrip("\n") for ln in deque(fh, maxlen=lines)]


@dataclass(frozen=True)
class Status:
    pid: int | None
    answering: bool
    bootstrap: str
    data_dir: Path

    @property
    def up(self) -> bool:
        return self.pid is not None and self.answering

    def describe(self) -> str:
        if self.up:
            return f"up: pid {self.pid}, {self.bootstrap}, data {self.data_dir}"
        if self.pid is not None:
            return f"not answering: pid {self.pid} alive but {self.bootstrap} gives no metadata"
        return f"down (no broker running for {self.data_dir})"


@dataclass(frozen=True)
class UpResult:
    pid: int
    started: bool
    seconds: float
    bootstrap: str


@dataclass(frozen=True)
class BrokerOptions:
    """How a LocalKafka runs, beyond where (data dir) and on which ports.

    `heap` and `version` default to TXMON_KAFKA_HEAP and the pinned Kafka version;
    `extra_properties` override or add server.properties entries (e.g. SASL listeners);
    `client_config` is merged into the probe client's config to match them;
    `format_args` are added to the storage format (SCRAM users: devstack.kafka.secure).
    With `owner_pid`, a watchdog stops the broker if that process dies without stopping
    it (test sessions pass their own pid)."""

    heap: str | None = None
    version: str | None = None
    extra_properties: dict[str, str] = field(default_factory=dict)
    client_config: dict[str, str] = field(default_factory=dict)
    owner_pid: int | None = None
    format_args: tuple[str, ...] = ()
    #: A node of a cluster (devstack.kafka.cluster): its id, every voter's controller port
    #: by node id, and the cluster id all nodes' storage is formatted with.
    node_id: int = 1
    voters: dict[int, int] | None = None
    cluster_id: str | None = None


class LocalKafka:
    """A single-node Kafka (KRaft) in `data_dir`, listening on 127.0.0.1 only; the
    rest of its settings in `options` (BrokerOptions). devstack.kafka.secure may amend
    extra_properties, client_config and format_args before the first start."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        options: BrokerOptions | None = None,
    ) -> None:
        options = options or BrokerOptions()
        env = BrokerSettings.from_env()
        self.data_dir = Path(data_dir) if data_dir else env.data_dir
        self.port = port or env.port
        self.controller_port = controller_port or env.controller_port
        self.heap = options.heap or env.heap
        self.jvm_flags = shlex.split(env.jvm_flags)
        if not _HEAP_RE.match(self.heap):
            raise UserError(f"bad heap size {self.heap!r}: use a JVM size such as 512m or 1g")
        if self.port == self.controller_port:
            raise UserError(f"broker and controller ports must differ (both {self.port})")
        self.version = options.version or env.version
        self.extra_properties = dict(options.extra_properties)
        self.client_config = dict(options.client_config)
        self.owner_pid = options.owner_pid
        self.format_args = list(options.format_args)  # e.g. --add-scram (devstack.kafka.secure)
        self.node_id = options.node_id
        self.voters = dict(options.voters or {self.node_id: self.controller_port})
        self.cluster_id = options.cluster_id
        self._proc: subprocess.Popen | None = None
        self._watchdogs: list[subprocess.Popen] = []

    # Paths -----------------------------------------------------------------------------
    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j2, rolled at 10 MB)."""
        return self.log_dir / "server.log"

    @property
    def out_file(self) -> Path:
        """The JVM's stdout/stderr: startup failures land here."""
        return self.log_dir / "kafka.out"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def cds_pending_file(self) -> Path:
        """Names the CDS archive the running broker writes at exit, if it writes one."""
        return self.data_dir / "cds-pending"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "data"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    # Configuration ---------------------------------------------------------------------
    def server_properties(self) -> dict[str, str]:
        """KRaft, every node both broker and controller (one node, or each node of a
        local cluster). The quorum is static (controller.quorum.voters) rather than
        formatted with --standalone, so the data dir keeps working when the ports change
        between runs. Internal topics are replicated like txmon's own (three copies, two
        in sync, once there are three nodes)."""
        voters = ",".join(f"{n}@{HOST}:{port}" for n, port in sorted(self.voters.items()))
        copies, in_sync = str(min(3, len(self.voters))), str(min(2, len(self.voters)))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            "default.replication.factor": copies,
            "min.insync.replicas": in_sync,
            "offsets.topic.replication.factor": copies,
            "transaction.state.log.replication.factor": copies,
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": copies,
            "share.coordinator.state.topic.min.isr": in_sync,
            "group.initial.rebalance.delay.ms": "0",
            # Every component creates its topics explicitly (txmon.kafka.admin); Faust
            # creates its own internal topics. A typo must not silently make a new topic.
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        props.update(self.extra_properties)
        return props

    def _log4j_properties(self) -> str:
        log_file = self.log_file
        return "\n".join(
            [
                "status = warn",
                "appender.file.type = RollingFile",
                "appender.file.name = file",
                f"appender.file.fileName = {log_file}",
                f"appender.file.filePattern = {log_file}.%i",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "appender.file.policies.type = Policies",
                "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
                "appender.file.policies.size.size = 10MB",
                "appender.file.strategy.type = DefaultRolloverStrategy",
                "appender.file.strategy.max = 3",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = file",
                "logger.statechange.name = state.change.logger",
                "logger.statechange.level = WARN",
                "logger.request.name = kafka.request.logger",
                "logger.request.level = WARN",
                "",
            ]
        )

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        header = "# Written by txmon kafka up; rewritten at each start.\n"
        self.properties_file.write_text(header + body)
        self.log4j_file.write_text(self._log4j_properties())

    # Process ---------------------------------------------------------------------------
    def fetch(self) -> FetchResult:
        return fetch(self.version)

    def pid(self) -> int | None:
        """The pid of this data dir's running broker, or None (stale pid files ignored)."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        pid = read_pid(self.pid_file)
        if pid is None or not pid_alive(pid):
            return None
        cmd = cmdline(pid)
        if cmd and (MAIN_CLASS not in cmd or str(self.properties_file) not in cmd):
            return None  # the pid was reused by something else
        return pid

    def _running_port(self) -> int | None:
        try:
            for line in self.properties_file.read_text().splitlines():
                if line.startswith("listeners="):
                    match = re.search(r"PLAINTEXT://[^:,]+:(\d+)", line)
                    if match:
                        return int(match.group(1))
                    match = re.search(r"://[^:,]+:(\d+)", line)
                    return int(match.group(1)) if match else None
        except OSError:
            return None
        return None

    def answers(self, timeout: float = 3.0) -> bool:
        """True if the broker answers a metadata request and lists itself."""
        if not port_accepts(self.port, HOST):
            return False
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        from txmon.kafka import probe_logger

        conf = {"bootstrap.servers": self.bootstrap, "logger": probe_logger(),
                **self.client_config}
        try:
            meta = AdminClient(conf).list_topics(timeout=timeout)
        except KafkaException:
            return False
        return bool(meta.brokers)

    def status(self) -> Status:
        pid = self.pid()
        if pid is not None:
            self.port = self._running_port() or self.port
        return Status(pid, pid is not None and self.answers(), self.bootstrap, self.data_dir)

    def _storage_formatted(self) -> bool:
        return (self.log_dirs / "meta.properties").is_file()

    @property
    def format_argfile(self) -> Path:
        return self.data_dir / FORMAT_ARGFILE

    def format_command(self, java: str, libs: Path) -> tuple[list[str], list[str]]:
        """(java's command line, the StorageTool arguments it reads from format_argfile).

        The arguments carry the SCRAM passwords (format_args), which must not show in
        /proc/<pid>/cmdline. The launcher expands an @argfile only before the main class
        (one after it reaches the tool verbatim), so the file holds the main class and
        all its arguments; -XX:-UsePerfData keeps them out of hsperfdata too."""
        archive = cds_archive(java, self.version)
        cds = [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"] if archive.is_file() else []
        cmd = [java, *cds, "-XX:-UsePerfData", f"-Dlog4j2.configurationFile={self.log4j_file}",
               "-cp", f"{libs}/*", f"@{self.format_argfile}"]
        tool = [STORAGE_TOOL, "format", "-t", self.cluster_id or _random_cluster_id(),
                "-c", str(self.properties_file), *self.format_args]
        return cmd, tool

    def _format(self, java: str, libs: Path) -> None:
        cmd, tool = self.format_command(java, libs)
        with private_argfile(self.format_argfile, tool):
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise UserError(f"formatting Kafka storage in {self.log_dirs} failed: "
                            f"{lines[-1] if lines else proc.returncode}")

    def up(self, timeout: float = START_TIMEOUT_S) -> UpResult:
        """Start the broker unless this data dir's broker already runs; return once it
        answers a metadata request."""
        started = time.monotonic()
        pid, spawned = self.spawn()
        self.wait_ready(pid, spawned, started + timeout)
        return UpResult(pid, spawned, time.monotonic() - started, self.bootstrap)

    def spawn(self) -> tuple[int, bool]:
        """Start the JVM without waiting for it: (pid, whether it was started now). A
        cluster's nodes start together, since none answers before a quorum is up."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            pid = self.pid()
            if pid is not None:
                self.port = self._running_port() or self.port
                return pid, False
            for port, what in ((self.port, "broker"), (self.controller_port, "controller")):
                if not port_free(port):
                    raise UserError(
                        f"port {port} on {HOST} ({what}) is already in use by another process; "
                        f"choose another with --{'port' if what == 'broker' else 'controller-port'}"
                    )
            java = java_executable()
            libs = self.fetch().libs
            self.write_config()
            if not self._storage_formatted():
                log.info("formatting KRaft storage in %s", self.log_dirs)
                self._format(java, libs)
            log.info("starting Kafka %s on %s (data %s)", self.version, self.bootstrap,
                     self.data_dir)
            cmd = [
                java, f"-Xmx{self.heap}", f"-Xms{self.heap}", *self.jvm_flags,
                *self._cds_flags(java),
                f"-Dlog4j2.configurationFile={self.log4j_file}",
                f"-Dkafka.logs.dir={self.log_dir}",
                "-cp", f"{libs}/*", MAIN_CLASS, str(self.properties_file),
            ]
            with open(self.out_file, "ab") as out:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True, cwd=self.data_dir,
                )
            pid = self._proc.pid
            write_pid(self.pid_file, pid)
            if self.owner_pid is not None:
                self._start_watchdog(pid)
            return pid, True

    def wait_ready(self, pid: int, spawned: bool, deadline: float) -> None:
        """Until the broker answers; one started now that never does is stopped again."""
        try:
            self._wait_ready(pid, deadline)
        except UserError:
            if spawned:
                with self._lock():
                    self._stop_pid(pid, 5.0)
                    self._settle_cds(clean_exit=False)
                    self.pid_file.unlink(missing_ok=True)
            raise

    def _start_watchdog(self, pid: int) -> None:
        self._watchdogs = [w for w in self._watchdogs if w.poll() is None]
        self._watchdogs.append(subprocess.Popen(
            [sys.executable, "-m", "devstack.kafka.watchdog", str(self.owner_pid), str(pid),
             str(self.properties_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        ))

    def _reap_watchdogs(self) -> None:
        """Watchdogs leave within a poll interval of their broker's exit."""
        for watchdog in self._watchdogs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=3)
        self._watchdogs = [w for w in self._watchdogs if w.poll() is None]

    def _cds_flags(self, java: str) -> list[str]:
        self._settle_cds(clean_exit=False)  # left by a broker that died on its own
        if not BrokerSettings.from_env().cds:
            return []
        archive = cds_archive(java, self.version)
        if archive.is_file():
            return [f"-XX:SharedArchiveFile={archive}", "-Xlog:cds*=off"]
        pending = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.cds_pending_file.write_text(f"{pending}\n{archive}\n")
        return [f"-XX:ArchiveClassesAtExit={pending}", "-Xlog:cds*=off"]

    def _settle_cds(self, clean_exit: bool) -> None:
        """Publish the archive the broker wrote at a clean exit; discard a partial one."""
        try:
            pending, archive = map(Path, self.cds_pending_file.read_text().split())
        except (OSError, ValueError):
            return
        self.cds_pending_file.unlink(missing_ok=True)
        if clean_exit and pending.is_file() and pending.stat().st_size > 0:
            os.replace(pending, archive)
        else:
            pending.unlink(missing_ok=True)

    def _wait_ready(self, pid: int, deadline: float) -> None:
        while True:
            if not pid_alive(pid) or (self._proc is not None and self._proc.poll() is not None):
                raise UserError(f"Kafka exited during startup; {self._log_hint()}")
            if self.answers(timeout=1.0):
                return
            if time.monotonic() > deadline:
                raise UserError(f"Kafka did not answer at {self.bootstrap} in time; "
                                f"{self._log_hint()}")
            time.sleep(0.2)

    def _log_hint(self) -> str:
        lines = [ln for ln in tail(self.out_file, 20) + tail(self.log_file, 200)
                 if "ERROR" in ln or "Exception" in ln or "Error:" in ln]
        last = lines[-1].strip() if lines else "no error logged"
        return f"last error: {last[:300]} (logs: {self.log_file}, {self.out_file})"

    def _stop_pid(self, pid: int, timeout: float) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; True if it exited by itself."""
        if terminate(pid, timeout):
            return True
        log.warning("Kafka pid %d ignored SIGTERM for %.0fs: killed it", pid, timeout)
        return False

    def _wait_ports_free(self, timeout: float = 10.0) -> None:
        wait_ports_free([self.port, self.controller_port], timeout, HOST)

    def down(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker (SIGTERM, SIGKILL after `timeout`); True if one was running."""
        with self._lock():
            pid = self.pid()
            if pid is None:
                self.pid_file.unlink(missing_ok=True)
                return False
            self.port = self._running_port() or self.port
            self._settle_cds(self._stop_pid(pid, timeout))
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            self._wait_ports_free()
            self._reap_watchdogs()
            return True

    def kill(self) -> bool:
        """SIGKILL, no clean shutdown: for fault tests. The data stays for a restart."""
        with self._lock():
            pid = self.pid()
            if pid is None:
                return False
            self.port = self._running_port() or self.port
            force_kill(pid, 10.0)
            self._settle_cds(clean_exit=False)
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            self._wait_ports_free()
            self._reap_watchdogs()
            return True

    @contextlib.contextmanager
    def _lock(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def __enter__(self) -> LocalKafka:
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()
