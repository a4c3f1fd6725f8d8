"""verify-hang and a server that holds a dropped answer for a reattach (resume's grace).

With resume on, a client that leaves is not a Stop: `jarvis serve --resume-ttl` runs the
answer on for `--detach-grace` seconds so that a reload can pick it up. verify-hang asks
once whether the server offers resume, and then holds a dropped answer to the grace
(`--detach-grace`, by default 15 s for a server that resumes, 0 for one that does not)
plus 1 s: a correct server passes, with the hold in the verdict; a server whose answers
outlive the grace it was judged by fails, saying by how much.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.testing import verify_hang
from jarvis_cli.verify.client import ChatClient
from jarvis_cli.verify.embedded import server_argv
from jarvis_cli.verify.options import VerifyOptions
from jarvis_cli.verify.plan import EMBEDDED_DETACH_GRACE_S, Plan
from jarvis_cli.verify.resumable import Resumable
from jarvis_cli.verify.scenarios.context import Context
from jarvis_cli.verify.target import Target

from . import cli
from .peers import PEERS, numbered, running, stop_done
from .test_peers import verify_hang as verify_url

#: jarvis serve's own default --detach-grace, the default a resumable server is given.
SERVE_DEFAULT_GRACE_S = 15.0


@pytest.fixture
def client() -> Iterator[ChatClient]:
    client = ChatClient(["http://unused"], model="jarvis-synthetic", deadline=1.0)
    yield client
    asyncio.run(client.aclose())


def grace_of(client: ChatClient, plan: Plan, offered: bool | None) -> float:
    target = Target("http://unused", "jarvis-synthetic", True, True, True, "/healthz", None, True)
    ctx = Context(plan, target, client, "t1", 0.0)
    ctx.resumable = Resumable(offered, "")
    return ctx.grace


def test_the_grace_is_the_flag_else_fifteen_seconds_for_a_server_that_resumes(
    client: ChatClient,
) -> None:
    """Without --detach-grace a server that offers resume gets jarvis serve's default, one
    that does not (or that the probe could not tell) none, today's bound; a given grace
    is taken as it is, whatever the probe found."""
    plan = VerifyOptions.build().prepare(served="http://127.0.0.1:9").plan
    assert plan.detach_grace is None
    assert grace_of(client, plan, True) == SERVE_DEFAULT_GRACE_S
    assert grace_of(client, plan, False) == 0.0
    assert grace_of(client, plan, None) == 0.0
    given = VerifyOptions.build(detach_grace=3).prepare(served="http://127.0.0.1:9").plan
    assert grace_of(client, given, True) == grace_of(client, given, False) == 3.0


def test_the_embedded_server_is_started_with_the_grace_it_is_judged_by() -> None:
    """One constant: the embedded run's plan holds the grace the server's argv passes as
    --detach-grace, and a grace given on the command line goes to both."""
    for given, grace in ((None, EMBEDDED_DETACH_GRACE_S), (2.0, 2.0)):
        plan = VerifyOptions.build(detach_grace=given).prepare().plan
        assert plan.detach_grace == grace
        assert plan.to_json()["detach_grace_s"] == grace
        argv = server_argv(Path("x.log"), cancel_wait=0.5, faults=[], detach_grace=grace)
        assert argv[argv.index("--detach-grace") + 1] == f"{grace:g}"


@pytest.mark.timeout(10)
@pytest.mark.parametrize("value", ["-1", "601"])
def test_a_grace_out_of_range_is_a_usage_error_naming_the_flag(value: str) -> None:
    """A negative grace, or one longer than a run will wait out: exit 2 before anything
    starts, naming the flag and its range."""
    done = cli.run("verify-hang", "--detach-grace", value)
    assert done.returncode == ExitCode.USAGE, done.stderr
    message = " ".join(done.stderr.split())
    assert "--detach-grace must be >= 0 and <= 600 seconds" in message, message


@pytest.mark.timeout(60)
def test_the_run_asks_once_whether_the_server_resumes_and_says_what_it_found() -> None:
    """The report's `resume` says what the probe found: a server that numbers and keeps
    its events (numbered) offers resume and is given the 15 s default; one whose events
    carry no ids (stop_done) does not, and keeps today's bound (no grace)."""
    offered = verify_hang(numbered.app, scenarios=["leaks"]).to_json()["resume"]
    assert isinstance(offered, dict)
    assert offered["offered"] is True, offered
    assert offered["detach_grace_s"] == SERVE_DEFAULT_GRACE_S
    assert "answered HTTP 200, an event stream" in offered["why"]
    plain = verify_hang(stop_done.app, scenarios=["leaks"]).to_json()["resume"]
    assert plain == {
        "offered": False,
        "why": "the server's events carry no ids",
        "detach_grace_s": 0.0,
    }


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_server_holding_dropped_answers_for_its_grace_passes_every_scenario(
    server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve --resume-ttl 60 --detach-grace 3` judged with `--detach-grace 3`:
    every scenario passes (the log's lifecycles too), and disconnect says each dropped
    answer was held for a reattach, with how long, and the bound. The long answers (6 s
    at 50 tokens a second) outlive the grace: the grace is what ends them."""
    server = server_factory("--resume-ttl", "60", "--detach-grace", "3", "--token-rate", "50")
    run = verify_url(
        server.url,
        ["--detach-grace", "3", "--log-file", str(server.log_path),
         "--sessions", "2", "--rounds", "1"],
        tmp_path,
    )  # fmt: skip
    assert run.code == ExitCode.OK, run.explain()
    statuses = {s["name"]: s["status"] for s in run.report["scenarios"]}
    assert set(statuses.values()) == {"pass", "skip"}, statuses
    assert [n for n, s in statuses.items() if s == "skip"] == ["work_stops"], statuses
    disconnect = next(s for s in run.report["scenarios"] if s["name"] == "disconnect")
    assert "each answer was held for a reattach and ended " in disconnect["summary"]
    assert "after its client left (grace 3 s + 1 s)" in disconnect["summary"]
    metrics = disconnect["metrics"]
    assert (metrics["grace_s"], metrics["bound_s"], metrics["held"]) == (3.0, 4.0, 4)
    assert 3000 <= metrics["cleanup"]["max_ms"] <= 4000
    server.wait_for_event("stream_detached", grace_ms="3000")
    server.wait_for_event("stream_cancelled", reason="client_disconnected")


@pytest.mark.e2e
@pytest.mark.timeout(120)
@pytest.mark.parametrize("server_grace", [3.0, SERVE_DEFAULT_GRACE_S], ids=["3s", "default"])
def test_without_the_flag_a_server_that_resumes_is_given_fifteen_seconds(
    server_factory: Any, tmp_path: Path, server_grace: float
) -> None:
    """The same server judged without --detach-grace, and jarvis serve with its own
    default grace (15 s, the case that used to fail): the probe finds resume, the 15 s
    default applies, and disconnect and leaks pass, the hold in the verdict. The answers
    (20 s long at 15 tokens a second) outlive the grace: the grace is what ends them."""
    args = ["--resume-ttl", "60", "--token-rate", "15"]
    if server_grace != SERVE_DEFAULT_GRACE_S:
        args += ["--detach-grace", f"{server_grace:g}"]
    server = server_factory(*args)
    run = verify_url(server.url, ["--scenario", "disconnect", "--scenario", "leaks"], tmp_path)
    assert run.code == ExitCode.OK, run.explain()
    assert run.report["resume"]["offered"] is True
    assert run.report["resume"]["detach_grace_s"] == SERVE_DEFAULT_GRACE_S
    disconnect, leaks = run.report["scenarios"]
    assert (disconnect["status"], leaks["status"]) == ("pass", "pass"), run.explain()
    assert "each answer was held for a reattach" in disconnect["summary"]
    assert "(grace 15 s + 1 s)" in disconnect["summary"]
    held_ms = disconnect["metrics"]["cleanup"]["max_ms"]
    assert server_grace * 1000 <= held_ms <= server_grace * 1000 + 1000
    assert leaks["metrics"]["live_streams"] == 0
    server.wait_for_event("stream_cancelled", reason="client_disconnected")


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_server_holding_answers_past_the_grace_it_is_judged_by_fails_saying_how_long(
    server_factory: Any, tmp_path: Path
) -> None:
    """Server grace 6 s, judged with --detach-grace 1: each dropped answer is still live at
    the 2 s bound, and disconnect fails naming the grace and how long the answer really
    ran (it is watched past the bound for that). The answers are long enough (20 tokens
    a second) to outlive the server's grace."""
    server = server_factory("--resume-ttl", "60", "--detach-grace", "6", "--token-rate", "20")
    run = verify_url(server.url, ["--detach-grace", "1", "--scenario", "disconnect"], tmp_path)
    assert run.code == ExitCode.FAILURE, run.explain()
    (disconnect,) = run.report["scenarios"]
    assert disconnect["status"] == "fail"
    assert len(disconnect["evidence"]) == 4, disconnect["evidence"]
    for line in disconnect["evidence"]:
        assert "still had a live stream 2 s after the client left (GET /v1/streams), past " in line
        assert "the grace for a reattach (--detach-grace 1 s) + 1 s: it ended " in line
        ran = re.search(r"it ended (\d+\.\d) s after the client left", line)
        assert ran is not None, line
        assert 6.0 <= float(ran.group(1)) <= 7.0, line


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_work_stops_gives_a_resuming_proxy_its_grace_and_no_more(
    server_factory: Any, tmp_path: Path
) -> None:
    """`jarvis serve --upstream ENGINE --resume-ttl 60 --detach-grace 4` in front of an engine
    with a busy gauge: a dropped answer is held for a reattach, so its upstream request
    (and the engine's work) goes on for the grace, by design. Judged with that grace,
    work_stops passes and says the bound held the grace; judged as if there were none
    (`--detach-grace 0`), the same engine work is a failure saying how long it went on."""
    # 40 ms a token: the long answer (300 tokens) would decode on for 12 s, past the grace.
    slow = dataclasses.replace(
        PEERS["engine_gauge"], argv=(*PEERS["engine_gauge"].argv, "--pace-ms", "40")
    )
    with running(slow, tmp_path) as engine:
        server = server_factory("--upstream", engine, "--resume-ttl", "60", "--detach-grace", "4")
        metrics = ["--engine-metrics", f"{engine}/metrics", "--scenario", "work_stops"]
        run = verify_url(server.url, [*metrics, "--detach-grace", "4"], tmp_path)
        assert run.code == ExitCode.OK, run.explain()
        (work,) = run.report["scenarios"]
        assert "(within the 7.5 s bound, 3.5 s + grace 4 s for a reattach)" in work["summary"]
        held_ms = work["metrics"]["drops"]["after_ms"]
        assert 4000 <= held_ms <= 7500, work["metrics"]
        run = verify_url(server.url, [*metrics, "--detach-grace", "0"], tmp_path)
        assert run.code == ExitCode.FAILURE, run.explain()
        left = run.report["scenarios"][0]["evidence"][0]
        assert re.match(r"the engine kept decoding for [4-7]\.\d s after the client left", left)
