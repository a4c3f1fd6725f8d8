"""Redis operations per stream of a `jarvis serve --workers 2 --registry` fleet, at T=50 and T=500.

Each phase streams S sessions of T tokens, a quarter of them superseded: B is
sent in the session as soon as A's first token arrives, so A is mid-stream.
Redis's `INFO commandstats` (reset before each phase) gives the totals, which
count the commands that Lua scripts run too; `MONITOR` tells the commands a
worker sent (round trips) from those its scripts ran, names each EVALSHA's
script (claim, release, renew) and, from the keys, the session each belongs
to. Target: <= 10 operations per stream and none per token: the same counts at
T=50 and T=500. Lease renewals (the heartbeat, a third of a lease apart) are
counted apart: they follow a stream's duration, not its tokens.
Run: `.venv/bin/python benchmarks/fleet_redis_ops.py [--quick] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _redis_proc import Monitor, Op, RedisServer, running_redis, script_sha
from _report import table, write_json
from _server_proc import ServerProcess, jarvis_argv, running
from _sse_client import StreamResult, new_session, run, stream_chat

from jarvis._redis_registry import _CLAIM, _RELEASE, _RENEW
from jarvis.logfmt import parse_logfmt
from jarvis.synthetic import expected_text

TARGET_OPS_PER_STREAM = 10
SUPERSEDE_EVERY = 4
SCRIPTS = {
    script_sha(_CLAIM): "claim",
    script_sha(_RELEASE): "release",
    script_sha(_RENEW): "renew",
}
PREFIX = "jarvis:"
#: What a MONITOR line becomes in the tables: the command, an EVALSHA by its script.
RENEW = "evalsha renew"


@dataclass
class Phase:
    """One phase: S sessions of T tokens, some superseded, and what Redis ran meanwhile."""

    tokens: int
    sessions: int
    streams: int = 0
    stream_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    end_reasons: Counter[str] = field(default_factory=Counter)
    commandstats: dict[str, int] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    monitor_error: str | None = None


def op_name(op: Op) -> str:
    if op.command == "evalsha":
        return f"evalsha {SCRIPTS.get(op.arg(0), op.arg(0)[:8])}"
    return op.command


def op_session(op: Op) -> str | None:
    """The session an operation is about: from its key, or a signal's text; None for
    connection setup (HELLO, SELECT, SCRIPT LOAD ...)."""
    key = op.arg(2) if op.command == "evalsha" else op.arg(0)  # evalsha SHA NUMKEYS KEY
    if op.command == "publish":
        parts = op.arg(1).split(" ")  # "cancel|fence|done SESSION GEN"
        return parts[1] if len(parts) > 1 else None
    for kind in ("gen:", "owner:"):
        if key.startswith(PREFIX + kind):
            return key.removeprefix(PREFIX + kind)
    return None


async def _session(
    http: Any, url: str, name: str, tokens: int, supersede: bool, phase: Phase
) -> None:
    """A in the session; if `supersede`, B in it as soon as A's first token arrived."""
    first = asyncio.Event()
    prompt_a, prompt_b = f"Long essay {name} A", f"Long essay {name} B"
    a = asyncio.create_task(
        stream_chat(http, url, prompt_a, session_id=name, max_tokens=tokens, first_content=first)
    )
    results: list[tuple[str, StreamResult, str]] = []
    if supersede:
        await first.wait()
        b = await stream_chat(http, url, prompt_b, session_id=name, max_tokens=tokens)
        results.append(("B", b, "completed"))
    results.append(("A", await a, "superseded" if supersede else "completed"))
    for label, result, want_end in results:
        phase.streams += 1
        phase.stream_seconds += result.ended_at - result.sent_at
        phase.end_reasons[f"{label} {result.end_reason}"] += 1
        if result.error or result.status != 200 or result.end_reason != want_end:
            phase.failures.append(
                f"{name} {label}: status={result.status} end={result.end_reason} "
                f"error={result.error}"
            )
        elif want_end == "completed" and result.text != expected_text(
            prompt_b if label == "B" else prompt_a, tokens
        ):
            phase.failures.append(f"{name} {label}: wrong text")


async def run_phase(
    server: ServerProcess, redis: RedisServer, tokens: int, args: argparse.Namespace
) -> Phase:
    phase = Phase(tokens=tokens, sessions=args.sessions)
    names = [f"t{tokens}-s{i}" for i in range(args.sessions)]
    redis.reset_stats()
    with Monitor(redis) as monitor:
        async with new_session(args.sessions * 2) as http, asyncio.timeout(args.deadline):
            await asyncio.gather(
                *(
                    _session(http, server.url, n, tokens, i % SUPERSEDE_EVERY == 0, phase)
                    for i, n in enumerate(names)
                )
            )
        await asyncio.sleep(args.settle)  # the last releases reach Redis
    phase.commandstats = {
        c: n for c, n in redis.command_calls().items() if c not in ("config|resetstat", "monitor")
    }
    phase.ops, phase.monitor_error = monitor.ops, monitor.error
    return phase


def analyse(phase: Phase) -> dict[str, Any]:
    """Per stream, by command: what the workers sent, what scripts ran, what Redis counted."""
    superseded = {f"t{phase.tokens}-s{i}" for i in range(0, phase.sessions, SUPERSEDE_EVERY)}
    plain_streams = phase.sessions - len(superseded)
    pair_streams = 2 * len(superseded)
    sent: dict[str, Counter[str]] = {
        "plain": Counter(),
        "superseded": Counter(),
        "setup": Counter(),
    }
    scripts: Counter[str] = Counter()
    for op in phase.ops:
        if op.from_lua:
            scripts[op.command] += 1
            continue
        session = op_session(op)
        if session is None:
            sent["setup"][op_name(op)] += 1
            continue
        sent["superseded" if session in superseded else "plain"][op_name(op)] += 1

    def per(counter: Counter[str], n: int, renew: bool) -> dict[str, float]:
        picked = {c: v for c, v in counter.items() if (c == RENEW) == renew}
        return {c: round(v / n, 3) for c, v in sorted(picked.items())} if n else {}

    renewals = sent["plain"][RENEW] + sent["superseded"][RENEW]
    plain = per(sent["plain"], plain_streams, renew=False)
    pair = per(sent["superseded"], pair_streams, renew=False)
    return {
        "tokens_per_stream": phase.tokens,
        "sessions": phase.sessions,
        "superseded_sessions": len(superseded),
        "streams": phase.streams,
        "mean_stream_s": phase.stream_seconds / phase.streams if phase.streams else 0.0,
        # Round trips a worker made, per stream, lease renewals apart.
        "sent_per_plain_stream": plain,
        "sent_per_plain_stream_total": round(sum(plain.values()), 3),
        # A superseded session: A, then B (publish cancel, wait, GET): per stream of the two.
        "sent_per_stream_in_superseded_sessions": pair,
        "sent_per_stream_in_superseded_sessions_total": round(sum(pair.values()), 3),
        "renewals_per_stream": round(renewals / phase.streams, 3) if phase.streams else 0.0,
        "renewals_per_stream_second": round(renewals / phase.stream_seconds, 3)
        if phase.stream_seconds
        else 0.0,
        "setup_ops": dict(sent["setup"]),
        # Commands the scripts ran inside Redis (no round trip), per stream.
        "in_scripts_per_stream": {
            c: round(v / phase.streams, 3) for c, v in sorted(scripts.items())
        },
        # INFO commandstats: everything Redis counted (script-run commands included), per stream.
        "commandstats_per_stream": {
            c: round(v / phase.streams, 3) for c, v in sorted(phase.commandstats.items())
        },
        "commandstats_total_per_stream": round(
            sum(v for c, v in phase.commandstats.items() if c != "info") / phase.streams, 3
        ),
        "monitor_ops": len(phase.ops),
        "monitor_error": phase.monitor_error,
        "end_reasons": dict(phase.end_reasons),
        "failures": len(phase.failures),
    }


async def benchmark(
    server: ServerProcess, redis: RedisServer, args: argparse.Namespace
) -> list[Phase]:
    async with new_session(8) as http:  # connections, script loads: outside the counts
        warm = [
            stream_chat(http, server.url, "What is 2+2?", session_id=f"warm-{i}") for i in range(8)
        ]
        await asyncio.gather(*warm)
    phases = []
    for tokens in args.tokens:
        phase = await run_phase(server, redis, tokens, args)
        phases.append(phase)
        print(
            f"  T={tokens}: {phase.streams} streams, {len(phase.ops)} Redis commands seen, "
            f"failures {len(phase.failures)}",
            flush=True,
        )
    return phases


def registry_trouble(log_files: list[Path]) -> dict[str, Any]:
    """The workers' registry_unavailable / registry_recovered / 503 lines: a Redis
    operation that failed marks the worker's registry down until it sees Redis again."""
    counts: Counter[str] = Counter()
    first: list[str] = []
    for path in log_files:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if "event=registry_" in line or "event=request_rejected" in line:
                    counts[f"{path.name} {parse_logfmt(line).get('event')}"] += 1
                    if len(first) < 3 and "registry_unavailable" in line:
                        first.append(line.strip())
    return {"events": dict(counts), "first_unavailable": first}


def summarise(phases: list[Phase], args: argparse.Namespace) -> dict[str, Any]:
    analysed = [analyse(p) for p in phases]
    worst = max(
        max(a["sent_per_plain_stream_total"], a["sent_per_stream_in_superseded_sessions_total"])
        for a in analysed
    )
    same = (
        len(
            {
                (
                    a["sent_per_plain_stream_total"],
                    a["sent_per_stream_in_superseded_sessions_total"],
                )
                for a in analysed
            }
        )
        == 1
    )
    return {
        "settings": {
            "sessions": args.sessions,
            "superseded": f"1 in {SUPERSEDE_EVERY} sessions, B at A's first token",
            "tokens": args.tokens,
            "jarvis_flags": flags(args, "redis://127.0.0.1:PORT/0"),
            "lease_ms": 5000,
        },
        "phases": analysed,
        "target_ops_per_stream": TARGET_OPS_PER_STREAM,
        "worst_sent_per_stream": worst,
        "same_for_every_t": same,
        "target_met": worst <= TARGET_OPS_PER_STREAM
        and same
        and not any(p.failures for p in phases),
    }


def report(results: dict[str, Any]) -> None:
    phases = results["phases"]
    commands = sorted(
        {c for p in phases for c in p["sent_per_plain_stream"]}
        | {c for p in phases for c in p["sent_per_stream_in_superseded_sessions"]}
    )
    rows = []
    for p in phases:
        for label, key in (
            ("plain", "sent_per_plain_stream"),
            ("superseded session", "sent_per_stream_in_superseded_sessions"),
        ):
            row = [p["tokens_per_stream"], label]
            row += [p[key].get(c, 0.0) for c in commands]
            row.append(sum(p[key].values()))
            rows.append(row)
    print("\nsent by the workers, per stream (round trips; lease renewals apart):")
    print(table(["T", "streams", *commands, "total"], rows))
    rows = [
        [
            p["tokens_per_stream"],
            p["streams"],
            p["mean_stream_s"],
            p["renewals_per_stream"],
            p["renewals_per_stream_second"],
            p["commandstats_total_per_stream"],
            p["failures"],
        ]
        for p in phases
    ]
    print()
    print(
        table(
            [
                "T",
                "streams",
                "mean stream s",
                "renewals/stream",
                "renewals/stream-s",
                "commandstats calls/stream",
                "failures",
            ],
            rows,
        )
    )
    for p in phases:
        stats = ", ".join(f"{c} {v:g}" for c, v in p["commandstats_per_stream"].items())
        print(f"T={p['tokens_per_stream']} INFO commandstats per stream: {stats}")
        print(f"T={p['tokens_per_stream']} connection setup (not per stream): {p['setup_ops']}")
    verdict = "met" if results["target_met"] else "MISSED"
    print(
        f"\nworst: {results['worst_sent_per_stream']:.2f} operations sent per stream "
        f"(renewals apart), same at every T: {results['same_for_every_t']}; "
        f"target <= {TARGET_OPS_PER_STREAM} and none per token: {verdict}"
    )


def flags(args: argparse.Namespace, registry: str) -> list[str]:
    return [
        "--registry", registry, "--workers", "2",
        "--token-rate", f"{args.token_rate:g}", "--first-token-ms", "0",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100, help="sessions per phase (S)")
    parser.add_argument(
        "--tokens",
        type=int,
        nargs="+",
        default=[50, 500],
        help="tokens per stream (T), a phase each",
    )
    parser.add_argument(
        "--token-rate", type=float, default=100.0, help="servers' --token-rate (the default)"
    )
    parser.add_argument("--settle", type=float, default=1.0, help="wait for releases (s)")
    parser.add_argument("--deadline", type=float, default=60.0, help="bound on one phase (s)")
    parser.add_argument("--quick", action="store_true", help="40 sessions, T=20 and T=200")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the workers' logs here")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.tokens = 40, [20, 200]

    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        with running_redis(workdir) as redis:
            argv = jarvis_argv(workdir / "fleet.log", *flags(args, redis.url(0)))
            with running(("fleet", argv), workdir=workdir) as (server,):
                time.sleep(1.0)  # /healthz answered: one worker is up, give the other a second
                print(
                    f"fleet_redis_ops: {args.sessions} sessions per phase, T in {args.tokens}, "
                    f"1 in {SUPERSEDE_EVERY} superseded; fleet pid {server.pid}, redis {redis.pid}",
                    flush=True,
                )
                phases = run(lambda: benchmark(server, redis, args))
        trouble = registry_trouble(sorted(workdir.glob("fleet.w*.log")))
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for path in [*workdir.glob("fleet*.log"), *workdir.glob("*.out")]:  # fleet, redis
                shutil.copy(path, keep / path.name)

    results = summarise(phases, args)
    results["registry_trouble"] = trouble
    report(results)
    if trouble["events"]:
        print(f"registry trouble in the workers' logs: {trouble}")
    write_json(args.json, "fleet_redis_ops", results)
    failures = [f for p in phases for f in p.failures]
    for failure in failures[:5]:
        print(f"  failure: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
