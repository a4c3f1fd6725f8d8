"""How much load one locust worker drives: its CPU per SSE event against a bare asyncio client.

Both clients read the same streams from one `jarvis serve --flush-ms 0`
(one SSE event per token, `--token-rate` tokens per second per stream, long
prompts back to back, no think time, no interruptions), taking turns at each
user count, in one run. Events are counted on the server (its flush counter),
CPU on each client process from /proc. The locust user checks every token
(ids, text against the synthetic model); the bare client (aiohttp, the
benchmarks' `_sse_client`) decodes every event too. Then the same locust run
with `--workers 2` shows how it scales on this machine.

    .venv/bin/python benchmarks/swarm_capacity.py [--quick] [--json PATH]

Target: the locust user costs at most 2x the bare client per event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import table, write_json  # noqa: E402
from _server_proc import (  # noqa: E402
    ADDRESS_IN_USE,
    HOST,
    cpu_seconds,
    jarvis_argv,
    processes,
    running,
    unused_port,
)

LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
PROMPT = "Long essay about quantum computing"
WARMUP_S = 3.0
#: Tries at a picked port for locust's master: another process can take it first.
BIND_ATTEMPTS = 5
_FLUSHES = re.compile(rb"^jarvis_flushes_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def flushes(server_get: object) -> float:
    status, body = server_get("/metrics")  # type: ignore[operator]
    return sum(float(v) for v in _FLUSHES.findall(body)) if status == 200 else 0.0


def bare_client(url: str, users: int, seconds: float) -> None:
    """Child mode: `users` tasks streaming long prompts back to back, decoding every event."""
    from _sse_client import new_session, run, stream_chat

    async def user(session: object, end: float) -> None:
        sid = f"bare-{uuid.uuid4().hex[:12]}"
        while time.monotonic() < end:
            await stream_chat(session, url, PROMPT, session_id=sid, max_tokens=400)  # type: ignore[arg-type]

    async def main() -> None:
        end = time.monotonic() + seconds
        async with new_session(users + 8) as session:
            await asyncio.gather(*(user(session, end) for _ in range(users)))

    run(main)


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A client process (locust, the bare client): it serves nothing, so it is not
    started by `processes.start`, but it dies with the benchmark as the servers do."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            preexec_fn=processes.kill_on_parent_death(),  # noqa: PLW1509 - checked: no thread
        )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def measure(
    server: object, procs: list[subprocess.Popen[bytes]], seconds: float
) -> dict[str, float]:
    """CPU of the client processes and server events over the steady window."""
    time.sleep(WARMUP_S)
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    ev0, t0 = flushes(server.get), time.monotonic()  # type: ignore[attr-defined]
    time.sleep(seconds)
    cpu1 = [cpu_seconds(p.pid) for p in procs]
    ev1, t1 = flushes(server.get), time.monotonic()  # type: ignore[attr-defined]
    wall = t1 - t0
    shares = [(b - a) / wall for a, b in zip(cpu0, cpu1, strict=True)]
    events = ev1 - ev0
    return {
        "events_per_s": events / wall,
        "client_cpu": sum(shares),
        "max_process_cpu": max(shares),
        "us_per_event": 1e6 * sum(b - a for a, b in zip(cpu0, cpu1, strict=True)) / max(events, 1),
    }


def locust_argv(url: str, users: int, seconds: float, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", url,
        "-u", str(users), "-r", str(users), "-t", f"{round(seconds)}s", "--only-summary",
        "--interrupt-rate", "0", "--disconnect-rate", "0", "--think-time", "0",
        "--prompt-mix", "long", "--loglevel", "WARNING", *extra,
    ]  # fmt: skip


def run_locust(
    server: object, workdir: Path, users: int, seconds: float, workers: int
) -> dict[str, float]:
    url = server.url  # type: ignore[attr-defined]
    total = seconds + WARMUP_S + 2
    if not workers:
        alone = [_spawn(locust_argv(url, users, total), workdir / "locust.log")]
        try:
            return measure(server, alone, seconds)
        finally:
            _stop(alone)
    for attempt in range(1, BIND_ATTEMPTS + 1):
        procs: list[subprocess.Popen[bytes]] = []
        master: processes.Process | None = None
        try:
            master = _start_master(url, users, total, workers, workdir)
            for i in range(workers):
                worker = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
                          "--master-host", HOST, "--master-port", str(master.port),
                          "--loglevel", "WARNING"]  # fmt: skip
                procs.append(_spawn(worker, workdir / f"worker{i}.log"))
            time.sleep(2)  # workers connect before the clock starts
            if master.proc.poll() is not None:  # another listener had the port first
                raise processes.StartError(f"locust master exited:\n{master.tail()}")
            return measure(server, procs, seconds)
        except processes.StartError as exc:
            if ADDRESS_IN_USE not in str(exc) or attempt == BIND_ATTEMPTS:
                raise
        finally:
            _stop(procs)
            if master is not None:
                master.stop()
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _start_master(
    url: str, users: int, total: float, workers: int, workdir: Path
) -> processes.Process:
    """locust's master on a picked port: it can bind port 0 but cannot tell its workers
    which port it got, so this is one of the few servers started on a port picked
    beforehand (the caller picks again when it was taken meanwhile)."""
    port = unused_port()
    argv = locust_argv(url, users, total, "--master", "--master-bind-host", HOST,
                       "--master-bind-port", str(port),
                       "--expect-workers", str(workers))  # fmt: skip
    return processes.start(
        argv, name="locust-master", workdir=workdir, cwd=ROOT, port=port, ready=None,
        die_with_parent=True,
    )  # fmt: skip


def run_bare(server: object, workdir: Path, users: int, seconds: float) -> dict[str, float]:
    argv = [sys.executable, __file__, "--bare", server.url, str(users),  # type: ignore[attr-defined]
            str(seconds + WARMUP_S + 2)]  # fmt: skip
    procs = [_spawn(argv, workdir / "bare.log")]
    try:
        return measure(server, procs, seconds)
    finally:
        _stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two user counts, 5 s each")
    parser.add_argument("--token-rate", type=float, default=20.0, help="tokens/s per stream")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument(
        "--bare", nargs=3, metavar=("URL", "USERS", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare:
        bare_client(args.bare[0], int(args.bare[1]), float(args.bare[2]))
        return
    steps = (50, 200) if args.quick else (50, 100, 200, 400)
    seconds = 5.0 if args.quick else 8.0
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="swarm-capacity-") as tmp:
        workdir = Path(tmp)
        options = ("--flush-ms", "0", "--token-rate", f"{args.token_rate:g}",
                   "--first-token-ms", "0", "--log-format", "logfmt")  # fmt: skip
        argv = jarvis_argv(workdir / "server.log", *options)
        with running(("jarvis", argv), workdir=workdir) as (server,):
            for users in steps:
                bare = run_bare(server, workdir, users, seconds)
                one = run_locust(server, workdir, users, seconds, workers=0)
                ratio = one["us_per_event"] / bare["us_per_event"]
                results.append({"users": users, "bare": bare, "locust": one, "ratio": ratio})
                rows.append([users, f"{bare['events_per_s']:,.0f}", f"{bare['us_per_event']:.0f}",
                             f"{bare['client_cpu']:.0%}", f"{one['events_per_s']:,.0f}",
                             f"{one['us_per_event']:.0f}", f"{one['client_cpu']:.0%}",
                             f"{ratio:.2f}x"])  # fmt: skip
            top = steps[-1]
            two = run_locust(server, workdir, top, seconds, workers=2)
            results.append({"users": top, "locust_2_workers": two})
    print(f"one SSE event per token, {args.token_rate:g} tokens/s per stream, "
          f"{seconds:g} s windows after {WARMUP_S:g} s warm-up")  # fmt: skip
    print(table(["users", "bare ev/s", "bare µs/ev", "bare CPU", "locust ev/s",
                 "locust µs/ev", "locust CPU", "locust/bare"], rows))  # fmt: skip
    best = min(r["locust"]["us_per_event"] for r in results if "locust" in r)
    print(
        f"one locust worker at 100% of a core: ~{1e6 / best:,.0f} events/s, "
        f"~{1e6 / best / args.token_rate:,.0f} streaming users at {args.token_rate:g} tok/s"
    )
    print(
        f"2 workers, {top} users: {two['events_per_s']:,.0f} events/s, "
        f"{two['us_per_event']:.0f} µs/event, workers' CPU {two['client_cpu']:.0%} "
        f"(busiest {two['max_process_cpu']:.0%})"
    )
    write_json(args.json, "swarm_capacity", {"token_rate": args.token_rate, "steps": results})


if __name__ == "__main__":
    main()
