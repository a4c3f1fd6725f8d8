"""aiohttp.web with the original server's registry made race-free: one entry per
session and a generation fence, so only the newest prompt of a burst registers. A
cancelled stream just stops: no finish chunk, no `[DONE]`. Logs the original server's
bare vocabulary through stdlib `logging` to `--log-file`.

    python -m tests.peers.plain_close --port 8001 --log-file peer.log
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from ._synth import (
    CANCEL_WAIT_S,
    MODEL,
    PACE_S,
    listen,
    max_tokens_of,
    parse_args,
    prompt_of,
    tokens,
)

log = logging.getLogger("peer.plain_close")


@dataclass
class _Entry:
    trace: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StreamRegistry:
    """session -> the one live stream, plus how many prompts the session has seen."""

    def __init__(self) -> None:
        self._live: dict[str, _Entry] = {}
        self._generation: dict[str, int] = {}

    async def register(self, session: str, trace: str) -> _Entry | None:
        """The new stream's entry, or None if a newer prompt arrived while this one waited."""
        mine = self._generation[session] = self._generation.get(session, 0) + 1
        prev = self._live.get(session)
        if prev is not None:
            if not prev.cancel.is_set():
                prev.cancel.set()
                log.info("stream_cancelled trace=%s reason=registry_new_stream", prev.trace)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_WAIT_S):
                    await prev.done.wait()
                    log.info("prev_stream_finished_cleanly session=%s", session)
        if self._generation[session] != mine:
            return None
        entry = self._live[session] = _Entry(trace)
        return entry

    def pop(self, session: str, entry: _Entry) -> None:
        entry.done.set()
        if self._live.get(session) is entry:
            del self._live[session]


registry = StreamRegistry()
#: Cleanup awaits a debounced flush, as the original server's does: the window in which a burst's
#: later prompts all wait on the same old stream, and the fence picks the newest.
FLUSH_DEBOUNCE_S = 0.075


def _data(event: object) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _chunk(trace: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return _data({"id": trace, "object": "chat.completion.chunk", "choices": [choice]})


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    session = request.headers.get("X-Session-Id") or f"anon-{uuid.uuid4().hex[:8]}"
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(
        _data({"id": trace, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    )
    entry = await registry.register(session, trace)
    if entry is None:
        return response  # superseded before it began: the response simply ends
    started = time.monotonic()
    log.info("stream_start trace=%s session=%s", trace, session)
    try:
        for word in tokens(prompt_of(body), max_tokens_of(body)):
            if entry.cancel.is_set():
                break
            await response.write(_chunk(trace, word))
            await asyncio.sleep(PACE_S)
        else:
            await response.write(_chunk(trace, None, "stop") + b"data: [DONE]\n\n")
    finally:
        await asyncio.sleep(FLUSH_DEBOUNCE_S)
        registry.pop(session, entry)
        duration_ms = round((time.monotonic() - started) * 1000)
        log.info("stream_end trace=%s duration_ms=%d", trace, duration_ms)
    return response


def main() -> None:
    args = parse_args(__doc__ or "")
    handler = logging.FileHandler(args.log_file) if args.log_file else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    app = web.Application()
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat)])
    web.run_app(app, sock=listen(args.port), print=None)


if __name__ == "__main__":
    main()
