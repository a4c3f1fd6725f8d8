"""Starlette class-based endpoints; the session travels in the JSON body at
`metadata.session_id` (headers are ignored). One stream per session, superseded
streams end with `finish_reason: "stop"` and `[DONE]`.

    python -m tests.peers.body_session --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

sessions = Sessions()


def _session_of(body: object) -> str | None:
    metadata = body.get("metadata") if isinstance(body, dict) else None
    session = metadata.get("session_id") if isinstance(metadata, dict) else None
    return session if isinstance(session, str) else None


class Models(HTTPEndpoint):
    async def get(self, _: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


class Completions(HTTPEndpoint):
    async def post(self, request: Request) -> StreamingResponse:
        body = await request.json()
        trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        words = tokens(prompt_of(body), max_tokens_of(body))

        def event(delta: dict[str, str], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {"id": trace, "object": "chat.completion.chunk", "choices": [choice]}
            return f"data: {json.dumps(chunk)}\n\n"

        async def answer() -> AsyncIterator[str]:
            async with sessions.turn(_session_of(body)) as cancel:
                yield event({"role": "assistant"})
                for word in words if cancel is not None else ():
                    if cancel.is_set():
                        break
                    yield event({"content": word})
                    await asyncio.sleep(PACE_S)
                yield event({}, "stop")
                yield "data: [DONE]\n\n"

        return StreamingResponse(answer(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/models", Models), Route("/v1/chat/completions", Completions)])


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
