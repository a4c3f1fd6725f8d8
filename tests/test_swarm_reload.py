"""The locust user who reloads mid-answer (`--reload-rate`): it drops the connection after
a few chunks and resumes with `Last-Event-ID`, reported as SSE `resume`; a gap or a
duplicate across the cut is a ResumeGap, a server that cannot resume a NoResume.

Each run is the locustfile as one user (`run_single_user`) in a subprocess, bounded.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from . import processes
from .peers import ROOT
from .test_swarm_locustfile import single_user

RELOADING = {
    "LOCUST_CONVERSATIONS": "3",
    "LOCUST_RELOAD_RATE": "1",
    "LOCUST_INTERRUPT_RATE": "0",
    "LOCUST_DISCONNECT_RATE": "0",
    "LOCUST_THINK_TIME": "0.05",
}
FAILURES = ("ResumeGap", "NoResume", "WrongText", "HTTPError", "BrokenStream", "Hang")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_users_who_reload_get_the_whole_answer_on_jarvis_with_resume(
    server_factory: Any,
) -> None:
    """Against `jarvis serve --resume-ttl 60` (the synthetic model: its text is checked)
    three reloads each report a `resume` with no failure: ids ran on across the cut and
    the text read before and after it is the model's whole answer."""
    server = server_factory("--resume-ttl", "60", "--token-rate", "400")
    sse, output = single_user(server.url, **RELOADING)
    resumes = [row for row in sse if row[2] == "resume"]
    assert len(resumes) == 3, output
    for name in (*FAILURES, "Traceback"):
        assert name not in output, output
    server.wait_for_event("stream_resumed")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_resume_one_event_late_is_a_resume_gap(tmp_path: Path) -> None:
    """Against the numbered peer that resumes one event late, every reload's `resume`
    fails as ResumeGap."""
    argv = [sys.executable, "-m", "tests.peers.numbered", "--port", "0", "--replay", "skip"]
    peer = processes.start(argv, name="numbered", workdir=tmp_path, cwd=ROOT, ready="/v1/models")
    try:
        sse, output = single_user(peer.url, **RELOADING)
    finally:
        peer.stop(signal.SIGKILL)
    resumes = [row for row in sse if row[2] == "resume"]
    assert len(resumes) == 3, output
    assert "ResumeGap" in output, output
