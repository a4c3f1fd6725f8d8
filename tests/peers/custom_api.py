"""aiohttp.web speaking a made-up chat API: `POST /api/chat` with `message`,
`conversation_id` and `max_tokens`; SSE `event: token` + `data: {"delta": {"text": ...}}`,
ending with `event: done` + `data: {}` (superseded streams too); `GET /api/ping`.

    python -m tests.peers.custom_api --port 8001
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from ._fence import Sessions
from ._synth import PACE_S, listen, parse_args, tokens

sessions = Sessions()


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def ping(_: web.Request) -> web.Response:
    return web.Response(text="pong")


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return web.json_response({"error": "message is required"}, status=422)
    limit = body.get("max_tokens")
    words = tokens(body["message"], limit if isinstance(limit, int) else None)
    conversation = body.get("conversation_id")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    async with sessions.turn(conversation if isinstance(conversation, str) else None) as cancel:
        for word in words if cancel is not None else ():
            if cancel.is_set():
                break
            await response.write(_sse("token", {"delta": {"text": word}}))
            await asyncio.sleep(PACE_S)
        await response.write(_sse("done", {}))
    return response


def main() -> None:
    args = parse_args(__doc__ or "")
    app = web.Application()
    app.add_routes([web.get("/api/ping", ping), web.post("/api/chat", chat)])
    web.run_app(app, sock=listen(args.port), print=None)


if __name__ == "__main__":
    main()
