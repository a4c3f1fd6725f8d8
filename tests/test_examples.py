"""The examples in `examples/` run as users run them (uvicorn, a loopback port), and do
what docs/adopt.md and docs/library.md say they do."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from jarvis.logfmt import parse_logfmt

from . import processes

#: Every test here starts real processes (servers, the CLI, a browser): the e2e lane.
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@contextlib.contextmanager
def serving(module: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run `examples/<module>.py`'s `app` under uvicorn on port 0 (the port read back),
    as users run it; always stop it. Yields `127.0.0.1:PORT`."""
    server = processes.start(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), f"{module}:app",
         "--host", processes.HOST, "--port", "0"],
        name=module, workdir=workdir, cwd=ROOT, env=env, ready=None,
    )  # fmt: skip
    try:
        yield f"{processes.HOST}:{server.port}"
    finally:
        server.stop()


@pytest.mark.timeout(30)
async def test_websocket_example_ends_the_old_answer_before_the_new_one_starts(
    tmp_path: Path,
) -> None:
    """examples/websocket_app.py on `guard.stream`: a second prompt on the socket ends the
    first answer (`end` superseded) before any token of the second, which completes."""
    with serving("websocket_app", tmp_path) as address:
        async with connect(f"ws://{address}/chat?session=ws1", open_timeout=5) as ws:
            await ws.send(json.dumps({"prompt": "a long answer please"}))
            first = json.loads(await ws.recv())
            assert first["type"] == "token"
            await ws.send(json.dumps({"prompt": "short"}))
            messages = []
            while not (
                messages
                and messages[-1]["type"] == "end"
                and messages[-1]["stream"] != first["stream"]
            ):
                messages.append(json.loads(await ws.recv()))
    old = [m for m in messages if m["stream"] == first["stream"]]
    new = [m for m in messages if m["stream"] != first["stream"]]
    assert old[-1] == {"type": "end", "stream": first["stream"], "reason": "superseded"}
    assert new[-1]["reason"] == "completed"
    text = "".join(m["text"] for m in new if m["type"] == "token")
    assert text == "a stand in model streams words like these "
    # Nothing of the old answer after the new answer's first message.
    assert messages.index(old[-1]) < messages.index(new[0])


@pytest.mark.timeout(30)
async def test_the_minimal_websocket_example_logs_a_closed_socket_as_disconnected(
    tmp_path: Path,
) -> None:
    """examples/websocket_minimal.py cancels its answer task when the socket closes (the
    natural code): the guard logs the stream `disconnected`, never `shutdown`, cleaned up;
    its handler is at most ten lines."""
    log = tmp_path / "ws.log"
    handler = (EXAMPLES / "websocket_minimal.py").read_text().split("async def answer")[1]
    code = [line for line in handler.split("\n\n\napp =")[0].splitlines() if line.strip()]
    assert len(code) <= 10, code
    with serving("websocket_minimal", tmp_path, {"APP_LOG_FILE": str(log)}) as address:
        async with connect(f"ws://{address}/chat?session=w1", open_timeout=5) as ws:
            await ws.send("hello")
            first = await asyncio.wait_for(ws.recv(), 5)
            assert str(first).startswith("hello ")
        async with asyncio.timeout(5):
            while "event=stream_end" not in (log.read_text() if log.exists() else ""):
                await asyncio.sleep(0.05)
    events = [parse_logfmt(line) for line in log.read_text().splitlines()]
    (cancelled,) = [e for e in events if e["event"] == "stream_cancelled"]
    (end,) = [e for e in events if e["event"] == "stream_end"]
    assert cancelled["reason"] == "client_disconnected"
    assert (end["reason"], end["cleanup_done"], end["session"]) == ("disconnected", "True", "w1")
    assert "shutdown" not in {e.get("reason") for e in events}
    # Not an OpenAI stream: no `chatcmpl-` id, and no empty model.
    (start,) = [e for e in events if e["event"] == "stream_start"]
    assert not start["stream_id"].startswith("chatcmpl-") and "model" not in start


def test_adopting_the_guard_is_a_small_diff() -> None:
    """examples/guarded_app.py is examples/naive_app.py plus the guard: at most 15 lines
    added and 15 removed (docs/adopt.md walks through exactly this diff)."""
    naive = (EXAMPLES / "naive_app.py").read_text().splitlines()
    guarded = (EXAMPLES / "guarded_app.py").read_text().splitlines()
    diff = list(difflib.unified_diff(naive, guarded, lineterm="", n=0))[2:]
    added = [line for line in diff if line.startswith("+")]
    removed = [line for line in diff if line.startswith("-")]
    assert 0 < len(added) <= 15, added
    assert 0 < len(removed) <= 15, removed
    assert any("StreamGuard" in line for line in added)


def verify(address: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"verify-{address.rsplit(':', 1)[1]}.json"
    done = subprocess.run(
        [sys.executable, "-m", "jarvis_cli", "verify-hang", "--url", f"http://{address}",
         "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert report.exists(), done.stderr[-2000:]
    return done.returncode, json.loads(report.read_text())


@pytest.mark.timeout(120)
def test_verify_hang_fails_the_naive_app_and_passes_the_guarded_one(tmp_path: Path) -> None:
    """The same app before and after the guard: verify-hang fails the naive one because
    two streams of one session run at once, and passes the guarded one."""
    with serving("naive_app", tmp_path, {"APP_LOG_FILE": str(tmp_path / "naive.log")}) as address:
        code, report = verify(address, tmp_path)
    assert code == 1
    failed = {s["name"]: s for s in report["scenarios"] if s["status"] == "fail"}
    assert "overlap" in failed, report
    with serving(
        "guarded_app", tmp_path, {"APP_LOG_FILE": str(tmp_path / "guarded.log")}
    ) as address:
        code, report = verify(address, tmp_path)
    statuses = {s["name"]: s["status"] for s in report["scenarios"]}
    assert code == 0, statuses
    assert "fail" not in statuses.values()


@pytest.mark.timeout(60)
def test_diagnose_reads_the_guarded_apps_own_log_and_finds_it_healthy(tmp_path: Path) -> None:
    """The guard logs through the app's logging config (a stdlib format of the app's
    choosing); diagnose rebuilds the streams from that file and finds them healthy."""
    log = tmp_path / "guarded.log"
    with serving("guarded_app", tmp_path, {"APP_LOG_FILE": str(log)}) as address:
        chat = {"messages": [{"role": "user", "content": "a long essay"}], "stream": True}
        session = {"x-session-id": "s1"}
        with (
            httpx.Client(base_url=f"http://{address}", timeout=10) as client,
            client.stream("POST", "/v1/chat/completions", json=chat, headers=session) as first,
        ):
            next(first.iter_bytes())
            short = chat | {"messages": [{"role": "user", "content": "hi?"}]}
            second = client.post("/v1/chat/completions", json=short, headers=session)
            assert second.status_code == 200
    lines = log.read_text().splitlines()
    assert any(" INFO jarvis.stream: event=stream_cancelled " in line for line in lines), lines[:5]
    done = subprocess.run(
        [sys.executable, "-m", "jarvis_cli", "diagnose", str(log), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "healthy", result
    assert result["stats"]["streams"] == 2, result["stats"]
