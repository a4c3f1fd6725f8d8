"""The locust user who reloads mid-answer (`--reload-rate`): it drops the connection after
a few chunks and resumes with `Last-Event-ID`, reported as SSE `resume`; a gap or a
duplicate across the cut is a ResumeGap, a server that cannot resume a NoResume. And
`jarvis swarm --reload-rate`: its summary, its threshold, its fail ratio.

Each locustfile run is one user (`run_single_user`) in a subprocess, bounded; each
swarm the real command in a subprocess (tests/swarms.py), a few seconds long.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from jarvis_cli.exit_codes import ExitCode

from . import processes
from .peers import ROOT
from .swarms import Swarm, swarm
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


def test_a_server_that_does_not_resume_is_a_no_resume_not_an_http_error(
    server_factory: Any,
) -> None:
    """Against `jarvis serve` without --resume-ttl (ids on its events, but 404 at the
    resume endpoint) each reload's `resume` fails as NoResume, naming the status."""
    server = server_factory("--token-rate", "400")
    sse, output = single_user(server.url, **RELOADING)
    resumes = [row for row in sse if row[2] == "resume"]
    assert len(resumes) == 3, output
    assert all("NoResume('the server does not resume (HTTP 404" in row[5] for row in resumes)


#: A few seconds of users who all reload (none interrupted), answers of 40 tokens.
RELOAD_SWARM = ("--users", "6", "--spawn-rate", "6", "--run-time", "4s",
                "--interrupt-rate", "0", "--reload-rate", "1", "--max-tokens", "40")  # fmt: skip


def _verdict(run: Swarm) -> str:
    return next(line for line in run.stdout.splitlines() if line.startswith(("PASS", "FAIL")))


def _resumes(run: Swarm) -> int:
    line = next(line for line in run.stdout.splitlines() if line.startswith("resumes: "))
    return int(line.split()[1].replace(",", ""))


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_swarm_that_reloads_on_the_embedded_server_passes_with_resume_figures(
    tmp_path: Path,
) -> None:
    """The embedded server runs with resume on: every reload resumed, the summary shows
    the resumes (a latency row, p50/p99, no failure of any kind, no ResumeGap) and their
    threshold held; locust's stats hold the same `resume` entry without failures."""
    run = swarm(tmp_path, *RELOAD_SWARM)
    assert run.code == ExitCode.OK, run.output
    assert _verdict(run) == "PASS every threshold held"
    assert _resumes(run) >= 3, run.stdout
    assert "reload → first resumed event" in run.stdout
    assert "resume failures by kind: none" in run.stdout
    assert "ResumeGap" not in run.stdout and "NoResume" not in run.stdout
    gate = next(line for line in run.stdout.splitlines() if "--max-p99-resume-ms" in line)
    assert "✔" in gate, gate
    stats = (run.report_dir / "locust_stats.csv").read_text(encoding="utf-8")
    row = next(line for line in stats.splitlines() if line.startswith("SSE,resume,"))
    assert row.split(",")[3] == "0", row
    assert "diagnose (server log): healthy" in run.stdout


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_resume_p99_above_its_threshold_fails_the_swarm_naming_it(
    server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve --resume-ttl 60` resumes every reload, but no resume is under 0.001
    ms: exit 1, and the FAIL line names --max-p99-resume-ms and nothing else."""
    server = server_factory("--resume-ttl", "60", "--token-rate", "400")
    run = swarm(tmp_path, "--url", server.url, *RELOAD_SWARM, "--max-p99-resume-ms", "0.001")
    assert run.code == ExitCode.FAILURE, run.output
    assert _verdict(run) == "FAIL crossed: --max-p99-resume-ms", run.stdout
    assert "resume failures by kind: none" in run.stdout


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_reloads_against_a_server_without_resume_fail_as_no_resume(
    server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve` without --resume-ttl: every reload is a NoResume, counted in the fail
    ratio, so the swarm fails on --max-fail-ratio; the summary says what to change, and
    nothing crashed."""
    server = server_factory("--token-rate", "400")
    run = swarm(tmp_path, "--url", server.url, *RELOAD_SWARM)
    assert run.code == ExitCode.FAILURE, run.output
    assert "--max-fail-ratio" in _verdict(run)
    resumes = _resumes(run)
    assert f"resume failures by kind: NoResume {resumes:,}" in run.stdout
    assert "start it with resume on (jarvis serve --resume-ttl S)" in " ".join(run.stdout.split())
    assert "Traceback" not in run.output
