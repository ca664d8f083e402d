"""Stops a broker when the process that owns it dies without stopping it.

Test sessions start brokers of their own; a session killed by a timeout or SIGKILL never
runs its teardown, and on a shared machine the orphaned JVMs would pile up. The broker
runs in its own session (so it outlives `txmon kafka up`), which is why it needs this
small separate guard instead of dying with its parent. It imports only the stdlib and
devstack.processes, so it starts fast and holds little memory.

Usage: python -m devstack.kafka.watchdog OWNER_PID BROKER_PID PROPERTIES_FILE
"""

from __future__ import annotations

import os
import signal
import sys
import time

from devstack.processes import cmdline, pid_alive, wait_until

POLL_S = 1.0
GRACE_S = 30.0


def _is_broker(pid: int, properties: str) -> bool:
    return properties in cmdline(pid)


def main(argv: list[str]) -> int:
    owner, broker, properties = int(argv[0]), int(argv[1]), argv[2]
    while pid_alive(broker) and _is_broker(broker, properties):
        if not pid_alive(owner):
            os.kill(broker, signal.SIGTERM)
            wait_until(lambda: not pid_alive(broker), GRACE_S, interval=0.2)
            # Checked again before SIGKILL: the pid may belong to someone else by now.
            if pid_alive(broker) and _is_broker(broker, properties):
                os.kill(broker, signal.SIGKILL)
            return 0
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
