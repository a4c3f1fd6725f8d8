"""Servers that are not jarvis, and what `jarvis verify-hang` must say about each.

`PEERS` is the table (docs/verify-hang.md shows it, and a test keeps the two equal);
`running(peer)` starts one on a free 127.0.0.1 port and always kills it afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

#: The repository: peers run as `python -m tests.peers.<name>` from here.
ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 15.0


@dataclass(frozen=True)
class Expectation:
    """One `verify-hang --url URL <args>` run against a peer, and its outcome."""

    args: tuple[str, ...]
    verdict: str
    failing: frozenset[str] = frozenset()
    #: Scenarios that fail or pass by chance (which worker the kernel hands a connection).
    by_chance: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Peer:
    """How to start a peer (`{port}`, `{log}` are filled in) and what it must score."""

    name: str
    argv: tuple[str, ...]
    runs: tuple[Expectation, ...]
    health: str = "/v1/models"


def _module(name: str, *extra: str) -> tuple[str, ...]:
    return ("-m", f"tests.peers.{name}", "--port", "{port}", *extra)


def _fail(*scenarios: str) -> frozenset[str]:
    return frozenset(scenarios)


PASS, FAIL = "pass", "fail"  # report["verdict"]

PEERS: dict[str, Peer] = {
    peer.name: peer
    for peer in (
        Peer("stop_done", _module("stop_done"), (Expectation((), PASS),)),
        Peer(
            "plain_close",
            _module("plain_close", "--log-file", "{log}"),
            (Expectation((), PASS), Expectation(("--log-file", "{log}"), PASS)),
        ),
        Peer(
            "original_registry",
            _module("original_registry"),
            (Expectation((), FAIL, _fail("burst")),),
        ),
        Peer(
            "per_process",
            _module("per_process"),
            # overlap's 40 pairs always span both workers; burst's 8 prompts may all land
            # in one, which then supersedes correctly.
            (Expectation((), FAIL, _fail("overlap"), _fail("burst")),),
        ),
        Peer(
            "no_sessions",
            _module("no_sessions"),
            (
                Expectation((), FAIL, _fail("overlap", "burst")),
                Expectation(("--expect", "independent"), PASS),
            ),
        ),
        Peer(
            "body_session",
            _module("body_session"),
            (
                Expectation(("--session-in", "body:metadata.session_id"), PASS),
                Expectation((), FAIL, _fail("overlap", "burst")),
            ),
        ),
        Peer(
            "custom_api",
            _module("custom_api"),
            (Expectation(("--target", "tests/peers/custom_api.toml"), PASS),),
            health="/api/ping",
        ),
        Peer(
            "anthropic_peer",
            _module("anthropic_peer"),
            (Expectation(("--dialect", "anthropic"), PASS),),
        ),
        Peer("unicode_crlf", _module("unicode_crlf"), (Expectation((), PASS),)),
    )
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill(args: tuple[str, ...], *, port: int, log: Path) -> list[str]:
    """The placeholders of a PEERS row made real."""
    return [a.replace("{port}", str(port)).replace("{log}", str(log)) for a in args]


@contextlib.contextmanager
def running(peer: Peer, workdir: Path) -> Iterator[str]:
    """Start `peer` on a free loopback port, wait for its health path, yield its URL;
    kill its whole process group afterwards, whatever happened."""
    port = free_port()
    log, stderr = workdir / f"{peer.name}.log", workdir / f"{peer.name}.stderr"
    argv = [sys.executable, *fill(peer.argv, port=port, log=log)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, f"{url}{peer.health}", stderr)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _wait_healthy(proc: subprocess.Popen[bytes], health: str, stderr: Path) -> None:
    end = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{health}: the peer exited {proc.returncode}: {stderr.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(health, timeout=0.5).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{health} did not answer within {STARTUP_DEADLINE_S:g} s")
