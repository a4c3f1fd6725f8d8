"""An engine with sessions in front (FastAPI + StreamingResponse, one stream per
`X-Session-Id`) and its busy gauge: `GET /metrics` exposes llama.cpp's
`llamacpp:requests_processing`, the answers being decoded now. A superseded or abandoned
answer stops at once and leaves the gauge.

    python -m tests.peers.engine_gauge --port 8001

`make_app(ghost_s)` is the same engine with ghost requests (tests/peers/ghost_requests.py):
an answer nobody reads any more stays on the gauge for `ghost_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, prompt_of, serve, tokens
from .stop_done import chunk

GAUGE = "llamacpp:requests_processing"


def make_app(ghost_s: float = 0.0, pace_s: float = PACE_S) -> FastAPI:
    """The engine, a token every `pace_s`; with `ghost_s`, an answer cut short (superseded,
    or its client gone) is still counted as processing for that long after its stream
    ended."""
    app = FastAPI()
    sessions = Sessions()
    processing = 0

    def done() -> None:
        nonlocal processing
        processing -= 1

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = (
            f"# HELP {GAUGE} Number of requests processing.\n"
            f"# TYPE {GAUGE} gauge\n{GAUGE} {processing}\n"
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        session = request.headers.get("x-session-id")
        words = tokens(prompt_of(body), max_tokens_of(body))
        stream_id = f"chatcmpl-{uuid.uuid4().hex[:16]}"

        async def answer() -> AsyncIterator[str]:
            nonlocal processing
            async with sessions.turn(session) as cancel:
                yield chunk(stream_id, "")
                if cancel is None:
                    yield chunk(stream_id, None, "stop")
                    yield "data: [DONE]\n\n"
                    return
                processing += 1
                finished = False
                try:
                    for word in words:
                        if cancel.is_set():
                            break
                        yield chunk(stream_id, word)
                        await asyncio.sleep(pace_s)
                    else:
                        finished = True
                    yield chunk(stream_id, None, "stop")
                    yield "data: [DONE]\n\n"
                finally:
                    if finished or ghost_s <= 0:
                        done()
                    else:  # the engine decodes on for nobody
                        asyncio.get_running_loop().call_later(ghost_s, done)

        return StreamingResponse(answer(), media_type="text/event-stream")

    return app


app = make_app()


def main() -> None:
    """`--port N`, and `--pace-ms` for an engine slower than the peers' default pace."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pace-ms", type=float, default=PACE_S * 1000)
    args = parser.parse_args()
    serve(app if args.pace_ms == PACE_S * 1000 else make_app(pace_s=args.pace_ms / 1000), args.port)


if __name__ == "__main__":
    main()
