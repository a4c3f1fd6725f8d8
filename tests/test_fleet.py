"""`jarvis serve` as a fleet on a real redis-server: several processes, one stream per
session. verify-hang is the judge, as for any server: it passes two processes sharing
Redis and a `--workers` fleet, and fails two processes that each keep their registry."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import main

from .conftest import fleet_worker_pids, fleet_worker_running, free_port, start_fleet
from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["--scenario", "overlap", "--scenario", "burst", "--scenario", "isolation"]


def verify(urls: list[str], tmp_path: Path, *extra: str) -> tuple[int, dict[str, str]]:
    """Run verify-hang against `urls` (one session's prompts spread over them)."""
    report = tmp_path / f"verify-{len(list(tmp_path.iterdir()))}.json"
    argv = [sys.executable, "-m", "jarvis_cli", "verify-hang", "--json", str(report), *extra]
    for url in urls:
        argv += ["--url", url]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert report.exists(), done.stdout[-1500:] + done.stderr[-1500:]
    statuses = {s["name"]: s["status"] for s in json.loads(report.read_text())["scenarios"]}
    return done.returncode, statuses


@pytest.mark.timeout(10)
def test_workers_without_a_shared_registry_are_refused_with_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--workers 2` alone would run two registries: refused at start, saying what to use."""
    assert main(["serve", "--port", "0", "--workers", "2"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "--registry redis://" in err and "another worker" in err


@pytest.mark.timeout(15)
def test_an_unreachable_registry_at_start_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing answers at --registry: the server does not start (exit 3), naming the URL."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["serve", "--port", "0", "--registry", url]) == ExitCode.UNAVAILABLE
    assert f"cannot reach --registry {url}" in capsys.readouterr().err.replace("\n", "")


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_two_servers_sharing_redis_pass_and_two_alone_fail(
    server_factory: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two `jarvis serve` processes: with one Redis, a session's prompts spread over both
    still get one stream at a time (pass); each with its own registry, two streams of a
    session emit at once (overlap fails)."""
    shared = [server_factory("--registry", redis_server.url, name=f"shared{i}") for i in range(2)]
    code, statuses = verify([s.url for s in shared], tmp_path)
    assert code == 0, statuses
    # Not run: jarvis's own /metrics has no engine's busy gauge, and resume is off.
    not_run = {"work_stops": "skip", "resume": "skip"}
    assert {n: s for n, s in statuses.items() if s != "pass"} == not_run
    alone = [server_factory(name=f"alone{i}") for i in range(2)]
    code, statuses = verify([s.url for s in alone], tmp_path)
    assert code == 1
    assert statuses["overlap"] == "fail", statuses


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_workers_fleet_passes_and_stops_cleanly(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """`--workers 4 --registry redis://...`: verify-hang passes; SIGTERM stops every worker
    gracefully (exit 0), each with its own whole log ending in server_stop."""
    fleet = start_fleet(tmp_path, redis_server.url, 4)
    try:
        code, statuses = verify([fleet.url], tmp_path)
        assert code == 0, statuses
    finally:
        assert fleet.stop(signal.SIGTERM, timeout=20) == 0
    logs = sorted((tmp_path / "fleet").glob("system.w*.log"))
    assert [p.name for p in logs] == [f"system.w{n}.log" for n in range(1, 5)]
    for path in logs:
        lines = path.read_text().splitlines()
        assert "event=server_start" in lines[0] and "registry=redis:" in lines[0]
        assert "event=server_stop" in lines[-1]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_killed_worker_costs_only_its_streams_and_its_session_comes_back(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """kill -9 the worker running a session's stream: that stream breaks, the fleet starts
    the worker again, and the session's next prompt streams within the cancel wait."""
    fleet = start_fleet(tmp_path, redis_server.url, 2, "--cancel-wait", "1", "--token-rate", "50")
    body = {"messages": [{"role": "user", "content": "Long essay"}], "stream": True}
    try:
        with httpx.Client(base_url=fleet.url, timeout=10) as client:
            with client.stream("POST", "/v1/chat/completions", json=body,
                               headers={"x-session-id": "doomed"}) as first:  # fmt: skip
                stream_id = first.headers["x-stream-id"]
                chunks = first.iter_bytes()
                next(chunks)
                victim = fleet_worker_running(tmp_path / "fleet", stream_id)
                os.kill(victim, signal.SIGKILL)
                with pytest.raises(httpx.HTTPError):  # the connection breaks mid-stream
                    b"".join(chunks)
            started = time.monotonic()
            short = body | {"messages": [{"role": "user", "content": "What is 2+2?"}]}
            again = client.post(
                "/v1/chat/completions", json=short, headers={"x-session-id": "doomed"}
            )
            assert again.status_code == 200
            assert '"end_reason":"completed"' in again.text
            assert time.monotonic() - started < 1 + 1.5
        end = time.monotonic() + 10
        while time.monotonic() < end and len(fleet_worker_pids(tmp_path / "fleet")) < 3:
            time.sleep(0.1)
        assert len(fleet_worker_pids(tmp_path / "fleet")) == 3, (
            "the killed worker was started again"
        )
    finally:
        fleet.stop(signal.SIGTERM, timeout=20)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_redis_restarting_under_a_fleet_never_hangs_and_the_fleet_recovers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis goes away under a 2-worker fleet: prompts get a quick answer (a 503, or the
    stream that found Redis gone ends with an error), never a hang; the workers log
    registry_unavailable; Redis back on its port, prompts stream again."""
    fleet = start_fleet(tmp_path, redis_server.url, 2)
    short = {"messages": [{"role": "user", "content": "What is 2+2?"}], "stream": True}
    try:
        with httpx.Client(base_url=fleet.url, timeout=5) as client:

            def ask(session: str) -> httpx.Response:
                headers = {"x-session-id": session}
                return client.post("/v1/chat/completions", json=short, headers=headers)

            assert '"end_reason":"completed"' in ask("before").text
            redis_server.stop()
            outcomes = []
            for i in range(6):  # each one bounded by the client's 5 s timeout: no hang
                started = time.monotonic()
                response = ask(f"down{i}")
                outcomes.append(response.status_code)
                assert time.monotonic() - started < 3
                if response.status_code == 200:
                    assert '"end_reason":"error"' in response.text
            assert 503 in outcomes, outcomes
            redis_server.start()
            end = time.monotonic() + 15
            last: object = None
            while time.monotonic() < end:
                try:
                    response = ask("after")
                except httpx.TransportError as exc:
                    # A kept-alive connection the server closed meanwhile (its idle
                    # timeout): the race every HTTP/1.1 client has; ask again.
                    last = exc
                else:
                    last = response.status_code
                    if response.status_code == 200 and '"end_reason":"completed"' in response.text:
                        break
                time.sleep(0.2)
            else:
                logs = "".join(
                    p.read_text()[-1500:] for p in (tmp_path / "fleet").glob("system.w*.log")
                )
                raise AssertionError(
                    f"the fleet did not recover: {last!r}\nfleet output: {fleet.tail()}\n"
                    f"worker logs (tails): {logs}"
                )
    finally:
        fleet.stop(signal.SIGTERM, timeout=20)
    logs = "".join(p.read_text() for p in (tmp_path / "fleet").glob("system.w*.log"))
    assert "event=registry_unavailable" in logs
    assert "event=registry_recovered" in logs


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_worker_restarted_while_redis_is_away_serves_503s_and_the_fleet_stays(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A worker dies during a Redis outage: its restart finds Redis away, starts anyway
    (`registry_unavailable op=start`) instead of exiting, which would stop the whole
    fleet; Redis back, the restarted worker logs registry_recovered by itself."""
    folder = tmp_path / "fleet"
    fleet = start_fleet(tmp_path, redis_server.url, 2)
    try:
        end = time.monotonic() + 15
        while len(fleet_worker_pids(folder)) < 2:
            assert time.monotonic() < end, f"the second worker did not start: {fleet.tail()}"
            time.sleep(0.05)
        victim = fleet_worker_pids(folder)[0]
        (log,) = [p for p in folder.glob("system.w*.log") if f" pid={victim} " in p.read_text()]
        redis_server.stop()
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic() + 20
        while log.read_text().count("event=server_start") < 2:
            assert fleet.proc.poll() is None, f"the fleet stopped: {fleet.tail()}"
            assert time.monotonic() < end, f"the worker did not start again: {fleet.tail()}"
            time.sleep(0.05)
        restarted = log.read_text().split("event=server_start")[-1]
        assert "event=registry_unavailable op=start" in log.read_text(), log.read_text()[-1500:]
        with httpx.Client(base_url=fleet.url, timeout=5) as client:
            refused = client.post("/v1/chat/completions", json={"messages": [
                {"role": "user", "content": "hi"}], "stream": True})  # fmt: skip
        assert refused.status_code == 503, refused.text
        redis_server.start()
        end = time.monotonic() + 10
        while "event=registry_recovered" not in log.read_text().split("event=server_start")[-1]:
            assert time.monotonic() < end, f"the restarted worker did not recover: {restarted}"
            time.sleep(0.05)
        assert fleet.proc.poll() is None, fleet.tail()
    finally:
        fleet.stop(signal.SIGTERM, timeout=20)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_sighup_to_the_fleet_reopens_every_workers_log(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """logrotate moves the workers' files and signals the parent: every worker reopens its
    --log-file name (the parent passes SIGHUP on), so new lines land in new files."""
    fleet = start_fleet(tmp_path, redis_server.url, 2)
    folder = tmp_path / "fleet"
    try:
        for path in folder.glob("system.w*.log"):
            path.rename(path.with_suffix(".log.moved"))
        fleet.proc.send_signal(signal.SIGHUP)
        short = {"messages": [{"role": "user", "content": "What is 2+2?"}], "stream": True}
        end = time.monotonic() + 10
        with httpx.Client(base_url=fleet.url, timeout=5) as client:
            while time.monotonic() < end and len(list(folder.glob("system.w*.log"))) < 2:
                client.post("/v1/chat/completions", json=short)
        assert sorted(p.name for p in folder.glob("system.w*.log")) == [
            "system.w1.log",
            "system.w2.log",
        ]
        assert fleet.proc.poll() is None, "SIGHUP must not stop the fleet"
    finally:
        fleet.stop(signal.SIGTERM, timeout=20)


@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_killing_one_worker_leaves_the_other_workers_streams_whole(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Streams run on both workers; kill -9 one worker: exactly its streams break, every
    stream on the other worker ends with its terminal chunk and [DONE]."""
    import asyncio

    fleet = start_fleet(tmp_path, redis_server.url, 2, "--token-rate", "50")
    folder = tmp_path / "fleet"
    body = {"messages": [{"role": "user", "content": "Long essay"}], "stream": True,
            "max_tokens": 120}  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=fleet.url, timeout=15) as client:
            opened: list[tuple[Any, Any, int]] = []  # (context, response, worker pid)

            async def open_one(n: int) -> None:
                context = client.stream("POST", "/v1/chat/completions", json=body,
                                        headers={"x-session-id": f"many{n}"})  # fmt: skip
                response = await context.__aenter__()
                chunks = response.aiter_bytes()
                await chunks.__anext__()
                pid = await asyncio.to_thread(
                    fleet_worker_running, folder, response.headers["x-stream-id"]
                )
                opened.append((context, chunks, pid))

            n = 0
            while len({pid for _, _, pid in opened}) < 2 and n < 24:
                await open_one(n)
                n += 1
            pids = {pid for _, _, pid in opened}
            assert len(pids) == 2, "streams landed on one worker only"
            victim = opened[0][2]
            os.kill(victim, signal.SIGKILL)

            async def finish(chunks: Any) -> bytes | None:
                try:
                    return b"".join([c async for c in chunks])
                except httpx.HTTPError:
                    return None  # broke mid-stream

            results = await asyncio.gather(*(finish(chunks) for _, chunks, _ in opened))
            for context, _, _ in opened:
                with contextlib.suppress(httpx.HTTPError):
                    await context.__aexit__(None, None, None)
        for (_, _, pid), result in zip(opened, results, strict=True):
            if pid == victim:
                assert result is None or b"[DONE]" not in result
            else:
                assert result is not None and result.endswith(b"data: [DONE]\n\n")
    finally:
        fleet.stop(signal.SIGTERM, timeout=20)
