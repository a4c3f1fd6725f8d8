"""`jarvis swarm` as the end-to-end tests run it: the real command in a subprocess,
bounded, and whatever a run leaves behind (embedded server, locust) killed by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RUN_TIMEOUT_S = 60.0


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
