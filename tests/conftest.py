"""Shared fixtures: real `jarvis serve` subprocesses on free loopback ports.

Every server a test starts binds 127.0.0.1 only, is waited for with a
deadline, and is killed in the fixture's finalizer whatever the test did.
"""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jarvis.logfmt import parse_logfmt

from . import processes

#: The repository: test modules run as `python -m tests.<name>` from here.
ROOT = Path(__file__).resolve().parent.parent
#: Fixtures that start a real process: a test that uses one is end-to-end.
PROCESS_FIXTURES = frozenset(
    {
        "server_factory",
        "shared_server",
        "redis_server",
        "fakellm",
        "two_servers",
        "crlf_url",
        "llamacpp",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two lanes: `-m "not e2e"` (scripts/test --fast) is the in-process tests only.

    A test that uses a process-starting fixture is marked here; one that starts a
    process itself carries the mark in its module, and `_in_process_only` fails it
    when the mark is missing, so the fast lane cannot quietly grow slow.
    """
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _in_process_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test outside the e2e lane may not start a process (servers, browsers, locust)."""
    if request.node.get_closest_marker("e2e") is not None:
        return
    real = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[bytes], args: object, *rest: object, **kw: object) -> None:
        argv = args if isinstance(args, str) else " ".join(map(str, args))  # type: ignore[call-overload]
        if not _allowed_in_process(argv):
            raise AssertionError(
                f"{request.node.nodeid} starts a process ({argv[:120]}): mark it "
                "@pytest.mark.e2e (the fast lane runs in-process tests only)"
            )
        real(self, args, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def _allowed_in_process(argv: str) -> bool:
    """Short-lived helpers an in-process test may run (a git query, a compiler probe)."""
    return argv.split(" ", 1)[0].rsplit("/", 1)[-1] in {"git", "cc", "gcc"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess(processes.Process):
    """A running `jarvis serve` and the paths to read what it did."""

    log_path: Path

    def events(self) -> list[dict[str, str]]:
        """Every log line parsed as logfmt, once everything logged so far is written."""
        self.settle()
        return [_parse_line(line) for line in self._read()]

    def lines(self) -> list[str]:
        """Every log line, once everything logged so far is written."""
        self.settle()
        return self._read()

    def settle(self) -> None:
        """Everything the server logged before now is in the file: the barrier while it
        runs; once it has exited, its writer has flushed and closed the file."""
        if self.proc.poll() is None:
            self.barrier()

    def _read(self) -> list[str]:
        return [line for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]

    def wait_for_event(self, name: str, deadline_s: float = 5.0, **match: str) -> dict[str, str]:
        """Poll the log until an event with these fields appears, or fail."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for event in map(_parse_line, self._read()):
                if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {name} {match} in the log within {deadline_s}s")

    def barrier(self, deadline_s: float = 5.0) -> None:
        """Wait until everything the server logged before now is in the file.

        The server writes its log in order, so once a line it logs after this call
        is in the file, every earlier one is too: a test that asserts a line is
        *absent* waits on this instead of sleeping and hoping. The barrier line is a
        `request_rejected` (a body that is not JSON) in a session of its own.
        """
        session = f"barrier-{secrets.token_hex(6)}"
        response = httpx.post(
            f"{self.url}/v1/chat/completions",
            content=b"not json",
            headers={"x-session-id": session},
            timeout=deadline_s,
        )
        assert response.status_code == 400, response.text
        self.wait_for_event("request_rejected", deadline_s, session=session)


def _parse_line(line: str) -> dict[str, str]:
    """One line of the server's log, logfmt or (`--log-format json`) JSON, as strings."""
    if line.startswith("{"):
        return {key: str(value) for key, value in json.loads(line).items()}
    return parse_logfmt(line)


def start_server(tmp_path: Path, *args: str, name: str = "server") -> ServerProcess:
    """Start `jarvis serve` on port 0 (the port read back) and wait until /healthz answers."""
    return _start_jarvis(tmp_path, name, tmp_path / f"{name}.log", *args)


def start_fleet(tmp_path: Path, redis_url: str, workers: int, *args: str) -> ServerProcess:
    """Start `jarvis serve --workers N --registry redis_url` (logs in tmp_path/fleet/) on
    port 0 and wait until /healthz answers; `log_path` is worker 1's log."""
    log = tmp_path / "fleet" / "system.log"
    fleet = _start_jarvis(
        tmp_path, "fleet", log, "--workers", str(workers), "--registry", redis_url, *args
    )
    fleet.log_path = log.with_name("system.w1.log")
    return fleet


def _start_jarvis(tmp_path: Path, name: str, log: Path, *args: str) -> ServerProcess:
    argv = [
        sys.executable, "-m", "jarvis_cli", "serve",
        "--host", processes.HOST, "--port", "0", "--log-file", str(log),
        *args,
    ]  # fmt: skip
    started = processes.start(argv, name=name, workdir=tmp_path)
    return ServerProcess(started.name, started.proc, started.port, started.output, argv, log)


def fleet_worker_pids(folder: Path) -> list[int]:
    """The pid of every worker that logged server_start in a fleet's log folder."""
    pids = []
    for path in folder.glob("system.w*.log"):
        for line in path.read_text().splitlines():
            if "event=server_start" in line:
                pids.append(int(line.split(" pid=")[1].split()[0]))
    return pids


def fleet_worker_running(folder: Path, stream_id: str) -> int:
    """The pid of the worker whose log names `stream_id` (polled, bounded)."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        for path in folder.glob("system.w*.log"):
            text = path.read_text()
            if f"stream_id={stream_id}" in text:
                return int(text.split(" pid=")[1].split()[0])
        time.sleep(0.05)
    raise AssertionError(f"no worker logged {stream_id}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Start servers on demand; all are killed when the test ends."""
    started: list[ServerProcess] = []

    def factory(*args: str, name: str = "server") -> ServerProcess:
        server = start_server(tmp_path, *args, name=f"{name}{len(started)}")
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One healthy server for the tests that only read from it (fast synthetic model)."""
    server = start_server(
        tmp_path_factory.mktemp("shared"), "--token-rate", "400", "--first-token-ms", "5"
    )
    yield server
    server.stop(signal.SIGKILL)


def sse_events(body: str) -> list[object]:
    """The `data:` payloads of an SSE body, JSON-decoded (`[DONE]` kept as a string)."""
    events: list[object] = []
    for block in body.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def content_of(events: list[object]) -> str:
    """The assistant text reassembled from chunk events."""
    text = []
    for event in events:
        if isinstance(event, dict):
            for choice in event.get("choices", []):
                text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


def chat_body(prompt: str, *, stream: bool = True, **extra: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": prompt}], "stream": stream, **extra}


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Process]:
    """llama.cpp's own server (tests/engines/llamacpp.py): 4 slots, the 270M model, on
    port 0, one thread (the other core is the other test worker's); its whole process
    group is stopped afterwards (SIGTERM, then KILL)."""
    workdir = tmp_path_factory.mktemp("llamacpp")
    server = processes.start(
        [sys.executable, "-m", "tests.engines.llamacpp", "--port", "0", "--threads", "1"],
        name="llamacpp", workdir=workdir, cwd=ROOT, ready="/health", deadline_s=60,
    )  # fmt: skip
    yield server
    server.stop(timeout=5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[object]:
    """A real redis-server on a free loopback port, killed when the test ends."""
    from .redis_server import running_redis

    with running_redis(tmp_path) as server:
        yield server
