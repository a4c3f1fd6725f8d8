"""`jarvis verify-hang --workers N --registry redis://...`: the embedded server as a fleet.

The workers share one port and each writes its own log (`server.w1.log`, ...); every
reader of the log (`jarvis_cli/verify/serverlog.py`, the leaks scenario, the stacks of a hang)
reads all of them. Runs are the real command in a subprocess on 127.0.0.1, bounded, and
whatever a run leaves behind is killed by pid: the fleet's parent (its command line names
the run's folder) and its workers (their `server_start` lines name their pids).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jarvis.logfmt import parse_logfmt
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main

from .redis_server import RedisServer
from .swarms import RUN_TIMEOUT_S, kill_leftovers


def worker_pids(folder: Path) -> list[int]:
    """The pids every worker logged in its `server_start` line, in `folder`'s logs."""
    pids = []
    for path in folder.glob("*.w*.log"):
        for line in path.read_text(encoding="utf-8").splitlines():
            fields = parse_logfmt(line)
            if fields.get("event") == "server_start" and fields.get("pid", "").isdigit():
                pids.append(int(fields["pid"]))
    return pids


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def kill_fleet(folder: Path) -> None:
    """SIGKILL the fleet's parent (its command line names `folder`) and its workers."""
    kill_leftovers(folder)
    for pid in worker_pids(folder):
        with contextlib.suppress(OSError):
            if "multiprocessing" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)


def verify(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """`jarvis verify-hang --log-file <tmp>/server.log --json ...`: exit code, report, output."""
    report, log = tmp_path / "report.json", tmp_path / "server.log"
    argv = [sys.executable, "-m", "jarvis_cli", "verify-hang", "--json", str(report),
            "--log-file", str(log), *args]  # fmt: skip
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    finally:
        kill_fleet(tmp_path)
    document = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, document, done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_two_worker_embedded_fleet_passes_every_scenario_reading_both_logs(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """`--workers 2 --registry URL`: every scenario passes, none skipped but work_stops
    (not run: no inference engine behind the synthetic model); the server was a
    fleet (two worker files, each with its server_start on the one port), leaks judged
    each worker's file, and no process of the fleet outlives the run."""
    code, report, output = verify(tmp_path, "--workers", "2", "--registry", redis_server.url)
    assert code == ExitCode.OK, output
    statuses = {s["name"]: s["status"] for s in report["scenarios"]}
    assert {n for n, s in statuses.items() if s != "pass"} == {"work_stops"}, statuses
    assert statuses["work_stops"] == "skip"
    assert len(statuses) == 11
    server = report["server"]
    assert server["workers"] == 2 and server["registry"] == redis_server.url
    files = [tmp_path / "server.w1.log", tmp_path / "server.w2.log"]
    assert server["log_files"] == [str(path) for path in files]
    assert server["log_file"] == str(tmp_path / "server.w*.log")
    assert "--workers" in server["argv"] and "--registry" in server["argv"]
    assert not (tmp_path / "server.log").exists(), "a fleet's parent writes no log"
    starts = [parse_logfmt(path.read_text().splitlines()[0]) for path in files]
    assert [s["worker"] for s in starts] == ["1", "2"]
    assert starts[0]["port"] == starts[1]["port"] == report["target"]["url"].rsplit(":", 1)[1]
    leaks = next(s for s in report["scenarios"] if s["name"] == "leaks")
    assert set(leaks["metrics"]) == {"server.w1.log", "server.w2.log"}
    assert all(m["log_streams"] > 0 for m in leaks["metrics"].values()), leaks["metrics"]
    assert not [pid for pid in worker_pids(tmp_path) if alive(pid)]


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_hung_fleet_is_caught_with_each_workers_stacks_and_killed_whole(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """--fault blocking-flush in a 2-worker fleet: FAIL hang (exit 1); the stacks come from
    the workers (SIGUSR1 goes to them, not to the parent, which it would kill) and name
    the fault's frame; then the whole process group is killed, workers included."""
    code, report, output = verify(
        tmp_path, "--workers", "2", "--registry", redis_server.url, "--fault", "blocking-flush",
        "--scenario", "overlap", "--scenario", "leaks",
    )  # fmt: skip
    assert code == ExitCode.FAILURE, output
    assert report["hang"] is not None, report
    overlap = next(s for s in report["scenarios"] if s["name"] == "overlap")
    evidence = "\n".join(overlap["evidence"])
    assert "stacks of worker pid" in evidence
    assert "blocking_flush" in evidence
    assert not [pid for pid in worker_pids(tmp_path) if alive(pid)]


@pytest.mark.timeout(10)
def test_workers_without_registry_is_a_usage_error_naming_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--workers 2` alone would run two registries: exit 2 before anything starts, with a
    message naming --registry (no server log is ever written)."""
    code = main(["verify-hang", "--workers", "2", "--log-file", str(tmp_path / "s.log")])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err.replace("\n", " ")
    assert "--workers 2 needs --registry" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.timeout(10)
def test_workers_and_registry_with_url_are_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--workers and --registry shape the embedded server: with --url they are refused
    (exit 2), as is a --registry that is no redis URL."""
    url = ["--url", "http://127.0.0.1:9"]
    assert main(["verify-hang", *url, "--workers", "2", "--registry", "redis://x"]) == 2
    assert "with --url" in capsys.readouterr().err.replace("\n", " ")
    assert main(["verify-hang", "--registry", "http://127.0.0.1:6379"]) == ExitCode.USAGE
    assert "redis://" in capsys.readouterr().err
