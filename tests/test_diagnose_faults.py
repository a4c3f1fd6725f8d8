"""`jarvis diagnose` on real logs of the reference server: each fault yields its finding,
and a healthy run yields none."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.logs.engine import ENGINES, PURE_ENV

from .streams import overlap, stream_chat

pytestmark = pytest.mark.e2e


def diagnose(server, *args: str) -> tuple[int, dict[str, object]]:
    """Diagnose the server's log with each logfmt hot loop; both must say the same."""
    results = []
    for engine in ENGINES:
        proc = subprocess.run(
            [sys.executable, "-m", "jarvis_cli", "diagnose", str(server.log_path), "--json", *args],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, PURE_ENV: "1" if engine == "python" else "0"},
        )  # fmt: skip
        report = json.loads(proc.stdout)
        coverage = report["coverage"]
        assert coverage.pop("engine") == engine
        del coverage["seconds"]
        results.append((proc.returncode, report))
    assert all(result == results[0] for result in results), "the engines disagree"
    return results[0]


def ids(report: dict[str, object]) -> set[str]:
    return {f["id"] for f in report["findings"]}  # type: ignore[index,union-attr]


async def busy_run(url: str) -> None:
    """Overlaps in several sessions, a burst, and a plain stream: a realistic mix."""
    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(overlap(url, f"o{i}", gap=0.1) for i in range(4)))
        tasks = [
            asyncio.create_task(stream_chat(client, url, f"Long essay {i}", session="burst",
                                            max_tokens=50))
            for i in range(4)
        ]  # fmt: skip
        await asyncio.gather(*tasks)
        await stream_chat(client, url, "What is 2+2?", session="plain")


async def test_healthy_server_log_has_no_findings(server_factory) -> None:
    """No fault: exit 0, verdict healthy, every stream ended with cleanup_done=True."""
    server = server_factory("--token-rate", "200")
    await busy_run(server.url)
    server.stop()
    code, report = diagnose(server, "--fail-on", "warning")
    assert code == ExitCode.OK, report["findings"]
    assert report["verdict"] == "healthy"
    assert report["stats"]["streams"] == 4 * 2 + 4 + 1
    assert report["stats"]["ended"]["superseded"] == 4 + 3


async def test_no_cancel_log_shows_concurrent_streams(server_factory) -> None:
    """--fault no-cancel: concurrent_streams, with the session named."""
    server = server_factory("--token-rate", "100", "--fault", "no-cancel")
    await overlap(server.url, "nc")
    server.stop()
    code, report = diagnose(server)
    assert code == ExitCode.FAILURE
    assert "concurrent_streams" in ids(report)
    assert {f["session"] for f in report["findings"]} == {"nc"}


async def test_ignore_cancel_log_shows_cancel_ignored_and_concurrency(server_factory) -> None:
    """--fault ignore-cancel: the cancelled stream kept flushing beside its successor."""
    server = server_factory("--token-rate", "100", "--fault", "ignore-cancel",
                            "--cancel-wait", "0.3")  # fmt: skip
    await overlap(server.url, "ic")
    server.stop()
    _, report = diagnose(server)
    assert {"cancel_ignored", "concurrent_streams"} <= ids(report)


async def test_skip_cleanup_log_shows_cleanup_incomplete(server_factory) -> None:
    """--fault skip-cleanup: stream_end without cleanup_done=True nor event_buffers_cleaned."""
    server = server_factory("--token-rate", "400", "--fault", "skip-cleanup",
                            "--cancel-wait", "0.3")  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        await stream_chat(client, server.url, "What is 2+2?", session="leak")
        await stream_chat(client, server.url, "What is 2+2?", session="leak")
    server.stop(signal.SIGKILL)
    code, report = diagnose(server)
    assert code == ExitCode.FAILURE
    assert "cleanup_incomplete" in ids(report)
    assert "cancel_timeouts" in ids(report), "the next prompt waited the leaked stream out"


async def test_slow_cleanup_log_shows_cancel_timeouts_as_a_warning(server_factory) -> None:
    """--fault slow-cleanup: cancel_timeouts (warning; exit 1 only with --fail-on warning),
    and the fence keeps it from being concurrent."""
    server = server_factory("--token-rate", "100", "--fault", "slow-cleanup",
                            "--cancel-wait", "0.3")  # fmt: skip
    with contextlib.suppress(httpx.HTTPError):  # the fenced stream is cut, no terminator
        await overlap(server.url, "sc")
    # The stalled cleanup finishes late: wait for its stream_end, not for a guessed time.
    server.wait_for_event("stream_end", deadline_s=5.0, session="sc", reason="superseded")
    server.stop()
    code, report = diagnose(server)
    assert ids(report) == {"cancel_timeouts"}
    assert code == ExitCode.OK
    code, _ = diagnose(server, "--fail-on", "warning")
    assert code == ExitCode.FAILURE


def test_blocking_flush_log_shows_loop_blocked_and_flush_stuck(server_factory) -> None:
    """--fault blocking-flush hangs the server: the log it leaves shows loop_blocked with
    the stack in the fault code, and a flush_start that never got its flush_done."""
    server = server_factory("--token-rate", "200", "--fault", "blocking-flush",
                            "--watchdog-ms", "200")  # fmt: skip

    async def fire() -> None:
        async with httpx.AsyncClient(timeout=3) as client:
            await asyncio.gather(
                *(stream_chat(client, server.url, "Long essay", session=s, deadline=2)
                  for s in ("h1", "h2")),
                return_exceptions=True,
            )  # fmt: skip

    asyncio.run(fire())
    server.wait_for_event("loop_blocked", deadline_s=3)
    server.stop(signal.SIGKILL)
    code, report = diagnose(server)
    assert code == ExitCode.FAILURE
    assert {"loop_blocked", "flush_stuck"} <= ids(report)
    blocked = next(f for f in report["findings"] if f["id"] == "loop_blocked")
    assert "blocking_flush" in blocked["message"]
    assert report["diagnosis"][1] == "Server still hanging?"
