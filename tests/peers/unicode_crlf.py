"""Starlette writing SSE as sse-starlette does: every line ends in CRLF and events are
separated by a blank CRLF line. Tokens carry U+2028, U+2029 and U+0085 raw
(`ensure_ascii=False`); VT, FF and FS/GS/RS, which JSON must escape, go raw in a
comment line. Correct one stream per `X-Session-Id`.

    python -m tests.peers.unicode_crlf --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

#: Line and record separators that `str.splitlines()` honours and SSE does not.
ODD = ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
sessions = Sessions()


def _event(trace: str, delta: dict[str, str], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    chunk = {"id": trace, "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\r\n\r\n".encode()


async def models(_: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    words = tokens(prompt_of(body), max_tokens_of(body))

    async def answer() -> AsyncIterator[bytes]:
        async with sessions.turn(request.headers.get("x-session-id")) as cancel:
            # A keep-alive comment, as sse-starlette sends. JSON escapes C0 controls in
            # strings, so the raw VT, FF and FS/GS/RS travel here, where SSE allows them.
            yield f": ping{''.join(ODD)}\r\n\r\n".encode()
            for i, word in enumerate(words if cancel is not None else ()):
                if cancel.is_set():
                    break
                yield _event(trace, {"content": word + ODD[i % len(ODD)]})
                await asyncio.sleep(PACE_S)
            yield _event(trace, {}, "stop")
            yield b"data: [DONE]\r\n\r\n"

    return StreamingResponse(answer(), media_type="text/event-stream")


app = Starlette(
    routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])]
)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
