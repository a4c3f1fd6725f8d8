"""`jarvis verify-hang` end to end: it passes a healthy server, catches each fault of the
reference server in the scenario that fault breaks, and never hangs itself.

Each run is the real command in a subprocess (its own event loop, its own embedded
server on a free loopback port). Every run is bounded, and any embedded server a run
leaves behind is killed by pid, read back from the log the test told it to write.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jarvis.logfmt import parse_logfmt
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main

from .conftest import free_port

#: Every test here starts real processes (servers, the CLI, a browser): the e2e lane.
pytestmark = pytest.mark.e2e

RUN_TIMEOUT_S = 45.0


@dataclass
class Run:
    """One finished `jarvis verify-hang` run."""

    code: int
    seconds: float
    stdout: str
    stderr: str
    report: dict[str, Any]
    junit: Path

    def scenario(self, name: str) -> dict[str, Any]:
        return next(s for s in self.report["scenarios"] if s["name"] == name)

    def status(self) -> dict[str, str]:
        return {s["name"]: s["status"] for s in self.report["scenarios"]}

    def evidence(self, name: str) -> str:
        return "\n".join(self.scenario(name)["evidence"])


def kill_embedded_servers(log: Path) -> None:
    """Kill any server that logged `server_start` to `log` and still runs (a run cut short)."""
    if not log.exists():
        return
    for line in log.read_text(encoding="utf-8").splitlines():
        fields = parse_logfmt(line)
        if fields.get("event") != "server_start" or not fields.get("pid", "").isdigit():
            continue
        pid = int(fields["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline")
        with contextlib.suppress(OSError):
            if str(log) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(pid, signal.SIGKILL)


def verify(tmp_path: Path, *args: str, timeout: float = RUN_TIMEOUT_S) -> Run:
    """Run `jarvis verify-hang` with a JSON and a JUnit report; always clean up after it
    (only the embedded server it was told to log to `tmp_path`, never a `--url` server)."""
    report, junit, log = tmp_path / "report.json", tmp_path / "report.xml", tmp_path / "server.log"
    argv = [sys.executable, "-m", "jarvis_cli", "verify-hang",
            "--json", str(report), "--junit", str(junit), *args]  # fmt: skip
    embedded = "--url" not in args
    if embedded:
        argv += ["--log-file", str(log)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: verify-hang stops its own server on the way out
        stdout, stderr = proc.communicate(timeout=10)
        raise AssertionError(f"verify-hang itself hung: {stderr}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if embedded:
            kill_embedded_servers(log)
    seconds = time.monotonic() - started
    document = json.loads(report.read_text()) if report.exists() else {}
    return Run(proc.returncode, seconds, stdout, stderr, document, junit)


def test_healthy_reference_server_passes_every_scenario_in_seconds(tmp_path: Path) -> None:
    """No fault: exit 0, every scenario passes (none skipped: the embedded server offers
    /healthz, /v1/streams, a log, exact text and resume) but work_stops, which is not run
    and says why (no inference engine behind the synthetic model); the JSON and JUnit
    reports say the same, and the embedded server is stopped cleanly."""
    run = verify(tmp_path)
    assert run.code == ExitCode.OK, run.stdout + run.stderr
    report = run.report
    assert report["schema"] == "jarvis.verify-hang/1"
    assert report["passed"] is True
    assert report["verdict"] == "pass"
    assert report["hang"] is None
    not_passed = {name for name, status in run.status().items() if status != "pass"}
    assert not_passed == {"work_stops"}, run.status()
    assert run.scenario("work_stops")["status"] == "skip"
    assert run.scenario("work_stops")["summary"] == (
        "not run: the embedded server has no inference engine to watch (its model is synthetic)"
    )
    assert list(run.status()) == [
        "baseline", "work_stops", "overlap", "burst", "isolation", "disconnect", "slow_reader",
        "hostile_input", "resume", "responsiveness", "leaks",
    ]  # fmt: skip
    assert report["target"]["embedded"] is True
    assert report["target"]["exact_text"] is True
    assert report["server"]["faults"] == []
    assert report["server"]["exit_code"] in (0, -signal.SIGTERM)
    # The grace the embedded server holds a dropped answer for is the one it is judged by.
    argv = report["server"]["argv"]
    grace = float(argv[argv.index("--detach-grace") + 1])
    assert report["resume"]["offered"] is True
    assert report["resume"]["detach_grace_s"] == grace == report["plan"]["detach_grace_s"]
    assert run.scenario("disconnect")["metrics"]["bound_s"] == grace + 1.0
    assert report["plan"]["sessions"] == 8
    assert report["plan"]["rounds"] == 5, "the classic rapid-request test runs 5 rounds"
    overlap = run.scenario("overlap")
    assert overlap["metrics"]["overlapped"] == 8 * 5
    assert overlap["metrics"]["late_a_chunks"] == 0
    assert run.scenario("responsiveness")["metrics"]["answered"] > 10
    assert run.scenario("leaks")["metrics"]["live_streams"] == 0
    suite = ET.parse(run.junit).getroot()
    assert suite.get("tests") == "11"
    assert suite.get("skipped") == "1"
    assert suite.get("failures") == "0"
    assert [c.get("name") for c in suite.iter("testcase")] == list(run.status())
    assert "PASS" in run.stdout
    assert run.seconds < 20, "the default suite is meant to take a few seconds"


def test_blocking_flush_is_a_hang_with_the_stuck_frame_within_the_deadline(
    tmp_path: Path,
) -> None:
    """--fault blocking-flush deadlocks the server's loop during overlap: FAIL hang within
    the deadline, responsiveness fails, the rest is reported not run, the stacks name the
    fault's frame, leaks reads loop_blocked from the log, and the tool exits 1 on its own."""
    run = verify(tmp_path, "--fault", "blocking-flush", "--deadline", "2")
    assert run.code == ExitCode.FAILURE, run.stderr
    assert run.report["verdict"] == "hang"
    assert run.report["hang"]["during"] == "overlap"
    assert run.report["hang"]["silent_s"] < 2 + 1.0, "hang to verdict within deadline + 1 s"
    stacks = "\n".join(run.report["hang"]["stacks"])
    assert "blocking_flush" in stacks
    # Without py-spy, the server's own faulthandler answers SIGUSR1 with every thread.
    assert "most recent call first" in stacks
    assert "faults.py" in stacks
    overlap = run.scenario("overlap")
    assert overlap["status"] == "fail"
    assert overlap["hung"] is True
    assert overlap["seconds"] < 2 + 1.0, "verdict within the deadline (plus a margin)"
    assert run.scenario("responsiveness")["status"] == "fail"
    for name in ("burst", "isolation", "disconnect", "slow_reader", "hostile_input"):
        assert (
            run.scenario(name)["summary"] == "not run: the server stopped answering during overlap"
        )
    assert "loop_blocked" in run.evidence("leaks")
    assert run.report["server"]["exit_code"] == -signal.SIGKILL
    assert "HANG" in run.stdout


@pytest.mark.parametrize(
    ("fault", "evidence"),
    [
        ("no-cancel", "after the first text of"),
        ("ignore-cancel", "after the first text of"),
        ("slow-cleanup", "after B was sent; the bound is 1000 ms"),
    ],
)
def test_each_cancel_fault_fails_overlap_with_its_evidence(
    tmp_path: Path, fault: str, evidence: str
) -> None:
    """no-cancel and ignore-cancel run A beside B (a chunk of A after B's first); slow-cleanup
    ends A past the cancel bound, cut without a terminator. Each exits 1 in overlap."""
    run = verify(tmp_path, "--fault", fault, "--scenario", "overlap", "--rounds", "1",
                 "--sessions", "4")  # fmt: skip
    assert run.code == ExitCode.FAILURE, run.stderr
    assert run.status() == {"overlap": "fail"}
    assert evidence in run.evidence("overlap")
    if fault == "slow-cleanup":
        assert "the connection broke mid-stream" in run.evidence("overlap")


def test_skip_cleanup_passes_overlap_and_fails_leaks_with_the_log_lines(tmp_path: Path) -> None:
    """--fault skip-cleanup: the streams end on the wire, so overlap passes; but they stay
    in /v1/streams and stream_end says cleanup_done=False, so leaks fails, with evidence."""
    run = verify(tmp_path, "--fault", "skip-cleanup", "--scenario", "overlap",
                 "--scenario", "leaks", "--rounds", "1", "--sessions", "4")  # fmt: skip
    assert run.code == ExitCode.FAILURE, run.stderr
    assert run.status() == {"overlap": "pass", "leaks": "fail"}
    evidence = run.evidence("leaks")
    assert "still live after the run (GET /v1/streams)" in evidence
    assert "cleanup_incomplete" in evidence
    assert "cleanup_done=False" in evidence
    assert run.scenario("leaks")["metrics"]["log_findings"]["cleanup_incomplete"] >= 8


def test_expect_independent_passes_a_server_that_runs_overlaps_side_by_side(
    tmp_path: Path,
) -> None:
    """--fault no-cancel runs overlapping prompts side by side: under --expect independent
    (both finish, nothing crossed, nothing hangs) every scenario passes (work_stops is not
    run: no engine), and leaks does not speak of two streams at once (concurrent_streams is
    overlap's verdict, not a leak)."""
    run = verify(tmp_path, "--fault", "no-cancel", "--expect", "independent", "--rounds", "1",
                 "--sessions", "4")  # fmt: skip
    assert run.code == ExitCode.OK, run.stdout
    assert {n for n, s in run.status().items() if s != "pass"} == {"work_stops"}, run.status()
    assert "concurrent_streams" not in run.evidence("leaks")


def test_a_url_without_a_log_skips_the_log_checks_and_says_so(
    shared_server, tmp_path: Path
) -> None:
    """--url to a running server, no --log-file: still exit 0, but the log checks are
    reported skipped (never passed)."""
    run = verify(tmp_path, "--url", f"{shared_server.url}/v1")
    assert run.code == ExitCode.OK, run.stdout
    assert run.report["target"]["embedded"] is False
    assert run.report["server"] is None
    assert "skipped: every stream_start has its stream_end" in run.evidence("leaks")
    assert "skipped: log lines stay parseable" in run.evidence("hostile_input")


def test_a_url_with_its_log_checks_the_run_window_of_that_log(
    shared_server, tmp_path: Path
) -> None:
    """--url with --log-file: the leaks check reads that server's log for this run only."""
    run = verify(
        tmp_path, "--url", shared_server.url, "--strict",
        "--log-file", str(shared_server.log_path), "--scenario", "overlap", "--scenario", "leaks",
    )  # fmt: skip
    assert run.code == ExitCode.OK, run.stdout
    leaks = run.scenario("leaks")
    assert "skipped" not in run.evidence("leaks")
    # A and B, 8 sessions, 5 rounds; and the first request, which checks the set-up.
    assert leaks["metrics"]["log_streams"] == 2 * 8 * 5 + 1


def test_an_unreachable_url_exits_3_quickly(tmp_path: Path) -> None:
    """Nothing listens: exit 3 with the reason on stderr, in about a second, no traceback."""
    run = verify(tmp_path, "--url", f"http://127.0.0.1:{free_port()}", timeout=20)
    assert run.code == ExitCode.UNAVAILABLE
    assert "nothing answers at http://127.0.0.1:" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.seconds < 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expect", "sometimes"], "--expect takes one of supersede, independent, reject, queue"),
        (["--scenario", "overlaps"], "unknown --scenario 'overlaps'"),
        (["--fault", "bogus"], "unknown --fault 'bogus'"),
        (["--url", "http://127.0.0.1:9", "--fault", "no-cancel"], "cannot with --url"),
        (["--sessions", "0"], "--sessions must be 1..256"),
        (["--cancel-wait", "0"], "cancel_wait (--cancel-wait) must be > 0 seconds, not 0"),
        (["--deadline", "soon"], "Invalid value"),
        (["--no-such-flag"], "No such option"),
    ],
)
def test_bad_flags_are_usage_errors_without_traceback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every flag that cannot work exits 2 before any server starts, saying why."""
    code = main(["verify-hang", *args])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert message in err
    assert "Traceback" not in err


def test_help_teaches_with_examples_and_exit_codes() -> None:
    """`jarvis verify-hang --help` names the scenarios, the examples and the exit codes."""
    result = subprocess.run(
        [sys.executable, "-m", "jarvis_cli", "verify-hang", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0
    for text in ("jarvis verify-hang --fault no-cancel", "--expect independent", "Exit codes",
                 "hostile_input", "--deadline", "SKIPPED, never passed"):  # fmt: skip
        assert text in result.stdout
