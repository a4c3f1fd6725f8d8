"""`jarvis verify-hang --expect reject|queue` against `jarvis serve --on-busy reject|queue`:
each policy passes its own promise, in one process and across a fleet on Redis, and
fails another's for the real reason (never as a hang, never as a set-up error)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .redis_server import RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 90.0
#: The embedded server's pace: a long answer still streams when the next prompt lands.
PACE = ("--token-rate", "200", "--first-token-ms", "10")
#: The scenarios a busy session's policy changes; a short run of each.
BUSY_SCENARIOS = ("--scenario", "overlap", "--scenario", "burst", "--scenario", "isolation")


def verify(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run `jarvis verify-hang <args> --json` to its end: exit code, report, stderr."""
    report = tmp_path / f"verify-{len(list(tmp_path.iterdir()))}.json"
    argv = [sys.executable, "-m", "jarvis_cli", "verify-hang", *args, "--json", str(report)]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert report.exists(), done.stdout[-1500:] + done.stderr[-1500:]
    return done.returncode, json.loads(report.read_text(encoding="utf-8")), done.stderr


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in report["scenarios"]}


def explain(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{s['name']}: {s['status']}: {s['summary']}\n    " + "\n    ".join(s["evidence"][:3])
        for s in report["scenarios"]
    )


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize("policy", ["reject", "queue"])
def test_a_server_passes_the_promise_of_its_own_policy(
    policy: str, server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve --on-busy P` passes every scenario of `verify-hang --expect P` that
    it can be judged by, its log included (leaks reads it as diagnose does: no finding
    from refusals or waits)."""
    server = server_factory("--on-busy", policy, *PACE)
    code, report, _ = verify(
        tmp_path, "--url", server.url, "--expect", policy, "--log-file", str(server.log_path)
    )
    assert code == 0, explain(report)
    # Not run, and saying so: no engine gauge behind the synthetic model, no --resume-ttl.
    skipped = {n for n, s in statuses(report).items() if s == "skip"}
    assert skipped == {"work_stops", "resume"}, explain(report)
    assert set(statuses(report).values()) == {"pass", "skip"}, explain(report)
    overlap = next(s for s in report["scenarios"] if s["name"] == "overlap")
    if policy == "reject":
        assert "B refused with 409" in overlap["summary"]
        assert 0 < overlap["metrics"]["b_refused"]["max_ms"] < 500
    else:
        assert "A completed, then B" in overlap["summary"]
    events = {line.get("event") for line in server.events()}
    assert ("request_rejected" if policy == "reject" else "stream_queued") in events
    # The log says which policy it ran under, so its refusals or waits read as chosen.
    start = server.wait_for_event("server_start")
    assert (start["on_busy"], start["resume_ttl_ms"], start["ping_ms"]) == (policy, "0", "15000")


#: (the server's policy, what verify-hang expects, what overlap's first evidence says)
MISMATCHES = [
    ("supersede", "reject", "a prompt in a busy session must be refused with 409"),
    ("reject", "supersede", "refused with HTTP 409 while A1"),
    ("queue", "reject", "the server queues: --expect queue"),
    ("reject", "queue", "a queued prompt must wait for the running answer to end"),
    ("supersede", "queue", "it must run on untouched while B1 waits"),
]


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize(
    ("policy", "expect", "says"), MISMATCHES, ids=[f"{p}-as-{e}" for p, e, _ in MISMATCHES]
)
def test_a_server_judged_by_another_policy_fails_for_what_it_did(
    policy: str, expect: str, says: str, server_factory: Any, tmp_path: Path
) -> None:
    """A policy judged by another's promise fails overlap (exit 1, a verdict, not a set-up
    error), and overlap's first evidence line names what the server did, not a hang."""
    server = server_factory("--on-busy", policy, *PACE)
    code, report, stderr = verify(
        tmp_path, "--url", server.url, "--expect", expect, *BUSY_SCENARIOS,
        "--rounds", "1", "--sessions", "4",
    )  # fmt: skip
    assert code == 1, stderr[-800:]
    assert report["verdict"] == "fail"
    overlap = next(s for s in report["scenarios"] if s["name"] == "overlap")
    assert overlap["status"] == "fail", explain(report)
    assert not overlap["hung"]
    assert says in overlap["evidence"][0], explain(report)
    assert "hang" not in overlap["summary"]


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
@pytest.mark.parametrize("policy", ["reject", "queue"])
def test_two_servers_sharing_redis_keep_the_policy_across_processes(
    policy: str, server_factory: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two `jarvis serve --registry R --on-busy P`: each session's A goes to the first and
    its B to the second, and verify-hang's `--expect P` still passes: a session busy on
    one process refuses (or queues) the prompt that reaches the other."""
    servers = [
        server_factory("--registry", redis_server.url, "--on-busy", policy, *PACE, name=f"w{i}")
        for i in range(2)
    ]
    code, report, _ = verify(
        tmp_path, "--url", servers[0].url, "--url", servers[1].url, "--expect", policy,
        *BUSY_SCENARIOS, "--rounds", "2",
    )  # fmt: skip
    assert code == 0, explain(report)
    assert set(statuses(report).values()) == {"pass"}, explain(report)
    second = {line.get("event") for line in servers[1].events()}
    assert ("request_rejected" if policy == "reject" else "stream_queued") in second


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_the_embedded_server_runs_the_policy_expect_names(tmp_path: Path) -> None:
    """Without --url, `--expect reject` starts the embedded server with `--on-busy
    reject`, and it passes."""
    code, report, _ = verify(tmp_path, "--expect", "reject", *BUSY_SCENARIOS, "--rounds", "2")
    assert code == 0, explain(report)
    argv = report["server"]["argv"]
    assert argv[argv.index("--on-busy") + 1] == "reject"
