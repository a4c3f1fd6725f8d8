"""`jarvis swarm` over several servers (`--url A --url B`) and against an embedded fleet
(`--server-workers N --registry redis://...`).

Two `jarvis serve --registry` processes share one real redis-server, as two hosts of a
fleet behind a balancer would. Locust is never imported here (it monkey-patches with
gevent): the swarm and the locustfile run in subprocesses, bounded, on 127.0.0.1 only,
and what a run leaves behind is killed by pid.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main
from jarvis_cli.swarm.runner import Plan
from jarvis_cli.verify import serverlog

from .conftest import ServerProcess, start_server
from .redis_server import RedisServer, running_redis
from .swarms import swarm

LOCUSTFILE = Path(__file__).parents[1] / "loadtests" / "locustfile.py"
#: A short swarm (the brief's 5 users for 6 s) that still interrupts itself.
SHORT = ("--users", "5", "--spawn-rate", "5", "--run-time", "6s", "--interrupt-rate", "0.5")
FAILURE_KINDS = ("StaleChunk", "Hang", "WrongText", "HTTPError", "BrokenStream", "Traceback")


def sessions_started(server: ServerProcess, mark: int) -> list[str]:
    """The session of every stream_start the server logged since `mark`, in log order."""
    lines = [serverlog.parse(t) for t in serverlog.lines_since(server.log_path, mark)]
    return [line.fields.get("session", "") for line in lines if line.event == "stream_start"]


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Two `jarvis serve --registry` processes on free loopback ports sharing one Redis
    (the embedded pace: 200 tokens/s, first token after 10 ms); killed at the end."""
    folder = tmp_path_factory.mktemp("two-servers")
    with running_redis(folder) as redis:
        servers: list[ServerProcess] = []
        try:
            pace = ("--token-rate", "200", "--first-token-ms", "10")
            for name in ("a", "b"):
                servers.append(start_server(folder, "--registry", redis.url, *pace, name=name))
            yield servers
        finally:
            for server in servers:
                server.stop(signal.SIGKILL)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_swarm_over_two_servers_sharing_redis_passes_with_no_failure(
    two_servers: list[ServerProcess], tmp_path: Path
) -> None:
    """`--url A --url B` (B written with /v1): the gate holds with 0 stream failures of any
    kind, the summary names both servers, and each user's prompts went to both: the two
    logs hold streams of the same sessions."""
    marks = [serverlog.size(server.log_path) for server in two_servers]
    a, b = two_servers
    run = swarm(tmp_path, "--url", a.url, "--url", f"{b.url}/v1", *SHORT, "--max-fail-ratio", "0")
    assert run.code == ExitCode.OK, run.output
    assert "stream failures 0" in run.output
    assert "failures by kind: none" in run.output
    assert f"{a.url} + {b.url}:" in run.output
    on_a, on_b = (set(sessions_started(s, m)) for s, m in zip(two_servers, marks, strict=True))
    assert on_a and on_b
    assert on_a & on_b, "a session's prompts must take turns over both servers"


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_locustfile_sends_each_prompt_of_a_session_to_the_next_url(
    two_servers: list[ServerProcess],
) -> None:
    """`LOCUST_URLS=A,B python loadtests/locustfile.py` (one user, no --host): 3 interrupted
    conversations are 6 prompts of one session, 3 on each server, in turn, so every
    interrupting prompt lands on the other server than the stream it interrupts; the
    registry both share keeps every stream clean."""
    marks = [serverlog.size(server.log_path) for server in two_servers]
    env = {k: v for k, v in os.environ.items() if k != "LOCUST_HOST"}
    env.update(LOCUST_URLS=",".join(s.url for s in two_servers), LOCUST_CONVERSATIONS="3",
               LOCUST_INTERRUPT_RATE="1", LOCUST_THINK_TIME="0.05")  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(LOCUSTFILE)], env=env, capture_output=True, text=True, timeout=45,
        check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for kind in FAILURE_KINDS:
        assert kind not in output
    on_a, on_b = (sessions_started(s, m) for s, m in zip(two_servers, marks, strict=True))
    assert len(on_a) == len(on_b) == 3, (on_a, on_b)
    assert len(set(on_a + on_b)) == 1, "one user, one session"


def test_one_url_runs_locust_as_before_and_several_pass_the_list() -> None:
    """One --url is locust's --host alone, exactly as before; several are also passed to
    every locust process (master and workers) as the locustfile's --urls."""
    one = Plan(url="http://a:1", users=5, spawn_rate=5, run_time_s=6, interrupt_rate=0.3,
               workers=1, locustfile=Path("/x/locustfile.py"), report_dir=Path("/r"))  # fmt: skip
    assert "--urls" not in one.master_argv(5557) + one.worker_argv(5557)
    assert one.servers == ("http://a:1",)
    several = dataclasses.replace(one, urls=("http://a:1", "http://b:2"))
    for argv in (several.master_argv(), several.master_argv(5557), several.worker_argv(5557)):
        assert argv[argv.index("--urls") + 1] == "http://a:1,http://b:2"
    master = several.master_argv()
    assert master[master.index("--host") + 1] == "http://a:1"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--server-workers", "2"), "--server-workers 2 needs --registry redis://"),
        (("--server-workers", "0"), "--server-workers must be at least 1"),
        (("--registry", "http://127.0.0.1:6379"), "registry (--registry) must be a redis://"),
        (("--url", "http://127.0.0.1:9", "--server-workers", "2", "--registry", "redis://x"),
         "with --url"),
        (("--registry", "redis://x", "--fault", "no-cancel"), "drop --registry"),
    ],
)  # fmt: skip
def test_bad_embedded_fleet_flags_are_usage_errors_before_anything_starts(
    args: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad --server-workers/--registry exits 2 naming the problem; no report folder
    is made, because nothing started."""
    code = main(["swarm", "--report-dir", str(tmp_path / "r"), *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == ExitCode.USAGE
    assert message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.timeout(30)
def test_help_tells_the_servers_workers_from_locusts(capsys: pytest.CaptureFixture[str]) -> None:
    """--help lists --server-workers and --registry and says which --workers is locust's."""
    assert main(["swarm", "--help"]) == ExitCode.OK
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())  # rich's boxes
    assert "--server-workers" in text and "--registry" in text
    assert "not locust's --workers" in text
    assert "Locust's workers" in text


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_swarm_against_an_embedded_fleet_passes_and_diagnoses_every_workers_log(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """`--server-workers 2 --registry URL`: the embedded server is a 2-worker fleet, the
    gate holds with 0 failures, and diagnose judged both workers' logs healthy."""
    run = swarm(tmp_path, *SHORT, "--server-workers", "2", "--registry", redis_server.url)
    assert run.code == ExitCode.OK, run.output
    assert "failures by kind: none" in run.output
    assert f"embedded server --workers 2 --registry {redis_server.url}" in run.output
    logs = [run.report_dir / "server.w1.log", run.report_dir / "server.w2.log"]
    diagnosed = next(line for line in run.output.splitlines() if "diagnose (server log)" in line)
    assert "healthy" in diagnosed
    assert all(str(path) in run.output for path in logs)
    assert all("event=stream_start" in path.read_text() for path in logs)
