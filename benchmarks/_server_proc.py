"""Server subprocesses for the benchmarks: started as the tests start them, CPU and RSS read.

Start, port, readiness and stop are `tests/processes.py`'s (port 0, the bound
port read back); here are what only the benchmarks need. CPU and RSS come from
/proc (Linux only), so the benchmarks need no extra dependency and count every
thread of the server (log writer, watchdog).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    # Last, not first: under run_at_commit.sh the commit's jarvis/ (PYTHONPATH) must
    # win over the checkout's; the checkout is here for tests/processes.py only.
    sys.path.append(str(REPO))

# Re-exported (`as`): importing _server_proc is what puts tests/ on sys.path.
from tests import processes as processes  # noqa: E402, PLC0414

HOST = processes.HOST
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads, from /proc/PID/stat."""
    after_name = _stat_fields(pid)  # they start at "state"
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / _CLK_TCK


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may contain spaces)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rpartition(")")[2].split()


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of a process and of each of its descendants alive now, by pid.

    A fleet's parent only supervises; its workers, spawned children, do the work.
    (One pass over /proc: the kernel here has no /proc/PID/task/*/children.)
    """
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except OSError:
            continue  # it exited meanwhile
        child = int(entry.name)
        children.setdefault(int(fields[1]), []).append(child)
        cpu[child] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    found: dict[int, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        if current in cpu:
            found[current] = cpu[current]
            pending += children.get(current, [])
    return found


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def write_syscalls(pid: int) -> int:
    """How many write-family system calls a process has made, from /proc/PID/io."""
    with open(f"/proc/{pid}/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    raise RuntimeError(f"no syscw for pid {pid}")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait), /proc/stat.

    Minus the server's and the client's CPU, this is what other processes
    took from the machine during a measurement: the noise to report.
    """
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is in user.
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
    return busy / _CLK_TCK


def own_cpu_seconds() -> float:
    """CPU seconds of this (the client) process, all threads."""
    return time.process_time()


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file soft limit towards `wanted`; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class ServerProcess(processes.Process):
    """A server started by `tests/processes.py`, with what the benchmarks read of it."""

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def tree_cpu_seconds(self) -> dict[int, float]:
        """CPU seconds of this server and each of its live descendants (workers), by pid."""
        return tree_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def write_syscalls(self) -> int:
        return write_syscalls(self.pid)

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        """A blocking GET, for state checks outside any event loop."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stderr_tail(self, limit: int = 2000) -> str:
        """The end of what the server printed (stdout and stderr, merged)."""
        try:
            return self.tail(limit)
        except OSError:
            return ""


def spawn(name: str, argv: list[str], workdir: Path) -> ServerProcess:
    """Start `argv` (a server told to bind port 0), read its port, wait until /healthz answers.

    The server dies with the benchmark, even one killed with -9 (`die_with_parent`):
    the benchmarks start their servers before any thread, so that is safe.
    """
    started = processes.start(
        argv,
        name=name,
        workdir=workdir,
        # Not the repository: `python -m` puts the cwd first on sys.path, and the
        # server must import jarvis from where the benchmark does (PYTHONPATH).
        cwd=workdir,
        die_with_parent=True,
    )
    return ServerProcess(started.name, started.proc, started.port, started.output, started.argv)


def jarvis_argv(log_file: Path, *options: str) -> list[str]:
    """`jarvis serve` on loopback port 0, run by this interpreter."""
    return [
        sys.executable, "-m", "jarvis_cli", "serve",
        "--host", HOST, "--port", "0", "--log-file", str(log_file),
        *options,
    ]  # fmt: skip


def bare_argv() -> list[str]:
    """The bare Starlette baseline (`_bare_server.py`) on loopback port 0."""
    return [sys.executable, str(BENCH_DIR / "_bare_server.py"), "--host", HOST, "--port", "0"]


def unused_port() -> int:
    """A loopback port free at this instant, only for a server that cannot bind port 0
    and say which port it got: redis-server over TCP, locust's master (its workers need
    the port before it runs). Another process may take it first, so the caller retries
    when the server reports `ADDRESS_IN_USE`."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


#: What redis-server and locust's master print when the picked port was taken meanwhile.
ADDRESS_IN_USE = "Address already in use"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def running(*servers: tuple[str, list[str]], workdir: Path) -> Iterator[list[ServerProcess]]:
    """Start each `(name, argv)` server (argv binds port 0), in order; yield them with
    the ports they bound; stop every started one, its process group, on the way out.

    SIGTERM to the benchmark becomes SystemExit, so the `finally` stops the
    servers then too.
    """
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started: list[ServerProcess] = []
    try:
        for name, argv in servers:
            started.append(spawn(name, argv, workdir))
        yield started
    finally:
        for server in started:
            server.stop()
        signal.signal(signal.SIGTERM, previous)
