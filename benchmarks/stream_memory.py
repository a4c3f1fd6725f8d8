"""Server RSS per open stream at 5,000 open streams.

Opens streams in distinct sessions, in batches, against a slow `jarvis serve`
(so they stay open), reads only each stream's first chunk, and samples the
server's RSS after every batch; then closes everything and checks that every
stream ended. Run: `.venv/bin/python benchmarks/stream_memory.py [--quick] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _report import table, write_json
from _server_proc import (
    ServerProcess,
    jarvis_argv,
    own_cpu_seconds,
    raise_fd_limit,
    rss_kib,
    running,
)
from _sse_client import request_body, run

WARMUP_STREAMS = 200


@dataclass
class Sample:
    """The server's RSS with `streams` streams open."""

    streams: int
    active: int
    rss_kib: int
    client_rss_kib: int
    elapsed_s: float


@dataclass
class Held:
    """Open streams whose first chunk arrived, held until `release` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def hold_stream(
    session: aiohttp.ClientSession, url: str, i: int, first: asyncio.Event, held: Held
) -> None:
    """Open one stream, read up to its first chunk, then keep it open (unread) until released."""
    try:
        async with session.post(
            f"{url}/v1/chat/completions",
            data=request_body(f"Long essay number {i}"),
            headers={"content-type": "application/json", "x-session-id": f"mem-{i}"},
        ) as response:
            if response.status != 200:
                held.failures.append(f"stream {i}: status {response.status}")
                return
            line = await response.content.readline()
            if not line.startswith(b"data: "):
                held.failures.append(f"stream {i}: first line {line[:60]!r}")
                return
            first.set()
            await held.release.wait()
    except (aiohttp.ClientError, OSError) as exc:
        held.failures.append(f"stream {i}: {type(exc).__name__}: {exc}")
    finally:
        first.set()


async def active_streams(session: aiohttp.ClientSession, url: str) -> int:
    async with asyncio.timeout(10), session.get(f"{url}/healthz") as response:
        return int((await response.json())["active_streams"])


async def wait_until_idle(session: aiohttp.ClientSession, url: str, deadline_s: float) -> int:
    """Poll until the server has no live stream (bounded); return what is left."""
    left = await active_streams(session, url)
    end = time.monotonic() + deadline_s
    while left and time.monotonic() < end:
        await asyncio.sleep(0.2)
        left = await active_streams(session, url)
    return left


async def open_batch(
    session: aiohttp.ClientSession, url: str, first: int, count: int, held: Held, deadline_s: float
) -> None:
    events = [asyncio.Event() for _ in range(count)]
    for i, event in enumerate(events):
        held.tasks.append(asyncio.create_task(hold_stream(session, url, first + i, event, held)))
    async with asyncio.timeout(deadline_s):
        await asyncio.gather(*(e.wait() for e in events))


async def close_all(held: Held) -> None:
    held.release.set()
    for task in held.tasks:
        task.cancel()  # a held stream is mid-body: leaving it closes the connection
    await asyncio.wait(held.tasks, timeout=30)
    held.tasks.clear()


async def benchmark(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    url = server.url
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with asyncio.timeout(args.deadline):
            # Warm-up: lazy imports, first-request allocations, allocator arenas.
            warm = Held()
            await open_batch(session, url, 1_000_000, WARMUP_STREAMS, warm, 60)
            await close_all(warm)
            await wait_until_idle(session, url, 30)
            await asyncio.sleep(1)  # let the server settle its freed memory

            held = Held()
            started = time.monotonic()
            cpu_server, cpu_client = server.cpu_seconds(), own_cpu_seconds()
            samples = [Sample(0, 0, server.rss_kib(), rss_kib_self(), 0.0)]
            opened = 0
            while opened < args.streams:
                count = min(args.batch, args.streams - opened)
                await open_batch(session, url, opened, count, held, 60)
                opened += count
                active = await active_streams(session, url)
                samples.append(
                    Sample(
                        opened, active, server.rss_kib(), rss_kib_self(), time.monotonic() - started
                    )
                )
                print(
                    f"  {opened:5d} open ({active} active on the server): server RSS "
                    f"{samples[-1].rss_kib / 1024:7.1f} MiB",
                    flush=True,
                )
            ramp_s = time.monotonic() - started
            ramp_cpu_server = server.cpu_seconds() - cpu_server
            ramp_cpu_client = own_cpu_seconds() - cpu_client

            # Hold them a while: tokens keep flowing, so per-stream buffers show up too.
            cpu_server, cpu_client = server.cpu_seconds(), own_cpu_seconds()
            await asyncio.sleep(args.hold)
            held_rss = server.rss_kib()
            hold_server_share = (server.cpu_seconds() - cpu_server) / args.hold
            hold_client_share = (own_cpu_seconds() - cpu_client) / args.hold

            await close_all(held)
            left_open = await wait_until_idle(session, url, 30)
            await asyncio.sleep(1)
            after_close_rss = server.rss_kib()

    base, top = samples[0], samples[-1]
    per_stream_kib = (top.rss_kib - base.rss_kib) / top.streams
    # The first batch partly reuses memory the warm-up freed; the slope after it is the
    # marginal cost of one more stream.
    later = samples[1:]
    marginal = slope([s.streams for s in later], [s.rss_kib for s in later])
    return {
        "settings": {
            "streams": args.streams,
            "batch": args.batch,
            "hold_s": args.hold,
            "jarvis_flags": JARVIS_FLAGS,
        },
        "rss_before_kib": base.rss_kib,
        "rss_open_kib": top.rss_kib,
        "rss_per_stream_kib": per_stream_kib,
        "rss_marginal_per_stream_kib": marginal,
        "rss_after_hold_kib": held_rss,
        "rss_per_stream_after_hold_kib": (held_rss - base.rss_kib) / top.streams,
        "rss_after_close_kib": after_close_rss,
        "client_rss_per_stream_kib": (top.client_rss_kib - base.client_rss_kib) / top.streams,
        "active_streams_open": top.active,
        "streams_left_open_after_close": left_open,
        "ramp_s": ramp_s,
        "ramp_server_cpu_s": ramp_cpu_server,
        "ramp_client_cpu_s": ramp_cpu_client,
        "hold_server_cpu_share": hold_server_share,
        "hold_client_cpu_share": hold_client_share,
        "samples": [s.__dict__ for s in samples],
        "failures": len(held.failures) + len(warm.failures),
        "failure_examples": (warm.failures + held.failures)[:5],
    }


def rss_kib_self() -> int:
    return rss_kib(os.getpid())


def slope(xs: list[int], ys: list[int]) -> float:
    """Least-squares slope of ys over xs (NaN with fewer than two points)."""
    if len(xs) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


JARVIS_FLAGS = ["--token-rate", "1"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=5000, help="streams held open at once")
    parser.add_argument("--batch", type=int, default=500, help="streams opened at a time")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them all open")
    parser.add_argument("--deadline", type=float, default=170.0, help="bound on the run (s)")
    parser.add_argument("--quick", action="store_true", help="1,000 streams (< 30 s)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.batch, args.hold = 1000, 250, 2.0
    limit = raise_fd_limit(args.streams * 2 + 1024)  # inherited by the server subprocess
    if limit < args.streams + 256:
        print(f"open-file limit {limit} is too low for {args.streams} streams", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        argv = jarvis_argv(workdir / "jarvis.log", *JARVIS_FLAGS)
        with running(("jarvis", argv), workdir=workdir) as (server,):
            print(
                f"stream_memory: {args.streams} streams in distinct sessions, {args.batch} at a "
                f"time, against jarvis {' '.join(JARVIS_FLAGS)}; jarvis pid {server.pid}",
                flush=True,
            )
            results = run(lambda: benchmark(server, args))

    print()
    print(
        table(
            ["open streams", "server RSS MiB", "per stream KiB", "server active"],
            [
                [
                    s["streams"],
                    s["rss_kib"] / 1024,
                    (s["rss_kib"] - results["rss_before_kib"]) / s["streams"]
                    if s["streams"]
                    else "",
                    s["active"],
                ]
                for s in results["samples"]
            ],
        )
    )
    print(
        f"\nRSS per open stream at {args.streams}: {results['rss_per_stream_kib']:.1f} KiB "
        f"(marginal, fit after the first batch: {results['rss_marginal_per_stream_kib']:.1f} KiB) "
        f"({results['rss_per_stream_after_hold_kib']:.1f} KiB after holding {args.hold:g}s); "
        f"RSS after closing all: {results['rss_after_close_kib'] / 1024:.1f} MiB "
        f"(before: {results['rss_before_kib'] / 1024:.1f} MiB); "
        f"left open after close: {results['streams_left_open_after_close']}"
    )
    print(
        f"ramp {results['ramp_s']:.1f}s: server {results['ramp_server_cpu_s']:.1f} CPU-s, "
        f"client {results['ramp_client_cpu_s']:.1f} CPU-s; while holding: server "
        f"{results['hold_server_cpu_share']:.0%} of a core, client "
        f"{results['hold_client_cpu_share']:.0%}; client RSS per stream "
        f"{results['client_rss_per_stream_kib']:.1f} KiB"
    )
    write_json(args.json, "stream_memory", results)
    for failure in results["failure_examples"]:
        print(f"  failure: {failure}", file=sys.stderr)
    return 1 if results["failures"] or results["streams_left_open_after_close"] else 0


if __name__ == "__main__":
    sys.exit(main())
