"""A correct Starlette server behind a pure ASGI middleware that wants an API key, as
hosted APIs do: `Authorization: Bearer peer-secret` or `X-Api-Key: peer-secret` on every
request but `GET /health`, else 401 with a JSON error. One stream per `X-Session-Id`;
superseded streams end `finish_reason: "stop"` and `[DONE]`.

    python -m tests.peers.auth_required --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

#: The one key this server takes.
API_KEY = "peer-secret"
OPEN_PATHS = frozenset({"/health"})

Message = MutableMapping[str, Any]
ASGI = Callable[[Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                Awaitable[None]]  # fmt: skip
sessions = Sessions()


def _chunk(trace: str, content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'id': trace, 'model': MODEL, 'choices': [choice]})}\n\n"


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def models(_: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    session = request.headers.get("x-session-id")
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    words = tokens(prompt_of(body), max_tokens_of(body))

    async def answer() -> AsyncIterator[str]:
        async with sessions.turn(session) as cancel:
            for word in words if cancel is not None else ():
                if cancel.is_set():
                    break
                yield _chunk(trace, word)
                await asyncio.sleep(PACE_S)
        yield _chunk(trace, None, "stop") + "data: [DONE]\n\n"

    return StreamingResponse(answer(), media_type="text/event-stream")


def require_key(app: ASGI) -> ASGI:
    """401 for any HTTP request outside OPEN_PATHS that does not carry the key."""

    async def guarded(scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if API_KEY in (headers.get("authorization", "").removeprefix("Bearer "),
                       headers.get("x-api-key")):  # fmt: skip
            await app(scope, receive, send)
            return
        error = {"error": {"message": "missing or wrong API key", "type": "authentication_error"}}
        await JSONResponse(error, status_code=401)(scope, receive, send)

    return guarded


app = require_key(
    Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
