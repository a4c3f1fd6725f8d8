"""Starlette with a fixed number of slots, as llama.cpp's server has (`--parallel 4`):
the first 4 prompts stream, every other one waits in a first-come queue with its
response head sent and no byte more until a slot frees. Prompts never supersede each
other (`--expect independent`); answers are deterministic. Under load it is slow: the
queue's wait exceeds a short --deadline, yet nothing ever hangs.

    python -m tests.peers.slots --port 8001
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

from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

SLOTS = 4
#: Made in the server's loop: the prompts that stream at once.
slots: asyncio.Semaphore | None = None


def _slots() -> asyncio.Semaphore:
    global slots  # noqa: PLW0603 - one per process, made once the loop runs
    if slots is None:
        slots = asyncio.Semaphore(SLOTS)
    return slots


def _chunk(trace: str, content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'id': trace, 'model': MODEL, 'choices': [choice]})}\n\n"


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "slots": SLOTS})


async def models(_: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    words = tokens(prompt_of(body), max_tokens_of(body))
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"

    async def answer() -> AsyncIterator[str]:
        async with _slots():
            for word in words:
                yield _chunk(trace, word)
                await asyncio.sleep(PACE_S)
            yield _chunk(trace, None, "stop") + "data: [DONE]\n\n"

    return StreamingResponse(answer(), media_type="text/event-stream")


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
