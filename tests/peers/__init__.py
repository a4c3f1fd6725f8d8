"""Servers that are not jarvis, and what `jarvis verify-hang` must say about each.

`PEERS` is the table (docs/verify-hang.md shows it, and a test keeps the two equal);
`running(peer)` starts one on 127.0.0.1 port 0 (the port read back) and always kills it
afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import processes

#: The repository: peers run as `python -m tests.peers.<name>` from here.
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Expectation:
    """One `verify-hang --url URL <args>` run against a peer, and its outcome."""

    args: tuple[str, ...]
    #: `pass` or `fail` (the report's verdict), or `exit 2` (a set-up error, no report).
    verdict: str
    failing: frozenset[str] = frozenset()
    #: Scenarios that fail or pass by chance (which worker the kernel hands a connection).
    by_chance: frozenset[str] = frozenset()
    #: What stderr must say (an exit 2 names the option to change).
    says: tuple[str, ...] = ()


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
USAGE = "exit 2"  # the set-up is wrong: no verdict at all

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
            (
                Expectation(("--target", "tests/peers/custom_api.toml"), PASS),
                # Without its target file: POST /v1/chat/completions is a 404.
                Expectation((), USAGE, says=("answered HTTP 404", "--url", "--target")),
            ),
            health="/api/ping",
        ),
        Peer(
            "anthropic_peer",
            _module("anthropic_peer"),
            (Expectation(("--dialect", "anthropic"), PASS),),
        ),
        Peer("unicode_crlf", _module("unicode_crlf"), (Expectation((), PASS),)),
        Peer(
            "auth_required",
            _module("auth_required"),
            (
                Expectation(("--api-key", "peer-secret"), PASS),
                Expectation(("--header", "X-Api-Key:peer-secret"), PASS),
                Expectation((), USAGE, says=("answered HTTP 401", "--api-key", "--header")),
            ),
            health="/health",
        ),
        Peer("status_201", _module("status_201"), (Expectation((), PASS),)),
        Peer(
            "leftover_tokens",
            _module("leftover_tokens"),
            (Expectation((), FAIL, _fail("overlap", "burst", "isolation"), _fail("disconnect")),),
        ),
        Peer("varying_lengths", _module("varying_lengths"), (Expectation((), PASS),)),
        Peer(
            "slots",
            _module("slots"),
            # A --deadline shorter than the queue's wait: slow, and still never a hang.
            (Expectation(("--expect", "independent", "--deadline", "2"), PASS),),
        ),
        Peer("numbered", _module("numbered"), (Expectation((), PASS),)),
        # The same server, its resume endpoint off by one event either way.
        Peer(
            "numbered_repeat",
            _module("numbered", "--replay", "repeat"),
            (Expectation((), FAIL, _fail("resume")),),
        ),
        Peer(
            "numbered_skip",
            _module("numbered", "--replay", "skip"),
            (Expectation((), FAIL, _fail("resume")),),
        ),
        Peer(
            "engine_gauge",
            _module("engine_gauge"),
            (
                Expectation((), PASS),
                # A metrics URL the user names must have a busy gauge: a set-up error.
                Expectation(
                    ("--engine-metrics", "http://127.0.0.1:{port}/v1/models"),
                    USAGE,
                    says=("--engine-metrics", "--busy-gauge"),
                ),
            ),
        ),
        Peer(
            "ghost_requests",
            _module("ghost_requests"),
            # Every stream ends right on the wire; only the engine's gauge stays up.
            (Expectation((), FAIL, _fail("work_stops")),),
        ),
        Peer(
            "slow_finally",
            _module("slow_finally", "--log-file", "{log}"),
            # The user's 3 s `finally` outlives a disconnected client by more than the
            # 1 s disconnect allows; overlap and burst hold (the cancel wait, the fence).
            # Each overlap round waits the 2 s cancel wait: one round keeps the run short.
            (Expectation(("--log-file", "{log}", "--rounds", "1"), FAIL, _fail("disconnect")),),
        ),
        Peer(
            "busy_reject",
            _module("busy_reject"),
            (
                Expectation(("--expect", "reject"), PASS),
                # Its refusals are what supersede's checks see first: B refused with 409.
                Expectation((), FAIL, _fail("overlap", "burst", "isolation")),
            ),
            health="/health",
        ),
    )
}


def fill(args: tuple[str, ...], *, port: int, log: Path) -> list[str]:
    """The placeholders of a PEERS row made real."""
    return [a.replace("{port}", str(port)).replace("{log}", str(log)) for a in args]


@contextlib.contextmanager
def running(peer: Peer, workdir: Path) -> Iterator[str]:
    """Start `peer` on port 0 (the port read back), wait for its health path, yield its
    URL; kill its whole process group afterwards, whatever happened."""
    log = workdir / f"{peer.name}.log"
    argv = [sys.executable, *fill(peer.argv, port=0, log=log)]
    server = processes.start(argv, name=peer.name, workdir=workdir, cwd=ROOT, ready=peer.health)
    try:
        yield server.url
    finally:
        server.stop(signal.SIGKILL)
