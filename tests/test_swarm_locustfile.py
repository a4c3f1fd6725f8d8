"""`loadtests/locustfile.py` on its own: `python loadtests/locustfile.py` runs one user
with locust's `run_single_user` against a real server, bounded, and reports each stream.

Run in a subprocess: locust monkey-patches the standard library with gevent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ServerProcess

LOCUSTFILE = Path(__file__).parents[1] / "loadtests" / "locustfile.py"


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_run_single_user_streams_interrupts_and_reports_every_stream(
    shared_server: ServerProcess,
) -> None:
    """Three conversations, each interrupted: every stream is reported under SSE `stream`,
    the interrupting prompts under `interrupt-ttft`, and no stream failed."""
    env = {
        **os.environ,
        "LOCUST_HOST": shared_server.url,
        "LOCUST_CONVERSATIONS": "3",
        "LOCUST_INTERRUPT_RATE": "1",
        "LOCUST_THINK_TIME": "0.05",
    }
    result = subprocess.run(
        [sys.executable, str(LOCUSTFILE)],
        env=env, capture_output=True, text=True, timeout=45, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    sse = [[cell.strip() for cell in line] for line in lines if len(line) > 3]
    streams = [row for row in sse if row[1] == "SSE" and row[2] == "stream"]
    assert len(streams) == 6  # three first prompts, three interrupting ones
    assert sum(1 for row in sse if row[2] == "interrupt-ttft") >= 1
    for name in ("StaleChunk", "Hang", "WrongText", "HTTPError", "BrokenStream", "Traceback"):
        assert name not in result.stdout + result.stderr
