"""The one way tests and benchmarks start a server: on port 0, the port read back.

A server is started with `--port 0` (or its own way of asking the kernel for a
free port), prints the address it bound, and that address is read from its
output: no port is picked beforehand, so two tests can never race for one.
`start()` then waits, bounded, until a health path answers; `stop()` ends the
whole process group, so a server's own children (a fleet's workers, a peer's
uvicorn workers) go with it; with `die_with_parent`, so does a server whose
starter was killed. Used by `tests/` and, through `sys.path`, by `benchmarks/`:
this module needs only the standard library and httpx.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
STARTUP_DEADLINE_S = 20.0
#: How a server says where it listens: jarvis serve ("serving on http://…"), uvicorn
#: ("Uvicorn running on http://…"), and most others print a URL with the real port.
ANNOUNCED = re.compile(rb"https?://(?:127\.0\.0\.1|localhost):(\d{2,5})\b")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class StartError(AssertionError):
    """The server exited or stayed silent before it answered; carries its output."""


@dataclass
class Process:
    """A server started by `start()`: its process, the port it bound, its output."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    #: stdout and stderr, interleaved, as the server wrote them.
    output: Path
    argv: list[str]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, limit: int = 2000) -> str:
        """The end of what the server printed (for a failure message)."""
        return self.output.read_bytes()[-limit:].decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `sig` to the server, wait up to `timeout`, then SIGKILL its whole group.

        Returns the server's exit code. Safe to call twice, and after it died.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its children too, whatever it did
        if self.proc.poll() is None:
            self.proc.wait(5)
        return int(self.proc.returncode)


def start(
    argv: Sequence[str],
    *,
    name: str,
    workdir: Path,
    ready: str | None = "/healthz",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    deadline_s: float = STARTUP_DEADLINE_S,
    die_with_parent: bool = False,
) -> Process:
    """Start `argv` (a server told to bind port 0), read its port, wait until it answers.

    `port`: the port when the caller chose it (a server that cannot bind port 0);
    otherwise it is read from the server's output (`ANNOUNCED`). `ready`: a path
    that answers 200 once the server serves; None waits for the port alone.
    `die_with_parent`: the kernel kills the server when the calling thread ends,
    however it ends (see `kill_on_parent_death`, which says when that is safe):
    for a script that may be killed with -9 and must not orphan its servers.
    Raises `StartError` with the server's output if it exits or misses the deadline,
    having stopped it.
    """
    output = workdir / f"{name}.out"
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            list(argv),
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=merged,
            cwd=cwd,
            start_new_session=True,  # its own group: stop() reaches its children
            # Checked by kill_on_parent_death: only ever set in a one-thread process.
            preexec_fn=kill_on_parent_death() if die_with_parent else None,  # noqa: PLW1509
        )
    server = Process(name, proc, port or 0, output, list(argv))
    try:
        _wait_ready(server, ready, time.monotonic() + deadline_s)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


def kill_on_parent_death() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets SIGKILL when the thread
    that starts it ends, the process included, even by kill -9 (Linux's
    PR_SET_PDEATHSIG; kept across exec). None (nothing to do) on other systems.

    Safe only in a process with one thread: a preexec_fn runs Python between fork
    and exec, where the child can deadlock on a lock (malloc's, the import lock)
    that another thread of the parent held at the fork. So this raises
    RuntimeError when another Python thread runs; start servers before any thread
    (an event loop's executor, a reader thread), and from the main thread, since
    the signal follows the starting thread, not the process.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.active_count() > 1:
        raise RuntimeError(
            "kill_on_parent_death needs a one-thread process (preexec_fn can deadlock "
            f"in a threaded one); running: {[t.name for t in threading.enumerate()]}"
        )
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in it
    parent, sigkill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal us
            os.kill(os.getpid(), sigkill)

    return preexec


def _wait_ready(server: Process, ready: str | None, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise StartError(
                f"{server.name} exited {server.proc.returncode} before it served:\n{server.tail()}"
            )
        if not server.port:
            found = ANNOUNCED.search(server.output.read_bytes())
            server.port = int(found.group(1)) if found else 0
        if server.port and _answers(server, ready):
            return
        time.sleep(0.05)
    said = "answered" if server.port else "printed the address it bound"
    raise StartError(f"{server.name} never {said} within the deadline:\n{server.tail()}")


def _answers(server: Process, ready: str | None) -> bool:
    if ready is None:
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 0.5):
            return True
        return False
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{server.url}{ready}", timeout=0.5).status_code == 200
    return False


def closed_port() -> int:
    """A loopback port nothing listens on (it was just free): for "unreachable" tests,
    never for starting a server."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
