"""Server-Sent Events for chat completions: chunk encoding and the two emitters.

`SSEEmitter` writes to an ASGI `send` with a bound on every write and
honours the fence: once a stream is fenced, or its client is gone, nothing
more is written. `CollectingEmitter` gathers text for `stream: false`.

The bound on token writes is one `SendWatch` task for the whole server rather
than an `asyncio.timeout` per write (a timer per token was a fifth of the
server's CPU in token-by-token mode) or a task per stream (a cancelled task
keeps a traceback that points back at its emitter: a reference cycle per
stream, freed only by full GC passes that stalled the loop for 50-400 ms).
The request task's own writes (the cleanup flush, the terminal chunk) keep
`asyncio.timeout`, so the watch never cancels the task running a `finally`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from .stream import StreamHandle
from .types import Send
from .vocabulary import EndReason

DONE = b"data: [DONE]\n\n"


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ChunkEncoder:
    """Encodes `chat.completion.chunk` events; the chunk `id` is the stream id.

    The constant part of every chunk is encoded once per stream, so a token
    costs one `json.dumps` of its text.
    """

    def __init__(self, stream_id: str, model: str, created: int) -> None:
        head = {"id": stream_id, "object": "chat.completion.chunk", "created": created}
        self._head = _dumps(head)[:-1] + ',"model":' + _dumps(model)
        self._content_first = (
            "data: " + self._head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":'
        ).encode()
        self._content = (
            "data: " + self._head + ',"choices":[{"index":0,"delta":{"content":'
        ).encode()
        self._tail = b'},"finish_reason":null}]}\n\n'
        self._first = True

    def content(self, text: str) -> bytes:
        prefix = self._content_first if self._first else self._content
        self._first = False
        return prefix + json.dumps(text).encode() + self._tail

    def _event(self, extra: dict[str, Any]) -> bytes:
        return ("data: " + self._head + "," + _dumps(extra)[1:] + "\n\n").encode()

    def finish(self, finish_reason: str, end_reason: EndReason, error: str | None = None) -> bytes:
        extra: dict[str, Any] = {
            "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
            "jarvis": {"end_reason": end_reason.value},
        }
        if error is not None:
            extra["error"] = {"message": error, "type": "upstream_error"}
        return self._event(extra)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._event(
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


def finish_reason_for(reason: EndReason, *, hit_max_tokens: bool) -> str:
    """OpenAI's `finish_reason` for how a stream ended."""
    if reason is EndReason.COMPLETED:
        return "length" if hit_max_tokens else "stop"
    return "error" if reason is EndReason.ERROR else "cancelled"


class SendWatch:
    """One task that ends token writes stuck longer than `send_timeout`, for all streams.

    It runs only while some stream is registered, checking four times per timeout.
    """

    def __init__(self, send_timeout: float) -> None:
        self.send_timeout = send_timeout
        self._emitters: set[SSEEmitter] = set()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<SendWatch streams={len(self._emitters)} timeout={self.send_timeout}s>"

    def add(self, emitter: SSEEmitter) -> None:
        self._emitters.add(emitter)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, emitter: SSEEmitter) -> None:
        self._emitters.discard(emitter)

    async def _run(self) -> None:
        try:
            while self._emitters:
                await asyncio.sleep(self.send_timeout / 4)
                now = time.monotonic()
                for emitter in list(self._emitters):
                    emitter.check_send(now)
        finally:
            self._task = None


class SSEEmitter:
    """Writes one stream's SSE response; every write is bounded by `send_timeout`."""

    def __init__(
        self,
        send: Send,
        handle: StreamHandle,
        encoder: ChunkEncoder,
        *,
        send_timeout: float,
        on_send_timeout: Callable[[], object],
        headers: list[tuple[bytes, bytes]],
        watch: SendWatch,
        include_usage: bool = False,
    ) -> None:
        self._send = send
        self._include_usage = include_usage
        self._handle = handle
        self._encoder = encoder
        self._send_timeout = send_timeout
        self._on_send_timeout = on_send_timeout
        self._headers = headers
        self.started = False
        self.closed = False
        self._owner: asyncio.Task[object] | None = None
        self._watch = watch
        self._sending_since: float | None = None
        self._sender: asyncio.Task[object] | None = None

    async def start(self) -> None:
        self.started = True
        self._owner = asyncio.current_task()
        await self._send(
            {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self._headers}
        )
        self._watch.add(self)

    async def token(self, text: str) -> bool:
        """One token from the producer task, token by token: the hot path.

        The producer is never the request task, so the send watch bounds it;
        the sender stays recorded between tokens (it is the same task).
        """
        if self.closed or self._handle.fenced:
            return False
        if self._sender is None:
            self._sender = asyncio.current_task()
        self._sending_since = time.monotonic()
        try:
            await self._send(
                {
                    "type": "http.response.body",
                    "body": self._encoder.content(text),
                    "more_body": True,
                }
            )
        except OSError:
            self.closed = True
            return False
        finally:
            self._sending_since = None
        return True

    async def tokens(self, text: str, count: int) -> bool:
        if self.closed or self._handle.fenced:
            return False
        body = self._encoder.content(text)
        task = asyncio.current_task()
        if task is self._owner:
            return await self._write(body)
        # Producer or debounce task: bounded by the send watch, which cancels it if stuck.
        self._sender = task
        self._sending_since = time.monotonic()
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            self.closed = True
            return False
        finally:
            self._sending_since = None
            self._sender = None
        return True

    def check_send(self, now: float) -> None:
        """Called by the `SendWatch`: end a token write stuck past the send timeout."""
        since = self._sending_since
        if self.closed or since is None or now - since < self._send_timeout:
            return
        self.closed = True
        self._on_send_timeout()
        if self._sender is not None:
            self._sender.cancel()

    def stop(self) -> None:
        """The stream is over: leave the send watch, drop task references."""
        self._watch.discard(self)
        self._owner = self._sender = None

    async def finish(
        self,
        reason: EndReason,
        finish_reason: str,
        usage: tuple[int, int] | None,
        error: str | None,
    ) -> None:
        """Terminal chunk, usage, `[DONE]`; nothing at all once fenced or broken."""
        if self.closed:
            return
        if not self.started:
            await self.start()
        if self._handle.fenced:
            self.closed = True
            return  # not one more byte: the connection is dropped without a terminator
        body = self._encoder.finish(finish_reason, reason, error)
        if usage is not None and self._include_usage:
            body += self._encoder.usage(*usage)
        if await self._write(body + DONE, more=False):
            self.closed = True

    async def _write(self, body: bytes, *, more: bool = True) -> bool:
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._send({"type": "http.response.body", "body": body, "more_body": more})
        except TimeoutError:
            self.closed = True
            self._on_send_timeout()
            return False
        except OSError:
            self.closed = True
            return False
        return True


class CollectingEmitter:
    """Gathers a whole completion for `stream: false`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.reason: EndReason | None = None
        self.finish_reason = "stop"
        self.usage: tuple[int, int] | None = None
        self.error: str | None = None

    async def start(self) -> None:
        return None

    async def token(self, text: str) -> bool:
        self.parts.append(text)
        return True

    async def tokens(self, text: str, count: int) -> bool:
        self.parts.append(text)
        return True

    async def finish(
        self,
        reason: EndReason,
        finish_reason: str,
        usage: tuple[int, int] | None,
        error: str | None,
    ) -> None:
        self.reason = reason
        self.finish_reason = finish_reason
        self.usage = usage
        self.error = error

    def body(self, stream_id: str, model: str, created: int, prompt_tokens: int) -> bytes:
        completion = self.usage[1] if self.usage else 0
        payload: dict[str, Any] = {
            "id": stream_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self.parts)},
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            },
            "jarvis": {"end_reason": self.reason.value if self.reason else None},
        }
        if self.error is not None:
            payload["error"] = {"message": self.error, "type": "upstream_error"}
        return _dumps(payload).encode()
