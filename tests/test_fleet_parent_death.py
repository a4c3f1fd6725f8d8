"""`kill -9` of a fleet's supervisor: its workers follow within 2 s and free the port,
whether they were idle, streaming (the stream ends `reason=shutdown`), or deadlocked (cut
off at the deadline). Real `jarvis serve --workers 2` on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import ServerProcess, fleet_worker_pids, fleet_worker_running, start_fleet
from .redis_server import RedisServer

#: The promise: every worker gone this long after its supervisor's SIGKILL.
WITHIN_S = 2.0
#: Starts a 2-worker fleet with extra `jarvis serve` args; returns it and its worker pids.
StartFleet = Callable[..., tuple[ServerProcess, list[int]]]
LONG = {"messages": [{"role": "user", "content": "Long essay"}], "stream": True}


def gone(pid: int) -> bool:
    """The process has exited: no such pid, or a zombie (exited, waiting for a reaper that
    may never come: an orphan's new parent need not reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def kill_parent_and_time_the_workers(fleet: ServerProcess, pids: list[int]) -> float:
    """SIGKILL the supervisor; return how long until the last worker was gone (at most
    a little over WITHIN_S: the poll gives up there)."""
    os.kill(fleet.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    fleet.proc.wait(5)
    while time.monotonic() - killed < WITHIN_S + 0.5:
        if all(gone(pid) for pid in pids):
            break
        time.sleep(0.01)
    return time.monotonic() - killed


@pytest.fixture
def fleet_of_two(redis_server: RedisServer, tmp_path: Path) -> Iterator[StartFleet]:
    """Start a 2-worker fleet (extra args allowed) and its two worker pids; whatever the
    test did, the supervisor and every worker are SIGKILLed at the end."""
    started: list[tuple[ServerProcess, list[int]]] = []

    def start(*args: str) -> tuple[ServerProcess, list[int]]:
        fleet = start_fleet(tmp_path, redis_server.url, 2, *args)
        started.append((fleet, []))
        end = time.monotonic() + 15
        while len(pids := fleet_worker_pids(tmp_path / "fleet")) < 2:
            assert time.monotonic() < end, "the second worker did not start"
            time.sleep(0.05)
        started[-1][1].extend(pids)
        return fleet, pids

    yield start
    for fleet, pids in started:
        fleet.stop(signal.SIGKILL, timeout=5)
        for pid in pids:
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def port_is_closed(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=0.5)
    except httpx.ConnectError:
        return True
    return False


def logs(folder: Path) -> dict[int, list[str]]:
    """Each worker's log lines, by its pid."""
    by_pid = {}
    for path in folder.glob("system.w*.log"):
        lines = path.read_text().splitlines()
        by_pid[int(lines[0].split(" pid=")[1].split()[0])] = lines
    return by_pid


def events(lines: list[str]) -> list[str]:
    return [line.split(" event=")[1].split()[0] for line in lines]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_idle_workers_die_with_their_killed_supervisor_and_free_the_port(
    fleet_of_two: StartFleet, tmp_path: Path
) -> None:
    """kill -9 the supervisor of an idle 2-worker fleet: both workers are gone within 2 s,
    /healthz no longer answers on the port, and each worker logged parent_gone (via the
    pipe) then its server_stop."""
    fleet, pids = fleet_of_two()
    assert httpx.get(f"{fleet.url}/healthz", timeout=2).status_code == 200
    took = kill_parent_and_time_the_workers(fleet, pids)
    print(f"idle: last worker gone {took:.3f} s after the supervisor's SIGKILL")
    assert all(gone(pid) for pid in pids), f"workers still alive {took:.2f} s after SIGKILL"
    assert took < WITHIN_S
    assert port_is_closed(fleet.url)
    for pid, lines in logs(tmp_path / "fleet").items():
        assert events(lines)[-2:] == ["parent_gone", "server_stop"], (pid, lines[-3:])
        assert f"supervisor_pid={fleet.proc.pid} via=pipe" in lines[-2]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_an_open_stream_ends_with_reason_shutdown_when_the_supervisor_is_killed(
    fleet_of_two: StartFleet, tmp_path: Path
) -> None:
    """A stream is open when the supervisor is killed: its worker shuts down as on
    SIGTERM, so the client gets the terminal chunk (end_reason shutdown) and [DONE]
    instead of a cut connection, and the worker is still gone within 2 s."""
    fleet, pids = fleet_of_two("--token-rate", "20")
    with (
        httpx.Client(base_url=fleet.url, timeout=10) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=LONG, headers={"x-session-id": "orphaned"}
        ) as response,  # fmt: skip
    ):
        chunks = response.iter_bytes()
        body = next(chunks)
        streaming = fleet_worker_running(tmp_path / "fleet", response.headers["x-stream-id"])
        took = kill_parent_and_time_the_workers(fleet, pids)
        body += b"".join(chunks)
    print(f"streaming: last worker gone {took:.3f} s after the supervisor's SIGKILL")
    assert all(gone(pid) for pid in pids), f"workers still alive {took:.2f} s after SIGKILL"
    assert took < WITHIN_S
    assert b'"end_reason":"shutdown"' in body
    assert body.endswith(b"data: [DONE]\n\n")
    assert port_is_closed(fleet.url)
    order = events(logs(tmp_path / "fleet")[streaming])
    assert order.index("parent_gone") < order.index("stream_end") < order.index("server_stop")
    assert "reason=shutdown" in next(
        line for line in logs(tmp_path / "fleet")[streaming] if "event=stream_end" in line
    )


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_deadlocked_worker_is_cut_off_at_the_deadline_when_the_supervisor_is_killed(
    fleet_of_two: StartFleet, tmp_path: Path
) -> None:
    """--fault blocking-flush deadlocks a worker's loop, so no graceful shutdown can run
    there: kill -9 the supervisor and the watcher thread still ends that worker within
    2 s; its log says parent_gone and no server_stop after it."""
    fleet, pids = fleet_of_two("--token-rate", "200", "--fault", "blocking-flush")
    folder = tmp_path / "fleet"

    async def overlap() -> None:
        async with httpx.AsyncClient(base_url=fleet.url, timeout=2) as client:

            async def one(n: int) -> None:
                with contextlib.suppress(httpx.HTTPError, TimeoutError):
                    async with asyncio.timeout(2), client.stream(
                        "POST", "/v1/chat/completions", json=LONG,
                        headers={"x-session-id": f"dead{n}"},
                    ) as response:  # fmt: skip
                        async for _ in response.aiter_bytes():
                            pass

            await asyncio.gather(*(one(n) for n in range(8)))

    blocked: set[int] = set()
    end = time.monotonic() + 20
    while not blocked and time.monotonic() < end:
        asyncio.run(overlap())
        blocked = {pid for pid, lines in logs(folder).items() if "loop_blocked" in events(lines)}
    assert blocked, "no worker deadlocked"
    took = kill_parent_and_time_the_workers(fleet, pids)
    print(f"deadlocked: last worker gone {took:.3f} s after the supervisor's SIGKILL")
    assert all(gone(pid) for pid in pids), f"workers still alive {took:.2f} s after SIGKILL"
    assert took < WITHIN_S
    assert port_is_closed(fleet.url)
    for pid in blocked:
        order = events(logs(folder)[pid])
        assert "parent_gone" in order
        assert "server_stop" not in order[order.index("parent_gone") :]
