"""Cross-process supersede at 1,000 sessions: B's extra first-token latency when A runs elsewhere.

Two `jarvis serve --registry redis://...` processes share one private Redis.
Every busy session streams a long answer A on server 1. Probes then send B:
to server 2 (cross-process: the cancel travels through Redis to server 1 and
the release comes back) or to server 1 (same process, still through Redis),
each in a busy session and in a fresh idle session, busy and idle alternating
under the same load, the two modes interleaved. The extra p99 latency of busy
over idle is the cost of the supersede. Target: cross-process p99 extra
<= 10 ms. The servers' logs then say where the time went (publish, cancel,
release, claim). Run:
`.venv/bin/python benchmarks/fleet_latency.py [--quick] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from _latency import (
    BUSY,
    IDLE,
    PROMPT_B,
    Background,
    a_stream_tokens,
    active_streams,
    first_token_stats,
    paired_extra,
    probe_failure,
    ramp,
    send_b,
    server_log_summary,
    wait_until_no_streams,
)
from _redis_proc import RedisServer, running_redis
from _report import percentile, table, write_json
from _server_proc import (
    ServerProcess,
    jarvis_argv,
    machine_busy_seconds,
    own_cpu_seconds,
    raise_fd_limit,
    running,
)
from _sse_client import new_session, run

from jarvis.logfmt import parse_logfmt
from jarvis.synthetic import expected_text

TARGET_CROSS_EXTRA_P99_MS = 10.0
CROSS = "cross-process"
SAME = "same process"
MODES = (CROSS, SAME)
#: The events that place a supersede on the time line (both servers' logs).
_TIMELINE_EVENTS = (
    "event=stream_start",
    "event=stream_registered",
    "event=stream_cancelled",
    "event=stream_end",
    "event=prev_stream_finished_cleanly",
)


@dataclass
class Run:
    """Everything one benchmark run collected."""

    #: (mode, kind) -> first-token ms.
    latencies: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: {(m, k): [] for m in MODES for k in (BUSY, IDLE)}
    )
    #: mode -> (round, session) -> kind -> ms, for the paired differences.
    pairs: dict[str, dict[tuple[int, int], dict[str, float]]] = field(
        default_factory=lambda: {m: {} for m in MODES}
    )
    failures: list[str] = field(default_factory=list)
    background_end_reasons: Counter[str] = field(default_factory=Counter)
    active_at_probe_start: int = 0
    active_at_probe_end: int = 0
    left_open: dict[str, int] = field(default_factory=dict)
    ramp_s: float = 0.0
    probe_s: float = 0.0
    #: CPU in cores over the probes: server 1, server 2, redis, client, other processes.
    cpu_share: dict[str, float] = field(default_factory=dict)


@dataclass
class Prober:
    """Sends the B prompts on schedule, to either server, and records their first token."""

    probes: aiohttp.ClientSession
    urls: dict[str, str]
    background: Background
    result: Run
    want: str = field(default_factory=lambda: expected_text(PROMPT_B))

    async def probe(
        self, mode: str, kind: str, session_id: str, at: float, key: tuple[int, int]
    ) -> None:
        """Send B at loop time `at` to the mode's server; record send to first content."""
        result = await send_b(self.probes, self.urls[mode], self.background, kind, session_id, at)
        failure = probe_failure(result, self.want)
        if failure or result.first_content_ms is None:
            self.result.failures.append(f"{mode} {kind} {session_id}: {failure}")
            return
        self.result.latencies[(mode, kind)].append(result.first_content_ms)
        self.result.pairs[mode].setdefault(key, {})[kind] = result.first_content_ms
        if kind == BUSY:
            self.background.start(session_id)  # A again, on server 1: the load stays


def schedule(prober: Prober, args: argparse.Namespace, t0: float) -> list[Any]:
    """Every probe with its send time: pairs at `probe_rate` per second.

    Session k in round r is probed cross-process when r + k is even, else in
    the same process, so each session (and each round) sees both modes; which
    of busy and idle goes first alternates independently of the mode.
    """
    step = 1 / (2 * args.probe_rate)
    probes = []
    for r in range(args.probe_rounds):
        for k in range(args.sessions):
            mode = MODES[(r + k) % 2]
            pair = [(BUSY, f"busy-{k}"), (IDLE, f"idle-{r}-{k}")]
            if ((r + k) // 2) % 2:
                pair.reverse()
            for j, (kind, sid) in enumerate(pair):
                at = t0 + (2 * (r * args.sessions + k) + j) * step
                probes.append(prober.probe(mode, kind, sid, at, (r, k)))
    return probes


async def benchmark(
    server1: ServerProcess, server2: ServerProcess, redis: RedisServer, args: argparse.Namespace
) -> Run:
    result = Run()
    busy = [f"busy-{i}" for i in range(args.sessions)]
    async with (
        new_session(args.sessions * 3) as streams,
        new_session(args.sessions * 2, fresh_connections=True) as probes,
    ):
        max_tokens = a_stream_tokens(
            args.token_rate, args.probe_rounds, args.sessions, args.probe_rate
        )
        background = Background(streams, server1.url, args.deadline, max_tokens)
        prober = Prober(probes, {CROSS: server2.url, SAME: server1.url}, background, result)
        try:
            async with asyncio.timeout(args.deadline):
                started = time.monotonic()
                await ramp(background, busy, args.ramp_batch, deadline_s=30)
                result.ramp_s = time.monotonic() - started
                result.active_at_probe_start = await active_streams(streams, server1.url)

                cpu = {
                    "server 1": server1.cpu_seconds(),
                    "server 2": server2.cpu_seconds(),
                    "redis": redis.cpu_seconds(),
                    "client": own_cpu_seconds(),
                }
                machine = machine_busy_seconds()
                started = time.monotonic()
                await asyncio.gather(
                    *schedule(prober, args, asyncio.get_running_loop().time() + 0.2)
                )
                result.probe_s = time.monotonic() - started
                after = {
                    "server 1": server1.cpu_seconds(),
                    "server 2": server2.cpu_seconds(),
                    "redis": redis.cpu_seconds(),
                    "client": own_cpu_seconds(),
                }
                result.cpu_share = {n: (after[n] - cpu[n]) / result.probe_s for n in cpu}
                machine_share = (machine_busy_seconds() - machine) / result.probe_s
                result.cpu_share["other processes"] = max(
                    0.0, machine_share - sum(result.cpu_share.values())
                )
                result.active_at_probe_end = await active_streams(streams, server1.url)
        finally:
            await background.stop()
        result.background_end_reasons.update(background.end_reasons())
        # The clients left: every stream must end server-side on both servers (bounded).
        async with asyncio.timeout(15):
            for name, server in (("server 1", server1), ("server 2", server2)):
                result.left_open[name] = await wait_until_no_streams(probes, server.url)
    return result


def _timeline(log_file: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """trace -> event -> fields (with `t`, seconds), for the events that time a supersede."""
    traces: dict[str, dict[str, dict[str, Any]]] = {}
    with log_file.open(encoding="utf-8") as lines:
        for line in lines:
            if not any(e in line for e in _TIMELINE_EVENTS):
                continue
            fields: dict[str, Any] = dict(parse_logfmt(line))
            trace, event = fields.get("trace"), fields.get("event")
            if not trace or not event:
                continue
            fields["t"] = datetime.fromisoformat(str(fields["ts"])).timestamp()
            traces.setdefault(str(trace), {}).setdefault(str(event), fields)
    return traces


def where_the_time_goes(log1: Path, log2: Path) -> dict[str, dict[str, dict[str, float]]]:
    """From both servers' logs: each busy B's way through the registry, in segments (ms).

    B arrives (stream_start on its server) -> A is told to stop (stream_cancelled
    on server 1: INCR, GET, PUBLISH cancel, pub/sub delivery) -> A's cleanup ends
    (stream_end) -> B sees the session free (prev_stream_finished_cleanly:
    release script, `done` delivery, GET) -> B owns it (stream_registered: the
    claim script). An idle B goes from stream_start to stream_registered with
    INCR, GET and the claim alone. One machine, one clock: the two logs compare.
    """
    server1, server2 = _timeline(log1), _timeline(log2)
    segments: dict[str, dict[str, list[float]]] = {}
    for mode, b_log in ((CROSS, server2), (SAME, server1)):
        seg = segments.setdefault(mode, {})
        for events in b_log.values():
            start, registered = events.get("stream_start"), events.get("stream_registered")
            if start is None or registered is None:
                continue
            session = str(start["session"])
            finished = events.get("prev_stream_finished_cleanly")
            if session.startswith("idle-"):
                seg.setdefault("idle B: start -> registered", []).append(
                    registered["t"] - start["t"]
                )
                continue
            if finished is None:
                continue  # an A stream (server 1), or a B whose A had already ended
            a = server1.get(str(finished["prev_trace"]), {})
            cancelled, ended = a.get("stream_cancelled"), a.get("stream_end")
            if cancelled is None or ended is None:
                continue
            for name, begin, end in (
                ("busy B: start -> A cancelled", start, cancelled),
                ("A cancelled -> A ended", cancelled, ended),
                ("A ended -> B sees it released", ended, finished),
                ("released -> B registered", finished, registered),
                ("busy B: start -> registered", start, registered),
            ):
                seg.setdefault(name, []).append(end["t"] - begin["t"])
    return {
        mode: {
            name: {
                "n": len(values),
                "p50_ms": percentile(values, 50) * 1000,
                "p99_ms": percentile(values, 99) * 1000,
            }
            for name, values in seg.items()
        }
        for mode, seg in segments.items()
    }


def summarise(
    result: Run, logs: dict[str, Any], timeline: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    modes: dict[str, Any] = {}
    for mode in MODES:
        stats = {kind: first_token_stats(result.latencies[(mode, kind)]) for kind in (BUSY, IDLE)}
        modes[mode] = {
            "first_token_ms": stats,
            "p50_extra_ms": stats[BUSY]["p50_ms"] - stats[IDLE]["p50_ms"],
            "p99_extra_ms": stats[BUSY]["p99_ms"] - stats[IDLE]["p99_ms"],
            "paired_extra_ms": paired_extra(result.pairs[mode]),
        }
    cross_extra = modes[CROSS]["p99_extra_ms"]
    return {
        "settings": {
            "sessions": args.sessions,
            "token_rate": args.token_rate,
            "probe_pairs_per_s": args.probe_rate,
            "probe_rounds": args.probe_rounds,
            "jarvis_flags": jarvis_flags(args, "redis://127.0.0.1:PORT/0"),
            "registry_lease_ms": args.lease_ms or 5000,
            "lease_overridden": args.lease_ms is not None,
            "a_streams_on": "server 1",
            "b_to": {CROSS: "server 2", SAME: "server 1"},
        },
        "modes": modes,
        "target_cross_p99_extra_ms": TARGET_CROSS_EXTRA_P99_MS,
        "target_met": cross_extra <= TARGET_CROSS_EXTRA_P99_MS and not result.failures,
        "where_the_time_goes_ms": timeline,
        "active_streams_at_probe_start": result.active_at_probe_start,
        "active_streams_at_probe_end": result.active_at_probe_end,
        "ramp_s": result.ramp_s,
        "probe_s": result.probe_s,
        # In cores, over the probes; "other processes" is the noise.
        "cpu_share_during_probes": result.cpu_share,
        "background_end_reasons": dict(result.background_end_reasons),
        "streams_left_open_after_clients_left": result.left_open,
        "server_logs": logs,
        "failures": len(result.failures),
    }


def report(results: dict[str, Any]) -> None:
    print()
    rows = [
        [mode, kind, s["n"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]]
        for mode, m in results["modes"].items()
        for kind, s in m["first_token_ms"].items()
    ]
    print(table(["B sent", "on", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
    print()
    for mode, m in results["modes"].items():
        paired = m["paired_extra_ms"]
        print(
            f"{mode:14s} p99 extra = {m['p99_extra_ms']:.1f} ms (p50 extra "
            f"{m['p50_extra_ms']:.1f} ms; paired busy-idle: p50 {paired['p50']:.1f} ms, "
            f"p99 {paired['p99']:.1f} ms)"
        )
    verdict = "met" if results["target_met"] else "MISSED"
    print(f"target: cross-process p99 extra <= {TARGET_CROSS_EXTRA_P99_MS:g} ms: {verdict}")
    print("\nwhere the time goes (server logs, ms):")
    rows = [
        [mode, name, s["n"], s["p50_ms"], s["p99_ms"]]
        for mode, segs in results["where_the_time_goes_ms"].items()
        for name, s in segs.items()
    ]
    print(table(["B sent", "segment", "n", "p50 ms", "p99 ms"], rows))
    cpu = ", ".join(f"{k} {v:.0%}" for k, v in results["cpu_share_during_probes"].items())
    print(
        f"\nactive streams on server 1 at probe start/end: "
        f"{results['active_streams_at_probe_start']}/{results['active_streams_at_probe_end']}; "
        f"ramp {results['ramp_s']:.1f}s, probes {results['probe_s']:.1f}s; CPU (of a core): {cpu}"
    )
    for name, log in results["server_logs"].items():
        print(
            f"{name} log: {log['cancel_waits']} cancel waits, waited_ms p50 "
            f"{log['waited_ms_p50']:.0f} p99 {log['waited_ms_p99']:.0f} max "
            f"{log['waited_ms_max']:.0f}, {log['timeouts_on_cancel']} timeouts on cancel; "
            f"max loop lag {log['loop_lag_max_ms']:.0f} ms, {log['loop_blocked']} loop_blocked"
        )
    print(
        f"background A streams ended: {results['background_end_reasons']}; "
        f"left open after the clients left: {results['streams_left_open_after_clients_left']}"
    )


def jarvis_flags(args: argparse.Namespace, registry: str) -> list[str]:
    return ["--registry", registry, "--token-rate", f"{args.token_rate:g}", "--lag-report", "1"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=1000, help="concurrent busy sessions")
    parser.add_argument(
        "--token-rate",
        type=float,
        default=2.0,
        help="servers' --token-rate; 2/s keeps 1,000 streams under one core on 2 cores",
    )
    parser.add_argument("--probe-rate", type=float, default=50.0, help="probe pairs per second")
    parser.add_argument(
        "--probe-rounds", type=int, default=4, help="probes per busy session (half per mode)"
    )
    parser.add_argument(
        "--ramp-batch",
        type=int,
        default=50,
        help="A streams opened at once; 100 or more overflows redis-py's 100-connection pool "
        "(MaxConnectionsError) and server 1 then refuses every prompt (503)",
    )
    parser.add_argument("--deadline", type=float, default=170.0, help="bound on the run (s)")
    parser.add_argument("--quick", action="store_true", help="200 sessions, 2 rounds (< 30 s)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the servers' logs here")
    parser.add_argument(
        "--lease-ms",
        type=int,
        help="diagnostic: the servers' registry lease (default 5000; the heartbeat renews "
        "every owned session each lease/3), set through _lease_override/sitecustomize.py",
    )
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.probe_rounds = 200, 2
    raise_fd_limit(args.sessions * 6 + 1024)  # inherited by the server subprocesses
    if args.lease_ms is not None:  # inherited by the server subprocesses too
        hook = str(Path(__file__).resolve().parent / "_lease_override")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), hook) if p
        )
        os.environ["JARVIS_BENCH_LEASE_MS"] = str(args.lease_ms)

    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        log1, log2 = workdir / "server1.log", workdir / "server2.log"
        with running_redis(workdir) as redis:
            flags = jarvis_flags(args, redis.url(0))
            specs = [
                ("server 1", jarvis_argv(log1, *flags)),
                ("server 2", jarvis_argv(log2, *flags)),
            ]
            with running(*specs, workdir=workdir) as (server1, server2):
                lease = f", registry lease {args.lease_ms} ms (overridden)" if args.lease_ms else ""
                print(
                    f"fleet_latency: {args.sessions} busy sessions on server 1 (token rate "
                    f"{args.token_rate:g}/s, default flush), {args.probe_rounds} x "
                    f"{args.sessions} probe pairs at {args.probe_rate:g} pairs/s, half to "
                    f"server 2 (cross-process), half to server 1; pids {server1.pid}, "
                    f"{server2.pid}, redis {redis.pid}{lease}",
                    flush=True,
                )
                result = run(lambda: benchmark(server1, server2, redis, args))
        # After the servers stopped: their logs are complete.
        logs = {"server 1": server_log_summary(log1), "server 2": server_log_summary(log2)}
        timeline = where_the_time_goes(log1, log2)
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for path in (log1, log2, *workdir.glob("*.out")):  # both servers' and redis's output
                shutil.copy(path, keep / path.name)

    results = summarise(result, logs, timeline, args)
    report(results)
    write_json(args.json, "fleet_latency", results)
    for failure in result.failures[:5]:
        print(f"  failure: {failure}", file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
