"""Client CPU per streamed event: verify-hang's client against a bare asyncio client.

verify-hang must not distort what it measures: its client (httpx, a deadline
per stream, a transcript with arrival times and stream-id checks) should cost
little next to a minimal client. Both read the same streams from one
`jarvis serve --flush-ms 0 --token-rate 0` (one SSE event per token), taking
turns, in one run; the figure is this process's CPU per received event, and
CPU/wall near 1.0 says the client was saturated.

    .venv/bin/python benchmarks/verify_client_cpu.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Puts the checkout last on sys.path, so that under run_at_commit.sh the client
# measured is the commit's (PYTHONPATH first), as the server is.
from _server_proc import jarvis_argv, running

from jarvis_cli.verify.client import ChatClient

TOKENS = 400


async def bare_stream(port: int, prompt: str, deadline: float) -> int:
    """A minimal client: raw HTTP/1.1, count `data:` events until `[DONE]`."""
    body = json.dumps({"messages": [{"role": "user", "content": prompt}], "stream": True,
                       "max_tokens": TOKENS}).encode()  # fmt: skip
    async with asyncio.timeout(deadline):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        events = 0
        tail = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            window = tail + data
            events += window.count(b"data: ") - tail.count(b"data: ")
            if b"data: [DONE]" in window:
                break
            tail = window[-16:]
        writer.close()
        return events


async def verify_stream(client: ChatClient, prompt: str) -> int:
    transcript = await client.stream(prompt, session=None, label="x", max_tokens=TOKENS)
    return len(transcript.chunks) + (1 if transcript.done_at is not None else 0)


async def round_of(
    kind: str, port: int, streams: int, concurrency: int
) -> tuple[float, float, int]:
    """(client CPU seconds, wall seconds, events) for one round of one client kind."""
    limit = asyncio.Semaphore(concurrency)
    url = f"http://127.0.0.1:{port}"
    # Commits before 505f7ac took one URL; later ones a list (replicas): run_at_commit.sh
    # can then compare the client of any commit with today's, side by side.
    urls: object = [url] if "urls" in inspect.signature(ChatClient).parameters else url
    client = ChatClient(urls, model="jarvis-synthetic", deadline=30)  # type: ignore[arg-type]

    async def one(i: int) -> int:
        async with limit:
            prompt = f"Long essay {kind} {i}"
            if kind == "bare":
                return await bare_stream(port, prompt, 30)
            return await verify_stream(client, prompt)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(streams)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await client.aclose()
    return cpu, wall, sum(counts)


def take_turns(port: int, args: argparse.Namespace) -> dict[str, list[tuple[float, float, int]]]:
    """Rounds of each client in turn (A B B A ...): (CPU seconds, wall seconds, events) each."""
    results: dict[str, list[tuple[float, float, int]]] = {"verify-hang": [], "bare": []}
    order = ["verify-hang", "bare", "bare", "verify-hang"] * ((args.rounds + 1) // 2)
    for kind in order[: 2 * args.rounds]:
        label = "bare" if kind == "bare" else "verify"
        cpu, wall, events = asyncio.run(round_of(label, port, args.streams, args.concurrency))
        results[kind].append((cpu, wall, events))
        print(f"  {kind:12s} {events:7d} events in {wall:5.2f} s, client {cpu:5.2f} CPU-s "
              f"({cpu / wall:.0%} of a core)", flush=True)  # fmt: skip
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--streams", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 32 streams")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.streams = 2, 32
    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        flags = ("--flush-ms", "0", "--token-rate", "0", "--first-token-ms", "0")
        argv = jarvis_argv(workdir / "server.log", *flags)
        with running(("jarvis", argv), workdir=workdir) as (server,):
            results = take_turns(server.port, args)
    per_event = {k: statistics.median(c / e * 1e6 for c, _, e in v) for k, v in results.items()}
    saturation = {k: statistics.median(c / w for c, w, _ in v) for k, v in results.items()}
    ratio = per_event["verify-hang"] / per_event["bare"]
    print(f"\nclient CPU per event: verify-hang {per_event['verify-hang']:.1f} us, bare asyncio "
          f"{per_event['bare']:.1f} us, ratio {ratio:.2f}")  # fmt: skip
    print(f"client CPU/wall (1.0 = saturated): verify-hang {saturation['verify-hang']:.2f}, "
          f"bare {saturation['bare']:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"us_per_event": per_event, "ratio": ratio,
                                         "cpu_per_wall": saturation}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
