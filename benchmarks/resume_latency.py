"""Resume and stop (issue 20): reconnect latency and Redis operations, in one run.

Two measurements, side by side on one machine (server CPU per token with resume on
against off is `resume_cpu.py`'s: pairs of runs, their ratios):

1. **Reconnect to first resumed event.** A streaming answer is cut after a few events
   (the connection closed, as a reload does); a new connection asks
   `GET /v1/streams/{id}` with `Last-Event-ID`; the time is from opening that
   connection to the first whole resumed event. In one process (the events in
   memory) and across processes (cut on worker 1, resumed on worker 2 from Redis).
   Target: p99 <= 20 ms.
2. **Redis operations per stream with resume on**, against the same streams with
   resume off, on a fleet's worker (`INFO commandstats`, reset before each phase):
   per stream and per token, at T=50 and T=500 tokens.

Run: `.venv/bin/python benchmarks/resume_latency.py [--quick] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _redis_proc import running_redis
from _report import median, percentile, table, write_json
from _server_proc import HOST, ServerProcess, jarvis_argv, running
from _sse_client import new_session, run

from jarvis.synthetic import expected_text

TARGET_P99_MS = 20.0
EVENT_ID = re.compile(rb"(?:^|\n)id: ([0-9]+)\n")
PROMPT = "Long essay about resuming"
#: Between the cut and the resume: the answer runs on meanwhile.
RELOAD_S = 0.15


async def _request(port: int, head: str, body: bytes = b"") -> tuple[Any, Any, bytes]:
    """Open a connection, send one HTTP/1.1 request, read up to the end of the headers
    (and whatever came with them)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(head.encode() + b"\r\n" + body)
    await writer.drain()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError(f"connection closed before the headers: {data[:200]!r}")
        data += chunk
    return reader, writer, data


def _header(raw: bytes, name: str) -> str:
    match = re.search(rb"\r\n" + name.encode() + rb": ([^\r]+)", raw, flags=re.IGNORECASE)
    return match.group(1).decode() if match else ""


async def cut_answer(port: int, session: str, events: int) -> tuple[str, int]:
    """Start an answer, read `events` events, drop the connection: (stream id, last id)."""
    body = b'{"messages":[{"role":"user","content":"' + PROMPT.encode() + b'"}],"stream":true}'
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: jarvis\r\nX-Session-Id: {session}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    reader, writer, data = await _request(port, head, body)
    stream_id = _header(data, "x-stream-id")
    while len(EVENT_ID.findall(data)) < events:
        data += await reader.read(65536)
    writer.close()
    whole = data[: data.rfind(b"\n\n") + 2]  # the client has the events it got whole
    return stream_id, max(int(i) for i in EVENT_ID.findall(whole))


async def time_resume(port: int, session: str, stream_id: str, last: int) -> float:
    """Seconds from opening the connection to the first whole resumed event."""
    head = (
        f"GET /v1/streams/{stream_id} HTTP/1.1\r\nHost: jarvis\r\nX-Session-Id: {session}\r\n"
        f"Last-Event-ID: {last}\r\n"
    )
    started = time.perf_counter()
    reader, writer, data = await _request(port, head)
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"resume refused: {data[:200]!r}")
    body = data.partition(b"\r\n\r\n")[2]
    while not re.search(rb"id: [0-9]+\n[^\n]*\n\n", body):
        body += await reader.read(65536)
    elapsed = time.perf_counter() - started
    first = int(EVENT_ID.search(body).group(1))  # type: ignore[union-attr]
    writer.close()
    if first != last + 1:
        raise RuntimeError(f"resumed at id {first}, not {last + 1}")
    return elapsed


async def latency(cut_on: ServerProcess, resume_on: ServerProcess, trials: int) -> list[float]:
    times = []
    for n in range(trials):
        session = f"bench-{cut_on.port}-{n}"
        stream_id, last = await cut_answer(cut_on.port, session, 4)
        # A reload takes longer than this: the answer has run on, and the resume has a
        # backlog (else the time would be the wait for the model's next flush).
        await asyncio.sleep(RELOAD_S)
        times.append(await time_resume(resume_on.port, session, stream_id, last))
    return times


async def redis_phase(
    worker: ServerProcess, redis: Any, streams: int, tokens: int
) -> dict[str, Any]:
    redis.reset_stats()
    prompts = [(f"ops-{worker.port}-{tokens}-{n}", PROMPT) for n in range(streams)]
    session = new_session(8)
    try:
        verified, failures = await _stream(session, worker, prompts, tokens)
    finally:
        await session.close()
    await asyncio.sleep(0.3)  # the last writes and releases land
    calls = redis.command_calls()
    total = sum(calls.values())
    return {
        "streams": streams,
        "tokens": tokens,
        "verified_tokens": verified,
        "failures": failures,
        "calls": calls,
        "per_stream": total / streams,
    }


async def _stream(
    session: Any, worker: ServerProcess, prompts: list[tuple[str, str]], tokens: int
) -> tuple[int, list[str]]:
    from _sse_client import stream_chat

    verified, failures = 0, []
    sem = asyncio.Semaphore(8)

    async def one(sid: str, prompt: str) -> None:
        nonlocal verified
        async with sem:
            result = await stream_chat(
                session, f"http://{HOST}:{worker.port}", prompt, session_id=sid,
                max_tokens=tokens, deadline_s=60,
            )  # fmt: skip
        if result.text == expected_text(prompt, tokens) and result.done:
            verified += tokens
        else:
            failures.append(f"{sid}: {result.status} {result.error}")

    await asyncio.gather(*(one(s, p) for s, p in prompts))
    return verified, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    trials = 40 if args.quick else 300
    with tempfile.TemporaryDirectory(prefix="jarvis-resume-") as tmp:
        work = Path(tmp)
        with running_redis(work) as redis:
            url = redis.url()
            live = ("--token-rate", "200", "--first-token-ms", "5", "--resume-ttl", "60")
            servers = [
                ("single", jarvis_argv(work / "single.log", *live)),
                ("w1", jarvis_argv(work / "w1.log", *live, "--registry", url)),
                ("w2", jarvis_argv(work / "w2.log", *live, "--registry", url)),
                ("w1off", jarvis_argv(work / "w1off.log", "--token-rate", "0", "--registry", url)),
                (
                    "w1on",
                    jarvis_argv(
                        work / "w1on.log",
                        "--token-rate",
                        "0",
                        "--registry",
                        url,
                        "--resume-ttl",
                        "60",
                    ),
                ),
            ]
            with running(*servers, workdir=work) as procs:
                single, w1, w2, w1off, w1on = procs
                one = run(lambda: latency(single, single, trials))
                across = run(lambda: latency(w1, w2, trials))
                time.sleep(3)  # the cut answers run on to their ends: not counted below
                ops = {}
                for label, server in (("off", w1off), ("on", w1on)):
                    for tokens in (50, 500):
                        ops[(label, tokens)] = run(
                            lambda s=server, t=tokens: redis_phase(
                                s, redis, 40 if args.quick else 100, t
                            )
                        )
    rows = [
        [where, len(t), f"{median(t) * 1000:.2f}", f"{percentile(t, 99) * 1000:.2f}",
         f"{max(t) * 1000:.2f}", "yes" if percentile(t, 99) * 1000 <= TARGET_P99_MS else "NO"]
        for where, t in (("one process (memory)", one), ("worker 1 -> worker 2 (Redis)", across))
    ]  # fmt: skip
    print(
        table(
            ["reconnect -> first resumed event", "n", "p50 ms", "p99 ms", "max ms", "p99 <= 20 ms"],
            rows,
        )
    )
    print()
    op_rows = []
    for (label, tokens), phase in ops.items():
        calls = phase["calls"]
        op_rows.append([
            f"resume {label}", tokens, f"{phase['per_stream']:.1f}",
            f"{(calls.get('evalsha', 0) + calls.get('eval', 0)) / phase['streams']:.1f}",
            f"{calls.get('xadd', 0) / phase['streams']:.1f}",
            f"{calls.get('xread', 0) + calls.get('xrange', 0)}",
            len(phase["failures"]),
        ])  # fmt: skip
    print(
        table(
            [
                "fleet worker",
                "T",
                "commands / stream",
                "EVALSHA / stream",
                "XADD / stream",
                "reads",
                "failures",
            ],
            op_rows,
        )
    )
    if args.json:
        write_json(str(args.json), "resume_latency", {
            "latency_ms": {
                "one_process": [t * 1000 for t in one],
                "across_workers": [t * 1000 for t in across],
            },
            "redis_ops": {f"{k[0]}-{k[1]}": v for k, v in ops.items()},
        })  # fmt: skip
    worst = max(percentile(one, 99), percentile(across, 99)) * 1000
    return 0 if worst <= TARGET_P99_MS else 1


if __name__ == "__main__":
    sys.exit(main())
