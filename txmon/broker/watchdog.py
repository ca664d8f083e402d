"""Stops a broker when the process that owns it dies without stopping it.

Test sessions start brokers of their own; a session killed by a timeout or SIGKILL never
runs its teardown, and on a shared machine the orphaned JVMs would pile up. The broker
runs in its own session (so it outlives `txmon kafka up`), which is why it needs this
small separate guard instead of dying with its parent.

Usage: python -m txmon.broker.watchdog OWNER_PID BROKER_PID PROPERTIES_FILE
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 1.0
GRACE_S = 30.0


def pid_alive(pid: int) -> bool:
    """A zombie is dead for our purposes. Stdlib only: this module runs on its own."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_broker(pid: int, properties: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return properties.encode() in cmd


def main(argv: list[str]) -> int:
    owner, broker, properties = int(argv[0]), int(argv[1]), argv[2]
    while pid_alive(broker) and _is_broker(broker, properties):
        if not pid_alive(owner):
            os.kill(broker, signal.SIGTERM)
            deadline = time.monotonic() + GRACE_S
            while pid_alive(broker) and time.monotonic() < deadline:
                time.sleep(0.2)
            if pid_alive(broker) and _is_broker(broker, properties):
                os.kill(broker, signal.SIGKILL)
            return 0
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
