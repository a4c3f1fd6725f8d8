"""aiohttp.web with a token queue per session that is reused, not reset: a producer task
puts tokens on the session's queue faster than the response writes them, and when a new
prompt supersedes the stream, the tokens it never wrote stay queued and open the next
answer of the session. One stream per `X-Session-Id` otherwise (nothing runs at once,
nothing hangs), superseded streams end `finish_reason: "stop"` and `[DONE]`: only the
text of the next answer tells.

    python -m tests.peers.leftover_tokens --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

from ._fence import Sessions
from ._synth import MODEL, PACE_S, listen, max_tokens_of, parse_args, prompt_of, tokens

sessions = Sessions()
#: session -> its token queue, kept for the session's life: the bug.
queues: dict[str, asyncio.Queue[str | None]] = {}


def _chunk(trace: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'id': trace, 'choices': [choice]})}\n\n".encode()


async def _produce(
    queue: asyncio.Queue[str | None], words: list[str], cancel: asyncio.Event
) -> None:
    """The model: twice as fast as the writer, so tokens queue up; None ends an answer."""
    for word in words:
        if cancel.is_set():
            return
        queue.put_nowait(word)
        await asyncio.sleep(PACE_S / 2)
    queue.put_nowait(None)


async def _next(queue: asyncio.Queue[str | None], cancel: asyncio.Event) -> str | None:
    """The next queued token, or None when the answer ended or the stream was superseded."""
    if cancel.is_set():
        return None
    get = asyncio.ensure_future(queue.get())
    stop = asyncio.ensure_future(cancel.wait())
    done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if get in done:
        return get.result()
    get.cancel()
    return None


async def models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    session = request.headers.get("X-Session-Id")
    words = tokens(prompt_of(body), max_tokens_of(body))
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    queue = queues.setdefault(session, asyncio.Queue()) if session else asyncio.Queue()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    async with sessions.turn(session) as cancel:
        if cancel is not None:
            producer = asyncio.create_task(_produce(queue, words, cancel))
            try:
                while (word := await _next(queue, cancel)) is not None:
                    await response.write(_chunk(trace, word))
                    await asyncio.sleep(PACE_S)
            finally:
                producer.cancel()
    await response.write(_chunk(trace, None, "stop") + b"data: [DONE]\n\n")
    return response


def main() -> None:
    args = parse_args(__doc__ or "")
    app = web.Application()
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat)])
    web.run_app(app, sock=listen(args.port), print=None)


if __name__ == "__main__":
    main()
