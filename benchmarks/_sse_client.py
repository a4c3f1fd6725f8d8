"""A cheap aiohttp SSE client for chat completions, with the timings the benchmarks need.

aiohttp costs far less CPU per event than httpx, which matters when the
client shares a 2-core machine with the server it measures. Every read is
bounded by the caller's deadline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

DONE_EVENT = b"data: [DONE]"
T = TypeVar("T")


@dataclass
class StreamResult:
    """What one streamed request received."""

    status: int = 0
    text: str = ""
    chunks: int = 0
    content_chunks: int = 0
    done: bool = False
    end_reason: str | None = None
    sent_at: float = 0.0
    first_content_at: float | None = None
    ended_at: float = 0.0
    error: str | None = None

    @property
    def first_content_ms(self) -> float | None:
        if self.first_content_at is None:
            return None
        return (self.first_content_at - self.sent_at) * 1000


def request_body(prompt: str, max_tokens: int | None = None) -> bytes:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}], "stream": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return json.dumps(body).encode()


def _absorb(result: StreamResult, event: bytes, parts: list[str] | None) -> None:
    """Fold one SSE event (`data: {...}`) into `result`; `parts=None` skips the text."""
    if not event.startswith(b"data: "):
        # Fields before the data (jarvis puts `id: N` first in every event): skip them.
        start = event.find(b"\ndata: ")
        if start < 0:
            return
        event = event[start + 1 :]
    if event == DONE_EVENT:
        result.done = True
        return
    result.chunks += 1
    if parts is None and b'"jarvis":' not in event:
        # Cheap mode for background streams: count the chunk, decode nothing.
        if result.first_content_at is None:
            result.first_content_at = time.monotonic()
        return
    chunk = json.loads(event[6:])
    for choice in chunk.get("choices", ()):
        content = choice.get("delta", {}).get("content")
        if content:
            if result.first_content_at is None:
                result.first_content_at = time.monotonic()
            result.content_chunks += 1
            if parts is not None:
                parts.append(content)
    extra = chunk.get("jarvis")
    if extra is not None:
        result.end_reason = extra.get("end_reason")


async def stream_chat(
    session: aiohttp.ClientSession,
    url: str,
    prompt: str,
    *,
    session_id: str | None = None,
    max_tokens: int | None = None,
    deadline_s: float = 60.0,
    first_content: asyncio.Event | None = None,
    keep_text: bool = True,
) -> StreamResult:
    """POST a streaming chat request and read it to `[DONE]` (or EOF), within `deadline_s`.

    `first_content` is set as soon as the first content token arrives, so a
    caller can hold a stream open and act while it is still streaming.
    `keep_text=False` decodes only the terminal chunk (cheap background load).
    Errors are recorded in the result, never raised.
    """
    headers = {"content-type": "application/json"}
    if session_id is not None:
        headers["x-session-id"] = session_id
    result = StreamResult()
    parts: list[str] | None = [] if keep_text else None
    result.sent_at = time.monotonic()
    try:
        async with (
            asyncio.timeout(deadline_s),
            session.post(
                f"{url}/v1/chat/completions",
                data=request_body(prompt, max_tokens),
                headers=headers,
            ) as response,
        ):
            result.status = response.status
            pending = b""
            async for data in response.content.iter_any():
                pending += data
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    _absorb(result, event, parts)
                if first_content is not None and result.first_content_at is not None:
                    first_content.set()
            if pending.strip():
                _absorb(result, pending.strip(), parts)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if first_content is not None:
            first_content.set()  # never leave a waiter hanging on a failed stream
    result.text = "".join(parts or ())
    result.ended_at = time.monotonic()
    return result


def new_session(connections: int, *, fresh_connections: bool = False) -> aiohttp.ClientSession:
    """A client session allowed `connections` concurrent connections to one host.

    `fresh_connections` opens a new connection per request (no keep-alive
    reuse), so that every timed request pays the same connect cost.
    """
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=connections, force_close=fresh_connections
    )
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `main()` on uvloop when available (cheaper per event), else asyncio.

    SIGTERM cancels `main()` and exits 143, so the caller's `finally` still
    stops its servers (a signal handler raising inside uvloop's callbacks
    would be swallowed as a transport error instead).
    """
    terminated = False

    async def guarded() -> T:
        nonlocal terminated
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await main()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)

    try:
        import uvloop
    except ImportError:
        runner: Callable[[Coroutine[Any, Any, T]], T] = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(guarded())
    except asyncio.CancelledError:
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
