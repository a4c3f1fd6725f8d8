"""Server CPU per 100k streamed tokens: `jarvis serve --flush-ms 0` against a bare Starlette stream.

Both servers run side by side and take turns (A B B A ...) under the same
aiohttp client, prompts and token text, so machine noise hits both. Target:
jarvis / bare <= 1.25 token by token (`--flush-ms 0`, one chunk per token on both
sides). `--flush-ms 75` measures the default mode, where jarvis batches tokens
and the bare server still writes one chunk per token (a report, not a target).
Run: `.venv/bin/python benchmarks/server_cpu.py [--quick] [--flush-ms MS] [--json PATH]`.
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

from _report import median, table, write_json
from _server_proc import (
    ServerProcess,
    bare_argv,
    jarvis_argv,
    machine_busy_seconds,
    own_cpu_seconds,
    running,
)
from _sse_client import run
from _throughput import stream_all

from jarvis.synthetic import expected_text, expected_tokens

TARGET_RATIO = 1.25
JARVIS = "jarvis"
BARE = "bare-starlette"


@dataclass
class Measurement:
    """One workload against one server."""

    server: str
    tokens: int
    streams: int
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float
    server_writes: int
    other_cpu_s: float
    failures: list[str] = field(default_factory=list)

    @property
    def server_cpu_per_100k(self) -> float:
        return self.server_cpu_s / self.tokens * 100_000

    @property
    def client_cpu_per_100k(self) -> float:
        return self.client_cpu_s / self.tokens * 100_000

    @property
    def writes_per_token(self) -> float:
        return self.server_writes / self.tokens


async def measure(
    server: ServerProcess,
    prompts: list[str],
    expected: dict[str, str],
    concurrency: int,
    deadline_s: float,
) -> Measurement:
    """Run the workload once and take the server's and our own CPU around it."""
    writes_before, machine_before = server.write_syscalls(), machine_busy_seconds()
    server_before, client_before = server.cpu_seconds(), own_cpu_seconds()
    jobs = [(None, p) for p in prompts]
    started = time.monotonic()
    tokens, failures = await stream_all(
        server.url, jobs, expected.__getitem__, concurrency, deadline_s
    )
    wall = time.monotonic() - started
    server_cpu = server.cpu_seconds() - server_before
    client_cpu = own_cpu_seconds() - client_before
    writes = server.write_syscalls() - writes_before
    other = max(0.0, machine_busy_seconds() - machine_before - server_cpu - client_cpu)
    return Measurement(
        server.name, tokens, len(prompts), wall, server_cpu, client_cpu, writes, other, failures
    )


async def benchmark(
    servers: dict[str, ServerProcess], args: argparse.Namespace
) -> list[Measurement]:
    async with asyncio.timeout(args.budget):
        return await _rounds(servers, args)


async def _rounds(servers: dict[str, ServerProcess], args: argparse.Namespace) -> list[Measurement]:
    prompts = [f"Long essay number {i}" for i in range(args.streams)]
    expected = {p: expected_text(p) for p in prompts}
    warmup = prompts[: args.concurrency]
    for server in servers.values():  # imports, allocator arenas, first connections
        await measure(server, warmup, expected, args.concurrency, args.deadline)

    measurements: list[Measurement] = []
    for round_no in range(args.rounds):
        # A B, then B A: a slow drift of the machine's load falls on both equally.
        order = [JARVIS, BARE] if round_no % 2 == 0 else [BARE, JARVIS]
        for name in order:
            m = await measure(servers[name], prompts, expected, args.concurrency, args.deadline)
            measurements.append(m)
            print(
                f"  round {round_no + 1}/{args.rounds} {name:15s} "
                f"{m.tokens} tokens in {m.wall_s:5.2f}s  server {m.server_cpu_s:5.2f} CPU-s  "
                f"client {m.client_cpu_s:5.2f} CPU-s  failures {len(m.failures)}",
                flush=True,
            )
    return measurements


def summarise(measurements: list[Measurement], args: argparse.Namespace) -> dict[str, Any]:
    by_server: dict[str, list[Measurement]] = {JARVIS: [], BARE: []}
    for m in measurements:
        by_server[m.server].append(m)
    summary: dict[str, Any] = {}
    for name, ms in by_server.items():
        summary[name] = {
            "server_cpu_s_per_100k_tokens": median([m.server_cpu_per_100k for m in ms]),
            "server_cpu_s_per_100k_tokens_all": [round(m.server_cpu_per_100k, 3) for m in ms],
            "client_cpu_s_per_100k_tokens": median([m.client_cpu_per_100k for m in ms]),
            "tokens_per_round": ms[0].tokens if ms else 0,
            "tokens_per_s": median([m.tokens / m.wall_s for m in ms]),
            "client_cpu_share_of_wall": median([m.client_cpu_s / m.wall_s for m in ms]),
            "server_cpu_share_of_wall": median([m.server_cpu_s / m.wall_s for m in ms]),
            # About 1 means one send per token: the server did not get to coalesce
            # writes because the client was slow, so per-token costs compare fairly.
            "server_write_syscalls_per_token": median([m.writes_per_token for m in ms]),
            # CPU other processes on the machine used meanwhile, in cores: the noise.
            "other_processes_cpu_share_of_wall": median([m.other_cpu_s / m.wall_s for m in ms]),
            "failures": sum(len(m.failures) for m in ms),
        }
    pair_ratios = [
        j.server_cpu_per_100k / b.server_cpu_per_100k
        for j, b in zip(by_server[JARVIS], by_server[BARE], strict=True)
    ]
    ratio = (
        summary[JARVIS]["server_cpu_s_per_100k_tokens"]
        / summary[BARE]["server_cpu_s_per_100k_tokens"]
    )
    return {
        "settings": {
            "rounds": args.rounds,
            "streams_per_round": args.streams,
            "tokens_per_stream": len(expected_tokens("Long essay number 0")),
            "concurrency": args.concurrency,
            "jarvis_flags": jarvis_flags(args.flush_ms),
        },
        "servers": summary,
        "ratio": ratio,
        "round_ratios": [round(r, 3) for r in pair_ratios],
        "target_ratio": TARGET_RATIO,
        "target_met": ratio <= TARGET_RATIO if args.flush_ms == 0 else None,
    }


def jarvis_flags(flush_ms: float) -> list[str]:
    return ["--flush-ms", f"{flush_ms:g}", "--token-rate", "0", "--first-token-ms", "0"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="measurements per server")
    parser.add_argument("--streams", type=int, default=256, help="400-token streams per round")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent client streams")
    parser.add_argument("--deadline", type=float, default=60.0, help="bound on one round (s)")
    parser.add_argument("--budget", type=float, default=170.0, help="bound on the whole run (s)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 64 streams (< 30 s)")
    parser.add_argument(
        "--flush-ms", type=float, default=0.0, help="jarvis's debounce (0: the target's mode)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.streams = 2, 64

    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        specs = [
            (JARVIS, jarvis_argv(workdir / "jarvis.log", *jarvis_flags(args.flush_ms))),
            (BARE, bare_argv()),
        ]
        with running(*specs, workdir=workdir) as started:
            servers = {s.name: s for s in started}
            print(
                f"server_cpu: {args.rounds} round(s) x {args.streams} streams x 400 tokens, "
                f"{args.concurrency} concurrent aiohttp streams; jarvis pid {servers[JARVIS].pid}, "
                f"bare pid {servers[BARE].pid}",
                flush=True,
            )
            measurements = run(lambda: benchmark(servers, args))

    results = summarise(measurements, args)
    rows = [
        [
            name,
            s["tokens_per_round"],
            s["server_cpu_s_per_100k_tokens"],
            s["client_cpu_s_per_100k_tokens"],
            s["tokens_per_s"],
            s["server_cpu_share_of_wall"],
            s["client_cpu_share_of_wall"],
            s["server_write_syscalls_per_token"],
            s["other_processes_cpu_share_of_wall"],
            s["failures"],
        ]
        for name, s in results["servers"].items()
    ]
    print()
    print(
        table(
            [
                "server",
                "tokens/round",
                "server CPU-s/100k tok",
                "client CPU-s/100k tok",
                "tokens/s",
                "server CPU/wall",
                "client CPU/wall",
                "server writes/token",
                "others' CPU/wall",
                "failures",
            ],
            rows,
        )
    )
    met = results["target_met"]
    verdict = (
        "report only (target is at --flush-ms 0)" if met is None else "met" if met else "MISSED"
    )
    print(
        f"\nratio jarvis --flush-ms {args.flush_ms:g} / bare (medians) = {results['ratio']:.2f}  "
        f"(per round: {', '.join(f'{r:.2f}' for r in results['round_ratios'])})  "
        f"target <= {TARGET_RATIO}: {verdict}"
    )
    write_json(args.json, "server_cpu", results)
    failures = sum(s["failures"] for s in results["servers"].values())
    if failures:
        for m in measurements:
            for failure in m.failures[:3]:
                print(f"  {m.server}: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
