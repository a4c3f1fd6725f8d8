"""Bytes of structured log per streamed token: `jarvis serve` at default settings, and --flush-ms 0.

Sessions send prompts one after another; every other prompt is interrupted
by the next one while it streams (the server cancels it: a superseded
stream). The client counts the tokens it received (checked against the
synthetic model's exact text) and the server's log is measured once the
server has stopped. Sizing for --log-max-mb. Run:
`.venv/bin/python benchmarks/log_bytes_per_token.py [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

import aiohttp
from _report import table, write_json
from _server_proc import jarvis_argv, running
from _sse_client import StreamResult, new_session, run, stream_chat

from jarvis.synthetic import expected_text, expected_tokens

#: (name, extra `jarvis serve` flags): the defaults, then token-by-token streaming.
CONFIGS = (("default", ()), ("--flush-ms 0", ("--flush-ms", "0")))
_EVENT = re.compile(rb"event=(\w+)")


@dataclass
class Measurement:
    """One configuration: what the client received and what the server logged."""

    name: str
    flags: list[str]
    streams: int = 0
    tokens: int = 0
    end_reasons: Counter[str] = field(default_factory=Counter)
    log_bytes_at_ready: int = 0
    log_bytes: int = 0
    log_lines: int = 0
    bytes_by_event: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def streamed_log_bytes(self) -> int:
        """What the streams cost: the log after the server stopped, minus its start-up lines."""
        return self.log_bytes - self.log_bytes_at_ready

    def to_json(self) -> dict[str, Any]:
        return {
            "flags": self.flags,
            "streams": self.streams,
            "tokens_received": self.tokens,
            "end_reasons": dict(self.end_reasons),
            "log_bytes_total": self.log_bytes,
            "log_bytes_streamed": self.streamed_log_bytes,
            "log_lines": self.log_lines,
            "log_bytes_per_token": self.streamed_log_bytes / max(self.tokens, 1),
            "log_lines_per_token": self.log_lines / max(self.tokens, 1),
            "log_bytes_per_stream": self.streamed_log_bytes / max(self.streams, 1),
            "log_bytes_by_event": dict(self.bytes_by_event.most_common()),
            "failures": self.failures,
        }


def tokens_in(prompt: str, max_tokens: int, text: str) -> int | None:
    """How many whole tokens of the exact completion `text` is; None if it is not a prefix."""
    if not expected_text(prompt, max_tokens).startswith(text):
        return None
    ends = [0, *accumulate(len(t) for t in expected_tokens(prompt, max_tokens))]
    return ends.index(len(text)) if len(text) in ends else None


async def converse(
    http: aiohttp.ClientSession, url: str, index: int, args: argparse.Namespace
) -> list[tuple[str, StreamResult]]:
    """One session's prompts in order; every other one is superseded by the next mid-stream."""
    session_id = f"bench-{index}"
    running_streams: list[tuple[str, asyncio.Task[StreamResult]]] = []
    for k in range(args.prompts):
        prompt = f"Long essay {index}.{k}"  # "long"/"essay": streams max_tokens tokens
        first = asyncio.Event()
        task = asyncio.create_task(
            stream_chat(
                http, url, prompt, session_id=session_id, max_tokens=args.max_tokens,
                deadline_s=30, first_content=first,
            )
        )  # fmt: skip
        running_streams.append((prompt, task))
        if k < args.prompts - 1 and (index + k) % 2 == 0:
            async with asyncio.timeout(30):
                await first.wait()
            await asyncio.sleep(args.interrupt_ms / 1000)  # then the next prompt supersedes it
        else:
            await task
    results = await asyncio.gather(*(task for _, task in running_streams))
    return [(prompt, result) for (prompt, _), result in zip(running_streams, results, strict=True)]


async def drive(url: str, args: argparse.Namespace, measurement: Measurement) -> None:
    async with new_session(args.sessions * 2) as http, asyncio.timeout(args.deadline):
        conversations = await asyncio.gather(
            *(converse(http, url, i, args) for i in range(args.sessions))
        )
    for prompt, result in (pair for conversation in conversations for pair in conversation):
        measurement.streams += 1
        measurement.end_reasons[result.end_reason or result.error or "no end reason"] += 1
        received = tokens_in(prompt, args.max_tokens, result.text)
        if result.status != 200 or result.error or received is None:
            measurement.failures.append(
                f"{prompt!r}: status={result.status} error={result.error} "
                f"text is {'not ' if received is None else ''}a prefix of the completion"
            )
            continue
        measurement.tokens += received


def measure(name: str, flags: tuple[str, ...], args: argparse.Namespace) -> Measurement:
    measurement = Measurement(name, list(flags))
    with tempfile.TemporaryDirectory(prefix="jarvis-bench-") as tmp:
        workdir = Path(tmp)
        log_file = workdir / "system.log"
        with running(("jarvis", jarvis_argv(log_file, *flags)), workdir=workdir) as (server,):
            measurement.log_bytes_at_ready = log_file.stat().st_size
            run(lambda: drive(server.url, args, measurement))
        # The server has stopped: its writer thread wrote everything.
        data = log_file.read_bytes()
    measurement.log_bytes = len(data)
    for line in data.splitlines(keepends=True):
        measurement.log_lines += 1
        event = _EVENT.search(line)
        measurement.bytes_by_event[event[1].decode() if event else "?"] += len(line)
    return measurement


def report(measurements: list[Measurement]) -> None:
    rows = [
        [
            m.name, m.streams, m.end_reasons.get("superseded", 0), m.tokens,
            m.streamed_log_bytes, m.streamed_log_bytes / max(m.tokens, 1),
            m.log_lines / max(m.tokens, 1), m.streamed_log_bytes / max(m.streams, 1),
        ]
        for m in measurements
    ]  # fmt: skip
    print()
    headers = ["server", "streams", "superseded", "tokens", "log bytes", "bytes/token"]
    print(table([*headers, "lines/token", "bytes/stream"], rows))
    for m in measurements:
        top = ", ".join(f"{event} {size}" for event, size in m.bytes_by_event.most_common(4))
        print(f"{m.name}: most log bytes from {top}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10, help="sessions streaming at once")
    parser.add_argument("--prompts", type=int, default=5, help="prompts per session, in order")
    parser.add_argument("--max-tokens", type=int, default=150, help="tokens per full answer")
    parser.add_argument(
        "--interrupt-ms", type=float, default=300.0,
        help="how long an interrupted answer streams before the next prompt supersedes it",
    )  # fmt: skip
    parser.add_argument("--deadline", type=float, default=120.0, help="bound on each run (s)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args()

    print(
        f"log_bytes_per_token: {args.sessions} sessions x {args.prompts} prompts "
        f"({args.max_tokens} tokens each, every other one superseded after "
        f"{args.interrupt_ms:g} ms), jarvis serve at default settings and --flush-ms 0",
        flush=True,
    )
    measurements = [measure(name, flags, args) for name, flags in CONFIGS]
    report(measurements)
    write_json(
        args.json,
        "log_bytes_per_token",
        {
            "settings": {
                "sessions": args.sessions,
                "prompts_per_session": args.prompts,
                "max_tokens": args.max_tokens,
                "interrupt_ms": args.interrupt_ms,
            },
            "results": {m.name: m.to_json() for m in measurements},
        },
    )
    failures = [f for m in measurements for f in m.failures]
    for failure in failures[:5]:
        print(f"  failure: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
