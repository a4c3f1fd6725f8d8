"""Tokens per second from `jarvis serve --workers 1` against `--workers 2`, on a shared registry.

Both fleets run side by side on one private Redis (`--registry`, databases 0
and 1), token by token (`--flush-ms 0 --token-rate 0 --first-token-ms 0`),
and take turns (A B B A ...) under the same aiohttp client: the same prompts,
a session per stream, every stream's text checked. On 2 cores the client
competes with the workers, so its CPU is in the table; so are each worker's
share (how evenly the kernel spread the connections), Redis's CPU and calls
per stream, and what other processes took (the noise). A report, no target.
Run: `.venv/bin/python benchmarks/fleet_throughput.py [--quick] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _redis_proc import RedisServer, running_redis
from _report import median, table, write_json
from _server_proc import (
    ServerProcess,
    jarvis_argv,
    machine_busy_seconds,
    own_cpu_seconds,
    running,
)
from _sse_client import run
from _throughput import stream_all

from jarvis.synthetic import expected_text, expected_tokens

FLEETS = {"1 worker": 1, "2 workers": 2}
FLAGS = ["--flush-ms", "0", "--token-rate", "0", "--first-token-ms", "0"]


@dataclass
class Measurement:
    """One round of the workload against one fleet."""

    fleet: str
    tokens: int
    streams: int
    wall_s: float
    server_cpu_s: float
    #: CPU of each worker process (the fleet's busiest first); one entry for `--workers 1`.
    worker_cpu_s: list[float]
    client_cpu_s: float
    redis_cpu_s: float
    other_cpu_s: float
    redis_calls: dict[str, int]
    failures: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


def _is_worker(pid: int) -> bool:
    """A fleet worker (spawned by multiprocessing), not its resource tracker."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"spawn_main" in cmdline.read()
    except OSError:
        return False


def _workers(before: dict[int, float], after: dict[int, float], parent: int) -> list[float]:
    """CPU per worker over a round: the fleet's workers, or the one process itself."""
    pids = [p for p in after if p != parent and _is_worker(p)] or [parent]
    return sorted((after[p] - before.get(p, 0.0) for p in pids), reverse=True)


async def measure(
    name: str,
    server: ServerProcess,
    redis: RedisServer,
    prompts: list[tuple[str, str]],
    args: argparse.Namespace,
) -> Measurement:
    """Run the workload once against one fleet; take every process's CPU around it."""
    calls_before = redis.command_calls()
    tree_before, redis_before = server.tree_cpu_seconds(), redis.cpu_seconds()
    client_before, machine_before = own_cpu_seconds(), machine_busy_seconds()
    started = time.monotonic()
    tokens, failures = await stream_all(
        server.url, prompts, expected_text, args.concurrency, args.deadline
    )
    wall = time.monotonic() - started
    client_cpu = own_cpu_seconds() - client_before
    tree_after, redis_cpu = server.tree_cpu_seconds(), redis.cpu_seconds() - redis_before
    machine = machine_busy_seconds() - machine_before
    await asyncio.sleep(0.2)  # the releases of the last streams reach Redis
    calls_after = redis.command_calls()
    server_cpu = sum(tree_after.values()) - sum(tree_before.get(p, 0.0) for p in tree_after)
    calls = {
        cmd: n - calls_before.get(cmd, 0)
        for cmd, n in calls_after.items()
        if n - calls_before.get(cmd, 0) and cmd != "info"
    }
    return Measurement(
        fleet=name,
        tokens=tokens,
        streams=len(prompts),
        wall_s=wall,
        server_cpu_s=server_cpu,
        worker_cpu_s=_workers(tree_before, tree_after, server.pid),
        client_cpu_s=client_cpu,
        redis_cpu_s=redis_cpu,
        other_cpu_s=max(0.0, machine - server_cpu - client_cpu - redis_cpu),
        redis_calls=calls,
        failures=failures,
    )


async def benchmark(
    servers: dict[str, ServerProcess], redis: RedisServer, args: argparse.Namespace
) -> list[Measurement]:
    async with asyncio.timeout(args.budget):
        return await _rounds(servers, redis, args)


async def _rounds(
    servers: dict[str, ServerProcess], redis: RedisServer, args: argparse.Namespace
) -> list[Measurement]:
    def prompts(tag: str) -> list[tuple[str, str]]:
        return [(f"{tag}-{i}", f"Long essay number {i}") for i in range(args.streams)]

    for name, server in servers.items():  # imports, arenas, connections, script loads
        await measure(name, server, redis, prompts(f"warmup-{name}")[: args.concurrency * 2], args)

    measurements: list[Measurement] = []
    names = list(servers)
    for round_no in range(args.rounds):
        # A B, then B A: a slow drift of the machine's load falls on both equally.
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            tag = f"{name.replace(' ', '')}-r{round_no}"
            m = await measure(name, servers[name], redis, prompts(tag), args)
            measurements.append(m)
            workers = " + ".join(f"{c:.2f}" for c in m.worker_cpu_s)
            print(
                f"  round {round_no + 1}/{args.rounds} {name:9s} {m.tokens} tokens in "
                f"{m.wall_s:5.2f}s = {m.tokens_per_s:7.0f} tok/s  workers {workers} CPU-s  "
                f"client {m.client_cpu_s:5.2f}  redis {m.redis_cpu_s:4.2f}  "
                f"others {m.other_cpu_s:4.2f}  failures {len(m.failures)}",
                flush=True,
            )
    return measurements


def summarise(measurements: list[Measurement], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in FLEETS:
        ms = [m for m in measurements if m.fleet == name]
        streams = sum(m.streams for m in ms)
        calls: dict[str, int] = {}
        for m in ms:
            for cmd, n in m.redis_calls.items():
                calls[cmd] = calls.get(cmd, 0) + n
        summary[name] = {
            "tokens_per_s": median([m.tokens_per_s for m in ms]),
            "tokens_per_s_all": [round(m.tokens_per_s) for m in ms],
            "tokens_per_round": ms[0].tokens if ms else 0,
            "server_cpu_s_per_100k_tokens": median(
                [m.server_cpu_s / m.tokens * 100_000 for m in ms if m.tokens]
            ),
            "server_cpu_share_of_wall": median([m.server_cpu_s / m.wall_s for m in ms]),
            # Each worker's CPU over the round, in cores, busiest first: the balance.
            "worker_cpu_share_of_wall": [
                round(median([m.worker_cpu_s[i] / m.wall_s for m in ms]), 3)
                for i in range(len(ms[0].worker_cpu_s) if ms else 0)
            ],
            "client_cpu_share_of_wall": median([m.client_cpu_s / m.wall_s for m in ms]),
            "client_cpu_s_per_100k_tokens": median(
                [m.client_cpu_s / m.tokens * 100_000 for m in ms if m.tokens]
            ),
            "redis_cpu_share_of_wall": median([m.redis_cpu_s / m.wall_s for m in ms]),
            # Commands Redis ran per stream (those inside scripts included), whole run.
            "redis_calls_per_stream": {c: round(n / streams, 3) for c, n in sorted(calls.items())},
            # CPU other processes on the machine used meanwhile, in cores: the noise.
            "other_processes_cpu_share_of_wall": median([m.other_cpu_s / m.wall_s for m in ms]),
            "failures": sum(len(m.failures) for m in ms),
        }
    one, two = summary["1 worker"], summary["2 workers"]
    round_ratios = [
        b.tokens_per_s / a.tokens_per_s
        for a, b in zip(
            [m for m in measurements if m.fleet == "1 worker"],
            [m for m in measurements if m.fleet == "2 workers"],
            strict=True,
        )
    ]
    return {
        "settings": {
            "rounds": args.rounds,
            "streams_per_round": args.streams,
            "tokens_per_stream": len(expected_tokens("Long essay number 0")),
            "concurrency": args.concurrency,
            "client_processes": 1,
            "jarvis_flags": [*FLAGS, "--registry", "redis://127.0.0.1:PORT/DB", "--workers", "N"],
        },
        "fleets": summary,
        "ratio_2_over_1_workers": two["tokens_per_s"] / one["tokens_per_s"],
        "round_ratios": [round(r, 3) for r in round_ratios],
    }


def report(results: dict[str, Any]) -> None:
    rows = [
        [
            name,
            s["tokens_per_s"],
            s["server_cpu_share_of_wall"],
            " + ".join(f"{w:.2f}" for w in s["worker_cpu_share_of_wall"]),
            s["server_cpu_s_per_100k_tokens"],
            s["client_cpu_share_of_wall"],
            s["redis_cpu_share_of_wall"],
            s["other_processes_cpu_share_of_wall"],
            s["failures"],
        ]
        for name, s in results["fleets"].items()
    ]
    print()
    print(
        table(
            [
                "fleet",
                "tokens/s",
                "server CPU/wall",
                "per worker",
                "server CPU-s/100k tok",
                "client CPU/wall",
                "redis CPU/wall",
                "others' CPU/wall",
                "failures",
            ],
            rows,
        )
    )
    print(
        f"\n2 workers / 1 worker tokens/s (medians) = {results['ratio_2_over_1_workers']:.2f}  "
        f"(per round: {', '.join(f'{r:.2f}' for r in results['round_ratios'])})"
    )
    for name, s in results["fleets"].items():
        calls = ", ".join(f"{c} {n:g}" for c, n in s["redis_calls_per_stream"].items())
        print(f"redis calls per stream, {name}: {calls}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="measurements per fleet")
    parser.add_argument("--streams", type=int, default=512, help="400-token streams per round")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent client streams")
    parser.add_argument("--deadline", type=float, default=60.0, help="bound on one round (s)")
    parser.add_argument("--budget", type=float, default=170.0, help="bound on the whole run (s)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 64 streams (< 30 s)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.streams = 2, 64

    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        with running_redis(workdir) as redis:
            specs = []
            for db, (name, workers) in enumerate(FLEETS.items()):
                options = [*FLAGS, "--registry", redis.url(db), "--workers", str(workers)]
                log = workdir / f"fleet{workers}.log"
                specs.append((name, jarvis_argv(log, *options)))
            with running(*specs, workdir=workdir) as started:
                servers = {s.name: s for s in started}
                time.sleep(1.0)  # with --workers 2, /healthz answered before both were up
                print(
                    f"fleet_throughput: {args.rounds} round(s) x {args.streams} streams x 400 "
                    f"tokens, {args.concurrency} concurrent aiohttp streams (one client "
                    f"process); pids {', '.join(str(s.pid) for s in started)}, redis {redis.pid}",
                    flush=True,
                )
                measurements = run(lambda: benchmark(servers, redis, args))

    results = summarise(measurements, args)
    report(results)
    write_json(args.json, "fleet_throughput", results)
    failures = [f for m in measurements for f in m.failures]
    for failure in failures[:5]:
        print(f"  failure: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
