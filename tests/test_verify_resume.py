"""verify-hang's `resume` scenario: a client that leaves mid-answer and comes back with
`Last-Event-ID` gets the rest, whole; a Stop ends the answer within the cancel bound.

In-process, against `tests/peers/numbered.py` served on a thread (`verify_hang(app)`):
its resume endpoint replays from the right place, one event early or one late. Then real
processes: `jarvis serve --resume-ttl`, two of them sharing one Redis (the resume and
the Stop go to the other), and `jarvis serve` without resume (not run, with the reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.testing import verify_hang
from jarvis_cli.verify.results import Status

from . import cli
from .peers import numbered, stop_done
from .redis_server import RedisServer
from .test_peers import verify_hang as verify_url

#: Stops are held to the cancel bound of a --url run: jarvis serve's --cancel-wait + 0.5 s.
STOP_BOUND_MS = 2500


@pytest.mark.timeout(60)
def test_a_resume_from_the_right_event_passes_with_its_figures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that resumes right after Last-Event-ID passes: the cut and resumed ids run
    on without a seam, the text is the whole answer, and the report gives the reconnect
    (to the first resumed event) and the Stop (to the stream's end) in ms."""
    monkeypatch.setattr(numbered, "replay_shift", 0)
    report = verify_hang(numbered.app, scenarios=["resume"])
    result = report.result("resume")
    assert result.status is Status.PASS, report.explain()
    assert "once each, the whole answer" in result.summary
    assert "a Stop ended the answer in" in result.summary
    metrics = result.metrics
    assert metrics["cut_after_id"] == "3"
    assert 0 <= metrics["reconnect_ms"] < 1000  # type: ignore[operator]
    assert 0 <= metrics["stop_ms"] < STOP_BOUND_MS  # type: ignore[operator]
    assert metrics["stop_status"] == 202


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("shift", "first_line"),
    [
        (-1, "duplicate across the cut (Last-Event-ID: 3): the resume began with event 3, "
             "so event(s) 3 arrived twice"),
        (1, "gap across the cut (Last-Event-ID: 3): the resume began with event 5, "
            "so event(s) 4 never arrived"),
    ],
    ids=["repeat", "skip"],
)  # fmt: skip
def test_a_resume_off_by_one_event_fails_naming_the_duplicate_or_the_gap(
    monkeypatch: pytest.MonkeyPatch, shift: int, first_line: str
) -> None:
    """A resume endpoint that replays one event early (a duplicate) or one late (a gap)
    fails resume; the first evidence line names the seam by its ids, and the text that
    differs from a fresh session's answer follows it."""
    monkeypatch.setattr(numbered, "replay_shift", shift)
    report = verify_hang(numbered.app, scenarios=["resume"])
    result = report.result("resume")
    assert result.status is Status.FAIL, report.explain()
    assert result.evidence[0] == first_line, result.evidence
    assert "corrupted bytes" in result.evidence[1], result.evidence


@pytest.mark.timeout(60)
def test_asked_for_by_name_on_a_server_without_ids_resume_fails_saying_why() -> None:
    """`--scenario resume` on a server whose events carry no `id:` (stop_done): the user
    asked for resume, so it fails, saying the events carry no ids."""
    report = verify_hang(stop_done.app, scenarios=["resume"])
    result = report.result("resume")
    assert result.status is Status.FAIL, report.explain()
    assert result.summary == (
        "resume was asked for (--scenario resume), but the server's events carry no ids"
    )


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_jarvis_serve_with_resume_on_passes_and_logs_the_resume_and_the_stop(
    server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve --resume-ttl 60`: resume passes (exit 0); the server's log shows the
    resume after the cut's last event and the stream stopped by the Stop."""
    server = server_factory("--resume-ttl", "60")
    run = verify_url(server.url, ["--scenario", "resume"], tmp_path)
    assert run.code == 0, run.explain()
    (result,) = run.report["scenarios"]
    assert result["status"] == "pass", run.explain()
    metrics = result["metrics"]
    assert metrics["stop_ms"] < STOP_BOUND_MS
    server.wait_for_event("stream_resumed", last_event_id=metrics["cut_after_id"])
    server.wait_for_event("stream_end", reason="stopped")


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_on_a_fleet_the_resume_and_the_stop_go_to_the_other_worker(
    server_factory: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two `jarvis serve` processes sharing one Redis, each its own URL: the answer is cut
    on the first, resumed on the second (whose log says so) whole, and stopped through
    the second while it runs on the first (whose log ends it `stopped`)."""
    args = ("--registry", redis_server.url, "--resume-ttl", "60")
    one, two = server_factory(*args, name="one"), server_factory(*args, name="two")
    run = verify_url(one.url, ["--url", two.url, "--scenario", "resume"], tmp_path)
    assert run.code == 0, run.explain()
    (result,) = run.report["scenarios"]
    metrics = result["metrics"]
    assert (metrics["stream_url"], metrics["resume_url"]) == (one.url, two.url)
    assert metrics["cancel_url"] == two.url
    assert f"resumed on {two.url}" in result["summary"]
    two.wait_for_event("stream_resumed", last_event_id=metrics["cut_after_id"])
    two.wait_for_event("stream_stop_requested", where="remote")
    one.wait_for_event("stream_end", reason="stopped")


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_without_resume_the_scenario_is_not_run_unless_asked_for(
    server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve` without --resume-ttl numbers its events but answers the resume with
    404: in a whole run resume is not run, saying so (the run passes); asked for by name,
    it fails with the same reason."""
    server = server_factory()
    run = verify_url(server.url, ["--sessions", "2", "--rounds", "1"], tmp_path)
    assert run.code == 0, run.explain()
    resume = next(s for s in run.report["scenarios"] if s["name"] == "resume")
    assert resume["status"] == "skip", run.explain()
    reason = "the server does not offer resume: GET " + server.url + "/v1/streams/chatcmpl-"
    assert resume["summary"].startswith("not run: " + reason), resume["summary"]
    assert "answered HTTP 404 for the stream that had just run" in resume["summary"]

    asked = verify_url(server.url, ["--scenario", "resume"], tmp_path)
    assert asked.code == 1, asked.explain()
    (failed,) = asked.report["scenarios"]
    assert failed["summary"].startswith("resume was asked for (--scenario resume), but " + reason)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("flag", ["--resume-path", "--cancel-path"])
def test_an_endpoint_path_without_its_id_is_a_usage_error_naming_the_flag(flag: str) -> None:
    """A path that does not start with / or holds no {id} cannot name a stream: exit 2
    before anything starts, naming the flag and what the path must be."""
    done = cli.run("verify-hang", flag, "/v1/streams/latest")
    assert done.returncode == ExitCode.USAGE, done.stderr
    message = " ".join(done.stderr.split())
    assert f"{flag} '/v1/streams/latest': a path that starts with / and holds {{id}}" in message
