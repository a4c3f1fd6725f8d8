"""Server CPU per 100k tokens with resume on against off: the same server, side by side, in pairs.

Two `jarvis serve --flush-ms 0 --token-rate 0 --first-token-ms 0` processes of the same
code, one with `--resume-ttl 60` (every event numbered and kept in the stream's journal),
run the same workload in turns: pairs of runs, on then off, then off then on (A B B A
...), so that a drift of the shared machine's load falls on both sides. Each pair gives
one ratio, on / off of the server's CPU seconds per 100k tokens (from /proc: every
thread); the figure is the median of those ratios with their range and quartiles,
never one run against another. Token by token (`--flush-ms 0`) is where resume's
per-event work weighs most: an id and a journal append per token.

Run: `.venv/bin/python benchmarks/resume_cpu.py [--pairs N] [--streams N] [--flush-ms MS] [--quick]
[--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from _report import median, percentile, table, write_json
from _server_proc import ServerProcess, jarvis_argv, running
from _sse_client import run
from server_cpu import Measurement, measure

from jarvis.synthetic import expected_text

ON = "resume-on"
OFF = "resume-off"
#: Token by token, the model unthrottled: the server's per-event cost is all there is.
FLAGS = ("--flush-ms", "0", "--token-rate", "0", "--first-token-ms", "0")
RESUME = ("--resume-ttl", "60")


async def pairs(
    servers: dict[str, ServerProcess], args: argparse.Namespace, rss: dict[str, int]
) -> list[tuple[Measurement, Measurement]]:
    """Warm both up, then `args.pairs` pairs of runs: (on, off) measurements each; `rss`
    gets each server's largest RSS after a run (KiB): resume on keeps every event for
    --resume-ttl, and that is what it costs beside CPU."""
    prompts = [f"Long essay number {i}" for i in range(args.streams)]
    expected = {p: expected_text(p) for p in prompts}
    for server in servers.values():  # imports, allocator arenas, first connections
        await measure(
            server, prompts[: args.concurrency], expected, args.concurrency, args.deadline
        )
    done: list[tuple[Measurement, Measurement]] = []
    async with asyncio.timeout(args.budget):
        for n in range(args.pairs):
            order = (ON, OFF) if n % 2 == 0 else (OFF, ON)
            got: dict[str, Measurement] = {}
            for name in order:
                got[name] = await measure(
                    servers[name], prompts, expected, args.concurrency, args.deadline
                )
                rss[name] = max(rss.get(name, 0), servers[name].rss_kib())
            on, off = got[ON], got[OFF]
            done.append((on, off))
            print(
                f"  pair {n + 1:2d}/{args.pairs} ({order[0]} first)  on "
                f"{on.server_cpu_per_100k:.3f}  off {off.server_cpu_per_100k:.3f} "
                "CPU-s/100k tok  ratio "
                f"{on.server_cpu_per_100k / off.server_cpu_per_100k:.3f}  others' CPU "
                f"{(on.other_cpu_s + off.other_cpu_s) / (on.wall_s + off.wall_s):.2f} cores"
                f"  failures {len(on.failures) + len(off.failures)}",
                flush=True,
            )
    return done


def summarise(
    done: list[tuple[Measurement, Measurement]], args: argparse.Namespace, rss: dict[str, int]
) -> dict[str, Any]:
    ratios = [on.server_cpu_per_100k / off.server_cpu_per_100k for on, off in done]
    side = {name: [m for pair in done for m in pair if m.server == name] for name in (ON, OFF)}
    return {
        "settings": {
            "pairs": args.pairs,
            "streams_per_run": args.streams,
            "tokens_per_run": done[0][0].tokens if done else 0,
            "concurrency": args.concurrency,
            "flags": list(FLAGS),
            "resume_flags": list(RESUME),
        },
        "pair_ratios": [round(r, 4) for r in ratios],
        "ratio_median": median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_p25": percentile(ratios, 25),
        "ratio_p75": percentile(ratios, 75),
        "servers": {
            name: {
                "server_cpu_s_per_100k_tokens": median([m.server_cpu_per_100k for m in ms]),
                "server_cpu_s_per_100k_tokens_all": [round(m.server_cpu_per_100k, 3) for m in ms],
                "tokens_per_s": median([m.tokens / m.wall_s for m in ms]),
                "server_cpu_share_of_wall": median([m.server_cpu_s / m.wall_s for m in ms]),
                "other_processes_cpu_share_of_wall": median([m.other_cpu_s / m.wall_s for m in ms]),
                "failures": sum(len(m.failures) for m in ms),
                "rss_kib_max": rss.get(name, 0),
            }
            for name, ms in side.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16, help="on/off pairs of runs")
    parser.add_argument("--streams", type=int, default=512, help="400-token streams per run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent client streams")
    parser.add_argument("--deadline", type=float, default=90.0, help="bound on one run (s)")
    parser.add_argument("--budget", type=float, default=420.0, help="bound on all pairs (s)")
    parser.add_argument("--quick", action="store_true", help="4 pairs of 64 streams (< 1 min)")
    parser.add_argument(
        "--flush-ms", default="0", help="the servers' --flush-ms (0: token by token; 75: default)"
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.streams = 4, 64

    flags = ("--flush-ms", args.flush_ms, *FLAGS[2:])
    with tempfile.TemporaryDirectory(prefix="jarvis-resume-cpu-") as tmp:
        workdir = Path(tmp)
        specs = [
            (ON, jarvis_argv(workdir / "on.log", *flags, *RESUME)),
            (OFF, jarvis_argv(workdir / "off.log", *flags)),
        ]
        with running(*specs, workdir=workdir) as started:
            servers = {s.name: s for s in started}
            print(
                f"resume_cpu: {args.pairs} pairs x {args.streams} streams x 400 tokens a run, "
                f"{args.concurrency} concurrent streams, --flush-ms {args.flush_ms}; "
                f"on pid {servers[ON].pid}, "
                f"off pid {servers[OFF].pid}",
                flush=True,
            )
            rss: dict[str, int] = {}
            done = run(lambda: pairs(servers, args, rss))

    results = summarise(done, args, rss)
    rows = [
        [name, s["server_cpu_s_per_100k_tokens"], s["tokens_per_s"],
         s["server_cpu_share_of_wall"], s["other_processes_cpu_share_of_wall"],
         s["rss_kib_max"] // 1024, s["failures"]]
        for name, s in results["servers"].items()
    ]  # fmt: skip
    print()
    print(table(["server", "CPU-s/100k tok (median)", "tokens/s", "server CPU/wall",
                 "others' CPU/wall", "max RSS MiB", "failures"], rows))  # fmt: skip
    print(
        f"\nresume on / off, per pair: median {results['ratio_median']:.3f}, "
        f"quartiles {results['ratio_p25']:.3f}-{results['ratio_p75']:.3f}, "
        f"range {results['ratio_min']:.3f}-{results['ratio_max']:.3f} "
        f"({', '.join(f'{r:.3f}' for r in results['pair_ratios'])})"
    )
    write_json(args.json, "resume_cpu", results)
    failures = [f for pair in done for m in pair for f in m.failures]
    for failure in failures[:5]:
        print(f"  failure: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
