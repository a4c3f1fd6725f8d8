"""The CPU baseline: a bare Starlette `StreamingResponse` emitting jarvis's exact SSE bytes.

Same uvicorn settings as `jarvis serve` (uvloop/httptools auto, log level
warning, no access log, keep-alive 5 s), same token text, same chunk
encoder, one loop yield per token; nothing else: no registry, batcher, log.
Run: `python benchmarks/_bare_server.py --port 8001`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from jarvis import OpenAIChunks, StreamEnd
from jarvis._stream import new_stream_id
from jarvis.server.chat import parse_chat_request
from jarvis.synthetic import expected_tokens
from jarvis.vocabulary import EndReason

_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def chat_completions(request: Request) -> Response:
    chat = parse_chat_request(await request.body())
    stream_id = new_stream_id()
    encoder = OpenAIChunks(chat.model, created=int(time.time()))(stream_id)
    tokens = expected_tokens(chat.prompt, chat.max_tokens)

    async def body() -> AsyncIterator[bytes]:
        for token in tokens:
            await asyncio.sleep(0)  # as the synthetic model does at --token-rate 0
            yield encoder.content(token)
        yield encoder.end(StreamEnd(EndReason.COMPLETED, len(tokens)))

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={**_HEADERS, "x-stream-id": stream_id},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
