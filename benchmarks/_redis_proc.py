"""A private redis-server for the fleet benchmarks: start on a picked loopback port, count, stop.

The one server here that cannot bind port 0 and say which port it got (over TCP,
`--port 0` turns TCP off), so its port is picked, and picked again when someone
took it meanwhile; the rest is `tests/processes.py`'s (start, process-group stop,
killed with the benchmark). No persistence, loopback only. Command counts come
from `INFO commandstats`; `Monitor` reads `MONITOR` in a thread to tell the
commands a client sent from those a Lua script ran, and which script.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis
from _server_proc import ADDRESS_IN_USE, HOST, cpu_seconds, processes, unused_port
from redis.backoff import NoBackoff
from redis.retry import Retry

#: Tries at a picked port: another process can bind it between the pick and redis's bind.
BIND_ATTEMPTS = 5
_MONITOR_LINE = re.compile(r"^\+[0-9.]+ \[\d+ ([^\]]+)\] (.*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class RedisServer:
    """One running redis-server on a loopback port."""

    process: processes.Process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return self.process.port

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, decode_responses=True)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def command_calls(self) -> dict[str, int]:
        """Calls per command since start or the last reset, from `INFO commandstats`
        (commands run inside Lua scripts included: Redis counts them too)."""
        with contextlib.closing(self.client()) as client:
            stats = client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def reset_stats(self) -> None:
        with contextlib.closing(self.client()) as client:
            client.config_resetstat()

    def stop(self) -> None:
        self.process.stop()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    """A redis-server on a picked loopback port for the duration of the block.

    SIGTERM to the benchmark becomes SystemExit, so the server is stopped then too.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server: RedisServer | None = None
    try:
        server = _start(binary, workdir)
        yield server
    finally:
        if server is not None:
            server.stop()
        signal.signal(signal.SIGTERM, previous)


def _start(binary: str, workdir: Path) -> RedisServer:
    """Start redis-server on a picked port; pick again if it could not bind it."""
    for attempt in range(1, BIND_ATTEMPTS + 1):
        port = unused_port()
        argv = [
            binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
            "--dir", str(workdir),  # and its log on stdout, into redis.out
        ]  # fmt: skip
        try:
            started = processes.start(
                argv,
                name="redis",
                workdir=workdir,
                cwd=workdir,
                port=port,
                ready=None,  # the port accepts; _wait_own then asks who answers
                die_with_parent=True,
            )
            server = RedisServer(started)
            try:
                _wait_own(server)
            except BaseException:
                started.stop(signal.SIGKILL)
                raise
        except processes.StartError as exc:
            if ADDRESS_IN_USE not in str(exc) or attempt == BIND_ATTEMPTS:
                raise
        else:
            return server
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _wait_own(server: RedisServer) -> None:
    """Wait until this redis-server answers on its port (INFO gives its `process_id`),
    not a process that took the picked port first: then this one exits, unable to bind."""
    end = time.monotonic() + processes.STARTUP_DEADLINE_S
    proc = server.process.proc
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise processes.StartError(
                f"redis-server exited {proc.returncode}:\n{server.process.tail()}"
            )
        with (
            contextlib.suppress(redis.RedisError, OSError),
            contextlib.closing(_one_shot_client(server.port)) as c,
        ):
            if int(c.info("server")["process_id"]) == server.pid:
                return
        time.sleep(0.05)
    raise processes.StartError(
        f"redis-server did not answer within {processes.STARTUP_DEADLINE_S:.0f}s:\n"
        f"{server.process.tail()}"
    )


def _one_shot_client(port: int) -> redis.Redis:
    """A client that asks once, briefly: redis-py's default retries would wait seconds
    on a port held by a process that accepts and never answers."""
    return redis.Redis(
        host=HOST, port=port, socket_timeout=0.5, socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def script_sha(source: str) -> str:
    """The SHA1 Redis names a script by (EVALSHA's first argument)."""
    return hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis's name, not security


@dataclass(frozen=True, slots=True)
class Op:
    """One command as MONITOR saw it: who ran it (`lua` or a client), its name, its args."""

    origin: str
    command: str
    args: tuple[str, ...]

    def arg(self, i: int) -> str:
        return self.args[i] if i < len(self.args) else ""

    @property
    def from_lua(self) -> bool:
        return self.origin == "lua"


class Monitor:
    """`MONITOR` read in a thread: every command Redis ran while it was on, in order.

    MONITOR slows Redis down, so it is for counting runs, never for timed ones.
    """

    def __init__(self, server: RedisServer) -> None:
        self._server = server
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ops: list[Op] = []
        self.error: str | None = None

    def __enter__(self) -> Monitor:
        self._sock = socket.create_connection((HOST, self._server.port), timeout=5)
        self._sock.sendall(b"MONITOR\r\n")
        reply = self._sock.recv(5)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"MONITOR refused: {reply!r}")
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()

    def _read(self) -> None:
        pending = b""
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.error = str(exc)
                return
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\r\n")
            for line in lines:
                match = _MONITOR_LINE.match(line.decode("utf-8", "replace"))
                if match is not None:
                    words = _QUOTED.findall(match.group(2))
                    if words:
                        command, *args = words
                        self.ops.append(Op(match.group(1), command.lower(), tuple(args[:4])))
