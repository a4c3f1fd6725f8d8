"""`jarvis swarm` end to end: a healthy embedded server passes the gate, a faulted one
fails it naming the crossed threshold, and usage and reachability map to exit codes.

Locust is never imported here (it monkey-patches with gevent): each swarm is the real
command in a subprocess, bounded, on 127.0.0.1 only, and anything it started that
outlives it (embedded server, locust) is killed by pid, found by the run's own folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main

from .conftest import free_port
from .swarms import swarm

#: A short swarm that still interrupts: 10 users for 8 s, half the conversations interrupted.
SHORT = ("--users", "10", "--spawn-rate", "10", "--run-time", "8s", "--interrupt-rate", "0.5")
#: What CI gates on: a healthy embedded server is ~5x inside these (TTFT p99 ~100 ms).
GATE = ("--max-p99-ttft-ms", "500", "--max-p99-interrupt-ms", "1000", "--max-fail-ratio", "0.01")


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_healthy_embedded_server_passes_the_gate_with_reports_and_diagnose(
    tmp_path: Path,
) -> None:
    """No fault: exit 0, every threshold held, no failure of any kind, diagnose healthy,
    and locust's CSV and HTML reports, the server's log and its timeline page (the same
    read as diagnose's verdict) are in --report-dir."""
    run = swarm(tmp_path, *SHORT, *GATE)
    assert run.code == ExitCode.OK, run.stdout + run.stderr
    assert "PASS every threshold held" in run.stdout
    assert "failures by kind: none" in run.stdout
    assert "diagnose (server log): healthy" in run.stdout
    assert "interrupt → first token" in run.stdout
    for name in ("locust_stats.csv", "locust_failures.csv", "locust.html", "server.log"):
        assert (run.report_dir / name).is_file(), name
    page = (run.report_dir / "timeline.html").read_text(encoding="utf-8")
    assert f"timeline: {run.report_dir / 'timeline.html'}" in run.stdout
    data = page.split('id="timeline-data">', 1)[1].split("</script>", 1)[0]
    shown = json.loads(data)
    assert shown["verdict"] == "healthy" and shown["bars"]["lane"], "no stream drawn"


@pytest.mark.e2e
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("fault", "kind", "finding"),
    [("no-cancel", "StaleChunk", "concurrent_streams"), ("blocking-flush", "Hang", "loop_blocked")],
)
def test_a_faulted_server_fails_the_gate_naming_the_crossed_threshold(
    tmp_path: Path, fault: str, kind: str, finding: str
) -> None:
    """The same gate, a server with a deliberate bug: exit 1, the FAIL line names
    --max-fail-ratio and diagnose, the failures carry the fault's kind (two streams of a
    session at once: StaleChunk; a blocked loop: Hang), and diagnose names the cause."""
    run = swarm(tmp_path, *SHORT, *GATE, "--fault", fault)
    assert run.code == ExitCode.FAILURE, run.stdout + run.stderr
    verdict = next(line for line in run.stdout.splitlines() if line.startswith("FAIL"))
    assert "--max-fail-ratio" in verdict
    assert "diagnose" in verdict
    assert kind in run.stdout
    assert finding in run.stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--users", "0"), "--users must be at least 1"),
        (("--interrupt-rate", "1.5"), "--interrupt-rate is a share"),
        (("--reload-rate", "1.5"), "--reload-rate is a share between 0 and 1, not 1.5"),
        (("--reload-rate", "-0.1"), "--reload-rate is a share between 0 and 1, not -0.1"),
        (("--max-p99-resume-ms", "0"), "--max-p99-resume-ms) must be above 0"),
        (("--run-time", "soon"), "--run-time takes a duration"),
        (("--shape", "square"), "--shape takes one of"),
        (("--fault", "bogus"), "unknown --fault 'bogus'"),
        (("--url", "http://127.0.0.1:9", "--fault", "no-cancel"), "cannot with --url"),
        (("--locustfile", "/nonexistent/locustfile.py"), "no locustfile at"),
    ],
)
def test_bad_flags_are_usage_errors_without_traceback(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each invalid option exits 2 with its message on stderr, before anything starts."""
    code = main(["swarm", *args])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert message in " ".join(err.split())
    assert "Traceback" not in err


@pytest.mark.timeout(30)
def test_unreachable_url_exits_3_without_running_locust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --url where nothing listens (a free loopback port) exits 3 and says so; no locust
    report is written because no swarm was started."""
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["swarm", "--url", url, "--run-time", "2s", "--report-dir", str(tmp_path / "r")])
    assert code == ExitCode.UNAVAILABLE
    assert "nothing answers at" in capsys.readouterr().err
    assert not (tmp_path / "r" / "locust_stats.csv").exists()
