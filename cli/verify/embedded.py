"""The embedded reference server: `jarvis serve` as a subprocess on a free loopback port.

It binds port 0 and its real port is read back from its own `server_start`
log line, so no other process can take the port between choice and bind.
It runs the synthetic model fast (a run must take seconds) and with the
`--fault`s asked for. On a hang its stacks are captured from outside:
`py-spy dump` when installed, and always the `loop_blocked` lines its own
watchdog thread logs while the loop is stuck.
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

from jarvis.exceptions import ConfigError, ServerStartError
from jarvis.vocabulary import Event

from . import serverlog

#: The synthetic model's pace when embedded: fast enough for a run of a few seconds,
#: slow enough that a long answer is still streaming when the next prompt lands.
TOKEN_RATE = 200
FIRST_TOKEN_MS = 10
#: Seconds to wait for the server to answer /healthz after it is spawned.
STARTUP_DEADLINE_S = 20.0
#: Seconds a graceful stop may take before the process is killed.
STOP_GRACE_S = 3.0
PY_SPY_TIMEOUT_S = 10.0


@dataclass(eq=False)
class EmbeddedServer:
    """A running `jarvis serve` that this run started and will stop."""

    proc: asyncio.subprocess.Process
    port: int
    log_path: Path
    stderr_path: Path
    argv: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        state = "running" if self.proc.returncode is None else f"exited {self.proc.returncode}"
        return f"<EmbeddedServer pid={self.proc.pid} port={self.port} {state}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self, *, hung: bool = False) -> int | None:
        """SIGTERM and wait (bounded), then SIGKILL; a hung server goes straight to SIGKILL:
        its loop cannot run the signal handler that starts a graceful shutdown."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if hung:
                    self.proc.kill()
                else:
                    self.proc.send_signal(signal.SIGTERM)
            await self._wait(STOP_GRACE_S)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self._wait(STOP_GRACE_S)
        return self.proc.returncode

    async def _wait(self, seconds: float) -> None:
        waiter = asyncio.ensure_future(self.proc.wait())
        done, _ = await asyncio.wait({waiter}, timeout=seconds)
        if not done:
            waiter.cancel()

    async def stacks(self) -> list[str]:
        """Evidence of where the server is stuck: a stack dump (py-spy if installed, else
        the server's own faulthandler on SIGUSR1), and its loop_blocked lines."""
        evidence = await self._py_spy()
        if shutil.which("py-spy") is None:
            evidence = await self._faulthandler_dump()
        blocked = await asyncio.to_thread(serverlog.event_lines, self.log_path, Event.LOOP_BLOCKED)
        if blocked:
            evidence.append(f"the server's watchdog logged {len(blocked)} loop_blocked line(s):")
            evidence += [f"  {self.log_path}: {serverlog.clip(line)}" for line in blocked[:5]]
        else:
            evidence.append("no loop_blocked line in the server's log")
        return evidence

    async def _py_spy(self) -> list[str]:
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            return ["stacks: py-spy is not installed (pip install py-spy) so no live dump"]
        proc = await asyncio.create_subprocess_exec(
            py_spy,
            "dump",
            "--pid",
            str(self.pid),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(PY_SPY_TIMEOUT_S):
                output, _ = await proc.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return [f"stacks: py-spy dump gave no answer within {PY_SPY_TIMEOUT_S:g} s"]
        text = output.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            return [f"stacks: py-spy dump failed ({proc.returncode}): {serverlog.clip(text)}"]
        return ["stacks (py-spy dump):", *(f"  {line}" for line in text.splitlines())]

    async def _faulthandler_dump(self) -> list[str]:
        """Ask the server for its threads' stacks (jarvis serve answers SIGUSR1 on stderr)."""
        try:
            before = self.stderr_path.stat().st_size
            self.proc.send_signal(signal.SIGUSR1)
        except (OSError, ProcessLookupError) as exc:
            return [f"stacks: could not signal the server: {exc}"]
        text = ""
        for _ in range(20):  # up to 1 s for the dump to land
            await asyncio.sleep(0.05)
            with contextlib.suppress(OSError), self.stderr_path.open("rb") as handle:
                handle.seek(before)
                text = handle.read().decode("utf-8", "replace")
            if "most recent call first" in text and text.endswith("\n"):
                break
        if "most recent call first" not in text:
            return ["stacks: the server did not answer SIGUSR1 with a stack dump"]
        return ["stacks (the server's faulthandler, SIGUSR1):",
                *(f"  {line}" for line in text.strip().splitlines())]  # fmt: skip

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def server_argv(
    log_path: Path, *, cancel_wait: float, faults: list[str], python: str = sys.executable
) -> list[str]:
    argv = [
        python, "-m", "jarvis_cli", "serve",
        "--host", "127.0.0.1", "--port", "0", "--log-file", str(log_path),
        "--token-rate", str(TOKEN_RATE), "--first-token-ms", str(FIRST_TOKEN_MS),
        "--cancel-wait", f"{cancel_wait:g}", "--shutdown-timeout", "2",
    ]  # fmt: skip
    for fault in faults:
        argv += ["--fault", fault]
    return argv


def _bound_port(log_path: Path, offset: int, pid: int) -> int | None:
    """The port from this process's `server_start` line, once it is written."""
    for text in serverlog.lines_since(log_path, offset):
        line = serverlog.parse(text)
        if line.event == Event.SERVER_START and line.fields.get("pid") == str(pid):
            port = line.fields.get("port", "")
            return int(port) if port.isdigit() else None
    return None


async def start_embedded(
    *, log_path: Path | None, cancel_wait: float, faults: list[str]
) -> EmbeddedServer:
    """Spawn the server, wait (bounded) until /healthz answers; ServerStartError if not."""
    if log_path is None:
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="jarvis-verify-"))
        log_path = workdir / "server.log"
    stderr_path = log_path.with_name(log_path.name + ".stderr")
    offset = await asyncio.to_thread(serverlog.size, log_path)
    argv = server_argv(log_path, cancel_wait=cancel_wait, faults=faults)
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
    server = EmbeddedServer(proc, 0, log_path, stderr_path, argv)
    try:
        async with asyncio.timeout(STARTUP_DEADLINE_S):
            await _wait_ready(server, offset)
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


async def _wait_ready(server: EmbeddedServer, offset: int) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client:
        while True:
            if server.proc.returncode is not None:
                tail = await asyncio.to_thread(server.stderr_tail)
                raise ServerStartError(
                    f"the embedded server exited with code {server.proc.returncode}: {tail}"
                )
            if not server.port:
                found = await asyncio.to_thread(_bound_port, server.log_path, offset, server.pid)
                server.port = found or 0
            if server.port:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{server.url}/healthz")).status_code == 200:
                        return
            await asyncio.sleep(0.02)
