"""The CPU baseline: a bare Starlette `StreamingResponse` emitting jarvis's exact SSE bytes.

Same uvicorn settings as `jarvis serve` (uvloop/httptools auto, no access log,
keep-alive 5 s), same token text, the same bytes per chunk (its own encoder,
built the way jarvis's is: the constant part once per stream), one loop yield
per token; nothing else: no registry, batcher, log. Log level info, where
jarvis serve has warning, only so that uvicorn says at startup the port it
bound ("Uvicorn running on http://127.0.0.1:PORT", read by tests/processes.py):
without the access log, uvicorn logs nothing at info per request.
It uses nothing of jarvis but the synthetic model's text, so the same
baseline measures any commit (`run_at_commit.sh`).
Run: `python benchmarks/_bare_server.py --port 0`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from jarvis.synthetic import expected_tokens

_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


async def chat_completions(request: Request) -> Response:
    chat = json.loads(await request.body())
    prompt = chat["messages"][-1]["content"]
    model = chat.get("model", "jarvis-synthetic")
    stream_id = "chatcmpl-" + secrets.token_hex(12)
    tokens = expected_tokens(prompt, chat.get("max_tokens"))
    head = _dumps({"id": stream_id, "object": "chat.completion.chunk", "created": int(time.time())})
    head = head[:-1] + ',"model":' + _dumps(model)
    first = "data: " + head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":'
    rest = ("data: " + head + ',"choices":[{"index":0,"delta":{"content":').encode()
    tail = b'},"finish_reason":null}]}\n\n'
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    end["jarvis"] = {"end_reason": "completed"}  # type: ignore[assignment]
    last = ("data: " + head + "," + _dumps(end)[1:] + "\n\ndata: [DONE]\n\n").encode()

    async def body() -> AsyncIterator[bytes]:
        prefix = first.encode()
        for token in tokens:
            await asyncio.sleep(0)  # as the synthetic model does at --token-rate 0
            yield prefix + json.dumps(token).encode() + tail
            prefix = rest
        yield last

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
    parser.add_argument("--port", type=int, required=True, help="0: any free port, printed")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",  # for the startup line only: see the docstring
        access_log=False,
        timeout_keep_alive=5,
        backlog=2048,
    )


if __name__ == "__main__":
    main()
