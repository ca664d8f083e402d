"""devstack.processes on real processes and real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from devstack.processes import (
    cmdline,
    free_ports,
    pid_alive,
    port_accepts,
    port_free,
    read_pid,
    terminate,
    wait_ports_free,
    wait_until,
    write_pid,
)

IGNORES_SIGTERM = ("import signal, sys, time\n"
                   "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('ready', flush=True)\n"
                   "time.sleep(60)\n")


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []

    def spawn(*args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kwargs)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_a_running_process_is_alive_and_a_reaped_one_is_not(procs):
    proc = procs("sleep", "30")
    assert pid_alive(proc.pid)
    # Right after exec the kernel may not have set the new arguments up yet.
    assert wait_until(lambda: cmdline(proc.pid) == ["sleep", "30"], 5)
    proc.kill()
    proc.wait()
    assert not pid_alive(proc.pid)
    assert cmdline(proc.pid) == []


def test_a_zombie_is_dead(procs):
    proc = procs("true")
    # Not reaped: it stays a zombie, which still answers kill(pid, 0).
    assert wait_until(lambda: not pid_alive(proc.pid), 5)
    proc.wait()


def test_terminate_stops_a_process_with_sigterm_and_reaps_it(procs):
    proc = procs("sleep", "30")
    assert terminate(proc.pid, timeout=5)
    assert not pid_alive(proc.pid)


def test_terminate_kills_a_process_that_ignores_sigterm(procs):
    proc = procs(sys.executable, "-c", IGNORES_SIGTERM, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    assert not terminate(proc.pid, timeout=0.5)
    assert not pid_alive(proc.pid)
    assert time.monotonic() - t0 < 5


def test_terminate_a_group_stops_the_children_too(procs):
    proc = procs("sh", "-c", "sleep 30 & echo $!; wait", stdout=subprocess.PIPE, text=True,
                 start_new_session=True)
    child = int(proc.stdout.readline())
    assert pid_alive(child)
    assert terminate(proc.pid, timeout=5, group=True)
    assert not pid_alive(proc.pid)
    assert wait_until(lambda: not pid_alive(child), 5)


def test_terminate_what_is_not_running_is_a_no_op(procs):
    proc = procs("true")
    proc.wait()
    assert terminate(proc.pid, timeout=1)


def test_port_free_and_accepts(listener):
    port = listener.getsockname()[1]
    assert not port_free(port)
    assert port_accepts(port)
    listener.close()
    assert port_free(port)
    assert not port_accepts(port)
    assert wait_ports_free([port], timeout=1)


def test_a_port_bound_but_not_listening_is_not_free():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert not port_free(port)
        assert not port_accepts(port)
        assert not wait_ports_free([port], timeout=0.3)


def test_free_ports_are_distinct_and_free():
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert all(port_free(p) for p in ports)


def test_wait_until_polls_and_times_out():
    t0 = time.monotonic()
    assert wait_until(lambda: time.monotonic() - t0 > 0.2, timeout=5, interval=0.05)
    assert not wait_until(lambda: False, timeout=0.2, interval=0.05)
    assert time.monotonic() - t0 < 2


def test_pid_files(tmp_path):
    path = tmp_path / "x.pid"
    assert read_pid(path) is None
    write_pid(path, 1234)
    assert read_pid(path) == 1234
    path.write_text("not a pid\n")
    assert read_pid(path) is None
