"""Processes and ports we start and stop ourselves: the broker, its watchdog,
Prometheus, Alertmanager, the demo's services.

Each of them needs the same few answers (is this pid still running, is this port free,
stop it now, wait until something holds) and each had its own copy with its own
mistakes: a zombie counted as alive, a connect test that missed a port bound but not
yet listening. One copy, stdlib only: the broker's watchdog imports it and runs on its
own, without the rest of txmon loaded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


def pid_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie (exited, not yet reaped) is dead: it answers
    kill(pid, 0) but will never do anything again. Another user's process is alive."""
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


def cmdline(pid: int) -> list[str]:
    """The command line of `pid` ([] when unknown): tells our process from another that
    reused its pid."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_pid(path: Path) -> int | None:
    """The pid recorded in `path`, or None if there is none or it is garbled. Whether it
    still runs is pid_alive's question."""
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    Path(path).write_text(f"{pid}\n")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _reap(pid: int) -> None:
    """Collect `pid`'s exit status if it is our child, so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _running(pid: int, group: bool) -> bool:
    _reap(pid)
    if not group:
        return pid_alive(pid)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate(pid: int, timeout: float, *, group: bool = False,
              kill_wait: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds; True if it
    stopped by itself (or was not running). `group`: signal the process group `pid`
    leads (a process started with start_new_session=True) and wait for all of it, so
    the children of a service go with it. Reaps `pid` when it is our child."""
    if not _running(pid, group):
        return True
    _signal(pid, signal.SIGTERM, group)
    if wait_until(lambda: not _running(pid, group), timeout):
        return True
    force_kill(pid, kill_wait, group=group)
    return False


def force_kill(pid: int, timeout: float = 10.0, *, group: bool = False) -> bool:
    """SIGKILL, no clean shutdown (fault tests, a process that ignored SIGTERM), and
    wait up to `timeout` seconds for it to be gone; True if it is."""
    _signal(pid, signal.SIGKILL, group)
    return wait_until(lambda: not _running(pid, group), timeout)


def port_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on host:port now (SO_REUSEADDR as servers set it,
    so sockets lingering in TIME_WAIT do not count as busy, but a port bound and not
    yet listening does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
        return True


def port_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports_free(ports: list[int], timeout: float, host: str = HOST) -> bool:
    """Wait until every port is free (a stopped server's listener goes a moment after
    its process); False if one is still taken after `timeout` seconds."""
    return wait_until(lambda: all(port_free(p, host) for p in ports), timeout)


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports the OS considers free right now (for tests and parallel
    runs); all are held open while choosing, so the OS cannot hand out one twice."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(host: str = HOST) -> int:
    return free_ports(1, host)[0]
