"""`jarvis swarm` as the end-to-end tests run it: the real command in a subprocess,
bounded, and whatever a run leaves behind (embedded server, locust) killed by pid; the
locustfile as one user (`run_single_user`); an ASGI peer for it on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

RUN_TIMEOUT_S = 60.0
LOCUSTFILE = Path(__file__).parents[1] / "loadtests" / "locustfile.py"


@dataclass
class Swarm:
    """What one `jarvis swarm` run did: its exit code, its output, where its reports are."""

    code: int
    stdout: str
    stderr: str
    report_dir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def kill_leftovers(folder: Path) -> None:
    """SIGKILL any process whose command line names `folder` (a run's server or locust)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(folder) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                os.kill(int(entry.name), signal.SIGKILL)


def swarm(folder: Path, *args: str) -> Swarm:
    """`jarvis swarm --report-dir <folder>/reports ...` in a subprocess, bounded; what it
    leaves behind in `folder` is killed whatever happens."""
    report_dir = folder / "reports"
    argv = [sys.executable, "-m", "jarvis_cli", "swarm", "--report-dir", str(report_dir), *args]
    env = {**os.environ, "COLUMNS": "200"}  # rich wraps at 80 columns without a terminal
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: swarm stops locust and its server on the way out
        stdout, stderr = proc.communicate(timeout=15)
        raise AssertionError(f"jarvis swarm itself hung: {stderr}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        kill_leftovers(folder)
    return Swarm(proc.returncode, stdout, stderr, report_dir)


def single_user(host: str, **settings: str) -> tuple[list[list[str]], str]:
    """Run the locustfile as one user (`run_single_user`) against `host`, bounded in time:
    its printed SSE request rows (cells stripped) and all it wrote."""
    env = {**os.environ, "LOCUST_HOST": host, **settings}
    result = subprocess.run(
        [sys.executable, str(LOCUSTFILE)],
        env=env, capture_output=True, text=True, timeout=45, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [[cell.strip() for cell in line.split("\t")] for line in result.stdout.splitlines()]
    return [row for row in rows if len(row) > 3 and row[1] == "SSE"], result.stdout + result.stderr


@contextlib.contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """`app` under a real uvicorn on 127.0.0.1, port 0 (read back), in a thread of this
    process; its base URL; stopped on the way out."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                           log_level="error", lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the ASGI peer did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
