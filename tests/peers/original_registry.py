"""Plain Starlette routes around the original server's StreamRegistry exactly as written: the
previous task is read inside the lock, awaited outside it, and the new stream registered
inside it again. Two prompts work; with three or more, every waiter wakes when the first
stream ends and all of them register and stream at once.

    python -m tests.peers.original_registry --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ._synth import (
    CANCEL_WAIT_S,
    MODEL,
    PACE_S,
    max_tokens_of,
    parse_args,
    prompt_of,
    serve,
    tokens,
)


class StreamRegistry:
    """The original registry: `register()` waits for the old stream, `pop()` unregisters."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._by_session: dict[str, str] = {}
        self._by_trace: dict[str, dict[str, Any]] = {}

    async def register(self, session: str, new_id: str, cancel_event: asyncio.Event) -> None:
        prev_task = None
        # STEP 1: get the reference (quick, inside the lock)
        async with self._lock:
            old_id = self._by_session.get(session)
            if old_id is not None and old_id in self._by_trace:
                self._by_trace[old_id]["cancel"].set()
                prev_task = self._by_trace[old_id]["task"]
        # STEP 2: wait for cleanup (slow, OUTSIDE the lock): the race lives here
        if prev_task is not None:
            try:
                await asyncio.wait_for(prev_task, timeout=CANCEL_WAIT_S)
            except TimeoutError:
                pass  # the original logs prev_stream_timeout_on_cancel and goes on
            except asyncio.CancelledError:
                if not prev_task.cancelled():
                    raise  # this request was cancelled, not the one it waited for
        # STEP 3: register the new stream (quick, inside the lock)
        async with self._lock:
            self._by_session[session] = new_id
            self._by_trace[new_id] = {"task": asyncio.current_task(), "cancel": cancel_event}

    async def pop(self, session: str, trace: str) -> None:
        async with self._lock:
            self._by_trace.pop(trace, None)
            if self._by_session.get(session) == trace:
                del self._by_session[session]


registry = StreamRegistry()
#: The original server flushes buffered tokens with a 75 ms debounce, and cleanup
#: awaits that flush: the window in which a third prompt finds the first still there.
FLUSH_DEBOUNCE_S = 0.075


def _chunk(trace: str, content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    event = {"id": trace, "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]}
    return f"data: {json.dumps(event)}\n\n"


async def models(_: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    session = request.headers.get("x-session-id") or uuid.uuid4().hex
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    words = tokens(prompt_of(body), max_tokens_of(body))

    async def generate() -> AsyncIterator[str]:
        cancel_event = asyncio.Event()
        await registry.register(session, trace, cancel_event)
        try:
            yield _chunk(trace, "")
            for word in words:
                if cancel_event.is_set():
                    break
                yield _chunk(trace, word)
                await asyncio.sleep(PACE_S)
            yield _chunk(trace, None, "stop")
            yield "data: [DONE]\n\n"
        finally:
            await asyncio.sleep(FLUSH_DEBOUNCE_S)  # flush_on_cleanup
            await registry.pop(session, trace)

    return StreamingResponse(generate(), media_type="text/event-stream")


app = Starlette(
    routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
