"""Run locust as subprocesses: one headless process, or a master and N workers on this machine.

Locust is never imported here: it monkey-patches the standard library with
gevent, so it runs in processes of its own (`python -m locust`). While it
runs, every locust process's CPU is sampled from /proc, so that a saturated
load generator is reported as such rather than blamed on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from jarvis.exceptions import ConfigError, ToolError

from ..exit_codes import ExitCode

#: Where the locustfile lives: the repository's `loadtests/`, beside `jarvis_cli/`.
DEFAULT_LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
#: Bound on locust's start (imports, workers connecting) and on its stop after the run time.
START_GRACE_S = 45.0
STOP_GRACE_S = 30.0
#: Seconds a master waits for its workers to connect before giving up.
WORKERS_MAX_WAIT_S = 30
CPU_SAMPLE_S = 1.0
#: A locust process whose median CPU sample is at least this share of one core is saturated.
SATURATED_SHARE = 0.85
#: Locust's own warnings when it runs out of CPU (runner and master).
_CPU_WARNING = re.compile(r"CPU usage (above|was too high|threshold)|exceeded cpu threshold", re.I)
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class LocustFailed(ToolError):  # noqa: N818 - named for the condition
    """Locust ran but left no report to judge (a crash, a bad locustfile, workers missing)."""

    exit_code = ExitCode.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Plan:
    """One swarm: what to run, against what, and where its reports go."""

    #: Locust's --host: the server (the first of several --url).
    url: str
    users: int
    spawn_rate: float
    run_time_s: float
    interrupt_rate: float
    workers: int
    locustfile: Path
    report_dir: Path
    shape: str = "steady"
    hang_deadline: float = 5.0
    overlap: str = "supersede"
    #: How to speak to the server; None leaves it to the locustfile's default (or the file).
    dialect: str | None = None
    session_in: str | None = None
    target: Path | None = None
    #: Several --url (servers sharing one registry): each user's prompts take turns over
    #: them. Empty with one: `url` alone, as locust's --host.
    urls: tuple[str, ...] = ()
    #: Tokens each prompt asks for, and whether OpenAI requests ask for the token count.
    max_tokens: int = 400
    ask_usage: bool = True
    #: Share of the conversations not interrupted whose client reloads mid-answer and
    #: resumes with Last-Event-ID (the locustfile's --reload-rate).
    reload_rate: float = 0.0

    @property
    def servers(self) -> tuple[str, ...]:
        """Every server the users speak to."""
        return self.urls or ((self.url,) if self.url else ())

    @property
    def csv_prefix(self) -> Path:
        return self.report_dir / "locust"

    @property
    def html(self) -> Path:
        return self.report_dir / "locust.html"

    def custom_args(self) -> list[str]:
        """The locustfile's own options (docs/swarm.md), passed to every process."""
        args = [
            "--interrupt-rate", f"{self.interrupt_rate:g}",
            "--hang-deadline", f"{self.hang_deadline:g}",
            "--shape", self.shape,
            "--overlap", self.overlap,
            "--max-tokens", str(self.max_tokens),
            "--usage", "ask" if self.ask_usage else "off",
            "--reload-rate", f"{self.reload_rate:g}",
        ]  # fmt: skip
        if self.dialect is not None:
            args += ["--dialect", self.dialect]
        if self.session_in is not None:
            args += ["--session-in", self.session_in]
        if self.target is not None:
            args += ["--target", str(self.target)]
        if len(self.urls) > 1:
            args += ["--urls", ",".join(self.urls)]
        return args

    def master_argv(self, master_port: int | None = None) -> list[str]:
        """The headless run (with `master_port`: the master of a distributed run)."""
        argv = [
            sys.executable, "-m", "locust", "-f", str(self.locustfile),
            "--headless", "--host", self.url,
            "--users", str(self.users), "--spawn-rate", f"{self.spawn_rate:g}",
            "--run-time", f"{max(1, round(self.run_time_s))}s",
            "--csv", str(self.csv_prefix), "--html", str(self.html), "--only-summary",
            *self.custom_args(),
        ]  # fmt: skip
        if master_port is not None:
            argv += [
                "--master", "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(master_port),
                "--expect-workers", str(self.workers),
                "--expect-workers-max-wait", str(WORKERS_MAX_WAIT_S),
            ]  # fmt: skip
        return argv

    def worker_argv(self, master_port: int) -> list[str]:
        return [
            sys.executable, "-m", "locust", "-f", str(self.locustfile), "--worker",
            "--master-host", "127.0.0.1", "--master-port", str(master_port),
            *self.custom_args(),
        ]  # fmt: skip


def locate_locustfile(explicit: Path | None) -> Path:
    """`--locustfile`, or the repository's `loadtests/locustfile.py`; ConfigError if missing."""
    path = explicit or DEFAULT_LOCUSTFILE
    if not path.is_file():
        where = "--locustfile" if explicit else "the repository's loadtests/ (beside jarvis_cli/)"
        raise ConfigError(
            f"no locustfile at {path} ({where}); run from a checkout of jarvis, "
            "or pass --locustfile PATH"
        )
    return path.resolve()


def require_locust() -> None:
    if importlib.util.find_spec("locust") is None:
        raise ConfigError(
            "locust is not installed in this Python: pip install 'jarvis-streamkit[load]' "
            "(or the dev extra)"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc (None once it is gone, or off Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass(slots=True)
class Process:
    """One locust process: its role, output file and CPU samples (shares of one core)."""

    role: str
    proc: asyncio.subprocess.Process
    output: Path
    samples: list[float] = field(default_factory=list)
    _last: tuple[float, float] | None = None

    def sample(self, now: float) -> None:
        cpu = cpu_seconds(self.proc.pid)
        if cpu is None or self.proc.returncode is not None:
            return
        if self._last is not None and now > self._last[0]:
            self.samples.append((cpu - self._last[1]) / (now - self._last[0]))
        self._last = (now, cpu)

    @property
    def median_cpu(self) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[len(ordered) // 2]

    @property
    def saturated(self) -> bool:
        median = self.median_cpu
        return median is not None and median >= SATURATED_SHARE

    def text(self) -> str:
        try:
            return self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@dataclass(slots=True)
class LocustRun:
    """What the locust processes did: exit codes, CPU, and locust's own CPU warnings."""

    processes: list[Process]
    returncode: int | None
    timed_out: bool = False
    cpu_warnings: list[str] = field(default_factory=list)

    @property
    def generator_bound(self) -> bool:
        """The load generator, not the server, may have limited this run."""
        return bool(self.cpu_warnings) or any(p.saturated for p in self.users_processes)

    @property
    def users_processes(self) -> list[Process]:
        """The processes that run users: the workers, or the single headless process."""
        workers = [p for p in self.processes if p.role.startswith("worker")]
        return workers or self.processes

    def tail(self, lines: int = 15) -> str:
        master = self.processes[0].text().splitlines() if self.processes else []
        return "\n".join(master[-lines:])


async def run_locust(plan: Plan) -> LocustRun:
    """Run the swarm (bounded: run time plus grace), then stop every process it started."""
    plan.report_dir.mkdir(parents=True, exist_ok=True)
    processes: list[Process] = []
    try:
        if plan.workers:
            port = free_port()
            processes.append(await _spawn("master", plan.master_argv(port), plan.report_dir))
            for i in range(plan.workers):
                processes.append(
                    await _spawn(f"worker-{i + 1}", plan.worker_argv(port), plan.report_dir)
                )
        else:
            processes.append(await _spawn("locust", plan.master_argv(), plan.report_dir))
        run = await _watch(processes, plan.run_time_s + START_GRACE_S + STOP_GRACE_S)
    finally:
        for process in processes:
            await _stop(process.proc)
    for process in processes:
        run.cpu_warnings += [
            f"{process.role}: {line.strip()}"
            for line in process.text().splitlines()
            if _CPU_WARNING.search(line)
        ]
    return run


async def _spawn(role: str, argv: list[str], report_dir: Path) -> Process:
    output = report_dir / f"{role}.log"
    with output.open("wb") as handle:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=handle,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # our Ctrl-C must not race our own stop
        )
    return Process(role, proc, output)


async def _watch(processes: list[Process], bound_s: float) -> LocustRun:
    """Sample CPU once a second until the master (or single process) exits, or the bound."""
    head = processes[0].proc
    end = time.monotonic() + bound_s
    while time.monotonic() < end:
        now = time.monotonic()
        for process in processes:
            process.sample(now)
        waiter = asyncio.ensure_future(head.wait())
        done, _ = await asyncio.wait({waiter}, timeout=CPU_SAMPLE_S)
        if done:
            return LocustRun(processes, head.returncode)
        waiter.cancel()
    return LocustRun(processes, None, timed_out=True)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, a bounded wait, then SIGKILL: no locust process outlives the run."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        waiter = asyncio.ensure_future(proc.wait())
        done, _ = await asyncio.wait({waiter}, timeout=5.0)
        if not done:
            waiter.cancel()
