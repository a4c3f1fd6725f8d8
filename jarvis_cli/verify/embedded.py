"""The embedded reference server: `jarvis serve` as a subprocess on a free loopback port.

It binds port 0 and its real port is read back from its own `server_start`
log line, so no other process can take the port between choice and bind.
It runs the synthetic model fast (a run must take seconds) and with the
`--fault`s asked for. With `workers` above 1 it is a fleet (`jarvis serve
--workers N --registry URL`): the workers share the port and each writes its
own log file, all read as one (`serverlog.files`). On a hang its stacks are
captured from outside: `py-spy dump` when installed, and always the
`loop_blocked` lines its own watchdog thread logs while the loop is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from jarvis.config import ServerConfig
from jarvis.exceptions import ConfigError, ServerStartError
from jarvis.settings import GuardSettings
from jarvis.vocabulary import Event

from ..faults import parse_faults
from . import serverlog
from .plan import EMBEDDED_DETACH_GRACE_S

#: The synthetic model's pace when embedded: fast enough for a run of a few seconds,
#: slow enough that a long answer is still streaming when the next prompt lands.
TOKEN_RATE = 200
FIRST_TOKEN_MS = 10
#: Resume on, so that the resume scenario has something to prove. A dropped client's
#: answer runs on for `--detach-grace` for it to come back: the run's own grace (by
#: default `plan.EMBEDDED_DETACH_GRACE_S`), so the server is judged by what it was told.
RESUME_TTL_S = 60.0
#: Seconds to wait for the server to answer /healthz after it is spawned.
STARTUP_DEADLINE_S = 20.0
#: Seconds a graceful stop may take before the process is killed.
STOP_GRACE_S = 3.0
#: A fleet's parent stops its workers one bound after another (`--shutdown-timeout` + 2).
FLEET_STOP_GRACE_S = 6.0
#: `--shutdown-timeout` of the embedded server.
SHUTDOWN_TIMEOUT_S = 2.0
PY_SPY_TIMEOUT_S = 10.0


def check_fleet(
    workers: int,
    registry: str | None,
    *,
    faults: list[str] | tuple[str, ...] = (),
    url: str | None = None,
    workers_flag: str = "--workers",
) -> None:
    """The embedded server's `workers_flag` and `--registry`, checked before anything
    starts: a ConfigError (exit 2) says what is wrong, the server's own rules included."""
    if workers < 1:
        raise ConfigError(f"{workers_flag} must be at least 1, not {workers}")
    if url is not None and (workers > 1 or registry is not None):
        raise ConfigError(
            f"{workers_flag} and --registry shape the embedded server; with --url, start the "
            "fleet yourself (jarvis serve --workers N --registry redis://...)"
        )
    if workers > 1 and registry is None:
        raise ConfigError(
            f"{workers_flag} {workers} needs --registry redis://HOST:PORT/DB: each worker "
            "would keep its own registry, so a session's prompts landing on two workers "
            "would stream side by side. Start redis-server and pass its URL."
        )
    # The server's own checks (the URL's scheme, faults that need the in-process registry).
    ServerConfig(
        workers=workers, guard=GuardSettings(registry=registry), faults=parse_faults(list(faults))
    )


@dataclass(eq=False)
class EmbeddedServer:
    """A running `jarvis serve` that this run started and will stop."""

    proc: asyncio.subprocess.Process
    port: int
    log_path: Path
    stderr_path: Path
    argv: list[str] = field(default_factory=list)
    #: Worker processes behind the port (1: the server is the process itself).
    workers: int = 1
    #: Where the log stood before the server started: its lines are the ones after.
    mark: int = 0

    def __repr__(self) -> str:
        state = "running" if self.proc.returncode is None else f"exited {self.proc.returncode}"
        fleet = f" workers={self.workers}" if self.workers > 1 else ""
        return f"<EmbeddedServer pid={self.proc.pid} port={self.port}{fleet} {state}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log_files(self) -> list[Path]:
        """The files its log is: the one file, or each worker's."""
        return serverlog.files(self.log_path)

    def worker_pids(self) -> list[int]:
        """A fleet's workers (from their `server_start` lines), restarted ones included."""
        pids = []
        for text in serverlog.event_lines(self.log_path, Event.SERVER_START, self.mark):
            pid = serverlog.parse(text).fields.get("pid", "")
            if pid.isdigit() and int(pid) != self.pid and int(pid) not in pids:
                pids.append(int(pid))
        return pids

    async def stop(self, *, hung: bool = False) -> int | None:
        """SIGTERM and wait (bounded), then SIGKILL; a hung server goes straight to SIGKILL:
        its loop cannot run the signal handler that starts a graceful shutdown. SIGKILL
        goes to the server's process group (it leads a session of its own), so a fleet's
        workers never outlive their parent."""
        if self.proc.returncode is None:
            if hung:
                self._kill()
            else:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
            await self._wait(FLEET_STOP_GRACE_S if self.workers > 1 else STOP_GRACE_S)
        if self.proc.returncode is None:
            self._kill()
            await self._wait(STOP_GRACE_S)
        return self.proc.returncode

    def _kill(self) -> None:
        if self.proc.returncode is not None:
            return  # reaped: its pid, hence the group's id, may be someone else's by now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def _wait(self, seconds: float) -> None:
        waiter = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
        if not done:
            waiter.cancel()

    async def stacks(self) -> list[str]:
        """Evidence of where the server is stuck: a stack dump (py-spy if installed, else
        the server's own faulthandler on SIGUSR1) of the server, or of each worker of a
        fleet (its parent only supervises, and dies of SIGUSR1), and its loop_blocked lines."""
        if self.workers > 1:
            pids = await asyncio.to_thread(self.worker_pids)
            targets = [(pid, f"worker pid {pid}") for pid in pids]
        else:
            targets = [(self.pid, "")]
        evidence: list[str] = []
        for pid, label in targets:
            if shutil.which("py-spy") is None:
                evidence += await self._faulthandler_dump(pid, label)
            else:
                evidence += await self._py_spy(pid, label)
        if not targets:
            evidence.append("stacks: no worker logged its server_start")
        blocked = await self.loop_blocked()
        if blocked:
            evidence.append(f"the server's watchdog logged {len(blocked)} loop_blocked line(s):")
            evidence += [f"  {serverlog.clip(line)}" for line in blocked[:5]]
        else:
            evidence.append("no loop_blocked line in the server's log")
        return evidence

    async def loop_blocked(self) -> list[str]:
        """The loop_blocked lines its watchdog (each worker's, in a fleet) logged since
        it started."""
        return await asyncio.to_thread(
            serverlog.event_lines, self.log_path, Event.LOOP_BLOCKED, self.mark
        )

    async def _py_spy(self, pid: int, label: str = "") -> list[str]:
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            return ["stacks: py-spy is not installed (pip install py-spy) so no live dump"]
        of = f" of {label}" if label else ""
        proc = await asyncio.create_subprocess_exec(
            py_spy,
            "dump",
            "--pid",
            str(pid),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(PY_SPY_TIMEOUT_S):
                output, _ = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return [f"stacks{of}: py-spy dump gave no answer within {PY_SPY_TIMEOUT_S:g} s"]
        text = output.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            return [f"stacks{of}: py-spy dump failed ({proc.returncode}): {serverlog.clip(text)}"]
        return [f"stacks{of} (py-spy dump):", *(f"  {line}" for line in text.splitlines())]

    async def _faulthandler_dump(self, pid: int, label: str = "") -> list[str]:
        """Ask the server (or one worker) for its threads' stacks: jarvis serve answers
        SIGUSR1 on stderr, which a fleet's workers share, so they are asked one by one."""
        of = f" of {label}" if label else ""
        try:
            before = self.stderr_path.stat().st_size
            os.kill(pid, signal.SIGUSR1)
        except (OSError, ProcessLookupError) as exc:
            return [f"stacks{of}: could not signal the server: {exc}"]
        text = ""
        for _ in range(20):  # up to 1 s for the dump to land
            await asyncio.sleep(0.05)
            with contextlib.suppress(OSError), self.stderr_path.open("rb") as handle:
                handle.seek(before)
                text = handle.read().decode("utf-8", "replace")
            if "most recent call first" in text and text.endswith("\n"):
                break
        if "most recent call first" not in text:
            return [f"stacks{of}: the server did not answer SIGUSR1 with a stack dump"]
        return [f"stacks{of} (the server's faulthandler, SIGUSR1):",
                *(f"  {line}" for line in text.strip().splitlines())]  # fmt: skip

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def server_argv(
    log_path: Path,
    *,
    cancel_wait: float,
    faults: list[str],
    workers: int = 1,
    registry: str | None = None,
    python: str = sys.executable,
    on_busy: str | None = None,
    detach_grace: float = EMBEDDED_DETACH_GRACE_S,
) -> list[str]:
    argv = [
        python, "-m", "jarvis_cli", "serve",
        "--host", "127.0.0.1", "--port", "0", "--log-file", str(log_path),
        "--token-rate", str(TOKEN_RATE), "--first-token-ms", str(FIRST_TOKEN_MS),
        "--cancel-wait", f"{cancel_wait:g}", "--shutdown-timeout", f"{SHUTDOWN_TIMEOUT_S:g}",
        "--resume-ttl", f"{RESUME_TTL_S:g}", "--detach-grace", f"{detach_grace:g}",
    ]  # fmt: skip
    for fault in faults:
        argv += ["--fault", fault]
    if registry is not None:
        argv += ["--registry", registry]
    if workers > 1:
        argv += ["--workers", str(workers)]
    if on_busy is not None and on_busy != GuardSettings.setting("on_busy").default:
        argv += ["--on-busy", on_busy]
    return argv


def _bound_port(log_path: Path, mark: int, pid: int, *, fleet: bool = False) -> int | None:
    """The port from this process's `server_start` line, once it is written; for a fleet,
    from any of its workers' (they share the parent's socket, so the port is the same)."""
    for text in serverlog.lines_since(log_path, mark):
        line = serverlog.parse(text)
        if line.event != Event.SERVER_START:
            continue
        found = line.fields.get("pid", "")
        ours = (
            _parent_of(int(found)) in (pid, None)
            if fleet and found.isdigit()
            else found == str(pid)
        )
        if ours:
            port = line.fields.get("port", "")
            return int(port) if port.isdigit() else None
    return None


def _parent_of(pid: int) -> int | None:
    """A process's parent, from /proc (None when it cannot be read: gone, or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return int(stat.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


async def start_embedded(
    *,
    log_path: Path | None,
    cancel_wait: float,
    faults: list[str],
    workers: int = 1,
    registry: str | None = None,
    on_busy: str | None = None,
    detach_grace: float | None = None,
) -> EmbeddedServer:
    """Spawn the server (a fleet of `workers` sharing `registry` when above 1), wait
    (bounded) until /healthz answers; ServerStartError if not."""
    if log_path is None:
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="jarvis-verify-"))
        log_path = workdir / "server.log"
    stderr_path = log_path.with_name(log_path.name + ".stderr")
    mark = await asyncio.to_thread(serverlog.size, log_path)
    argv = server_argv(
        log_path,
        cancel_wait=cancel_wait,
        faults=faults,
        workers=workers,
        registry=registry,
        on_busy=on_busy,
        detach_grace=EMBEDDED_DETACH_GRACE_S if detach_grace is None else detach_grace,
    )
    try:
        stderr = await asyncio.to_thread(_open_for_writing, stderr_path)
    except OSError as exc:
        raise ConfigError(f"cannot write the server's stderr to {stderr_path}: {exc}") from exc
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a Ctrl-C meant for us must not race our own stop
        )
    finally:
        stderr.close()
    server = EmbeddedServer(proc, 0, log_path, stderr_path, argv, workers=workers, mark=mark)
    try:
        async with asyncio.timeout(STARTUP_DEADLINE_S):
            await _wait_ready(server)
    except TimeoutError:
        await server.stop(hung=True)
        raise ServerStartError(
            f"the embedded server did not answer within {STARTUP_DEADLINE_S:g} s "
            f"(log {log_path}, stderr {stderr_path})"
        ) from None
    except BaseException:
        await server.stop(hung=True)
        raise
    return server


def _open_for_writing(path: Path) -> BinaryIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


async def _wait_ready(server: EmbeddedServer) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            if server.proc.returncode is not None:
                tail = await asyncio.to_thread(server.stderr_tail)
                raise ServerStartError(
                    f"the embedded server exited with code {server.proc.returncode}: {tail}"
                )
            if not server.port:
                found = await asyncio.to_thread(
                    _bound_port, server.log_path, server.mark, server.pid, fleet=server.workers > 1
                )
                server.port = found or 0
            if server.port:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{server.url}/healthz")).status_code == 200:
                        return
            await asyncio.sleep(0.02)
