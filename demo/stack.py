"""The services `make demo` runs, where it keeps them, and `txmon demo down | status`.

Everything of a demo (broker data, worker state, Prometheus, Alertmanager, logs, pids)
lives under $TXMON_STATE_DIR/demo, so a run starts empty and `down` finds all of it; the
steps of `up` are in demo/run.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from devstack.processes import port_free, wait_ports_free
from txmon.errors import UserError
from txmon.settings import DemoSettings, state_dir

HOST = "127.0.0.1"
EXIT_DOWN = 3
SERVICES = ("processor", "api", "exporter", "notify")


# Paths, ports, processes -------------------------------------------------------------


def demo_home() -> Path:
    return state_dir() / "demo"


def demo_ports():
    from devstack.monitoring import Ports

    return Ports.from_env()


def txmon_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "txmon.cli", *args]


def service_commands(ports) -> dict[str, tuple[list[str], int, str]]:
    """name -> (command, port, readiness path)."""
    return {
        "processor": (txmon_command("process", "--metrics-port", str(ports.processor)),
                      ports.processor, "/metrics"),
        "api": (txmon_command("api", "--host", HOST, "--port", str(ports.api)),
                ports.api, "/healthz"),
        "exporter": (txmon_command("export", "--host", HOST, "--port", str(ports.exporter)),
                     ports.exporter, "/metrics"),
        "notify": (txmon_command("notify", "--host", HOST, "--port", str(ports.notify)),
                   ports.notify, "/healthz"),
    }


def make_daemon(name: str, command: list[str], port: int, path: str, home: Path, env: dict):
    from devstack.monitoring import Daemon

    class ServiceDaemon(Daemon):
        """A service on a port, or (port 0) a process with nothing to ask, like the
        producer; either way stopped with its process group."""

        def ready(self) -> bool:
            return True if not self.port else super().ready()

    return ServiceDaemon(name, command, port, path, home, env, group=True)


def all_daemons(home: Path, ports, env: dict | None = None) -> dict:
    env = env or {}
    out = {name: make_daemon(name, cmd, port, path, home, env)
           for name, (cmd, port, path) in service_commands(ports).items()}
    out["producer"] = make_daemon("producer", [], 0, "", home, env)
    return out


def broker(home: Path):
    from devstack.kafka.server import LocalKafka

    return LocalKafka(data_dir=home / "kafka")


def external_bootstrap() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def read_state(home: Path) -> dict:
    try:
        return json.loads((home / "demo.json").read_text())
    except (OSError, ValueError):
        return {}


def monitoring_installed() -> bool:
    from devstack.monitoring import alertmanager_binary, prometheus_binary

    return bool(prometheus_binary() and alertmanager_binary())


def needed_ports(cfg: DemoSettings, ports, kafka) -> list[tuple[str, int, str]]:
    needed = [
        ("processor metrics", ports.processor, "TXMON_PROCESSOR_METRICS_PORT"),
        ("api", ports.api, "TXMON_API_PORT"),
        ("exporter", ports.exporter, "TXMON_EXPORTER_PORT"),
        ("notify", ports.notify, "TXMON_NOTIFY_PORT"),
    ]
    if cfg.monitoring and monitoring_installed():
        needed += [("prometheus", ports.prometheus, "TXMON_PROMETHEUS_PORT"),
                   ("alertmanager", ports.alertmanager, "TXMON_ALERTMANAGER_PORT")]
    if kafka is not None:
        needed += [("kafka", kafka.port, "TXMON_KAFKA_PORT"),
                   ("kafka controller", kafka.controller_port, "TXMON_KAFKA_CONTROLLER_PORT")]
    return needed


# down / status ----------------------------------------------------------------------------


def down() -> int:
    home = demo_home()
    ports = demo_ports()
    state = read_state(home)
    daemons = all_daemons(home, ports)
    for name in ("producer", *SERVICES):
        t0 = time.monotonic()
        stopped = daemons[name].stop()
        print(f"{name}: " + (f"stopped in {time.monotonic() - t0:.1f}s" if stopped
                             else "was not running"), flush=True)
    if (home / "monitoring").exists():
        from devstack import monitoring as mon

        for line in mon.down(ports, home / "monitoring"):
            print(line)
    if state.get("broker") != "external" and (home / "kafka").exists():
        kafka = broker(home)
        if kafka.down():
            print(f"kafka: stopped; port {kafka.port} is free")
        else:
            print("kafka: was not running")
    services = service_commands(ports)
    wait_ports_free([port for _, port, _ in services.values()], 10.0)
    busy = [f"{name} {port}" for name, (_, port, _) in services.items() if not port_free(port)]
    if busy:
        raise UserError(f"still in use after stopping the demo: {', '.join(busy)} "
                        "(held by something the demo did not start?)")
    return 0


def status() -> int:
    home = demo_home()
    ports = demo_ports()
    state = read_state(home)
    all_up = True
    for name, daemon in all_daemons(home, ports).items():
        line = daemon.status()
        if name == "producer":
            print(f"producer: {'streaming' if daemon.pid() else 'not streaming'}")
            continue
        all_up &= line.startswith("running")
        print(f"{name}: {line}")
    if state.get("monitoring"):
        from devstack import monitoring as mon

        lines, ok = mon.status(ports, home / "monitoring")
        all_up &= ok
        for line in lines:
            print(line)
    if state.get("broker") == "external":
        print(f"kafka: external broker {state.get('bootstrap')}")
    elif (home / "kafka").exists():
        st = broker(home).status()
        all_up &= st.up
        print(f"kafka: {st.describe()}")
    else:
        print("kafka: the demo has not run")
        all_up = False
    return 0 if all_up else EXIT_DOWN


