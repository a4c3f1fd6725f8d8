"""A raw ASGI class that ignores sessions: every prompt streams to completion on its
own, side by side with whatever else the same session asked (most public servers).

    python -m tests.peers.no_sessions --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Independent:
    """Routes by hand; keeps no state between requests at all."""

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = (scope["method"], scope["path"])
        if route == ("GET", "/v1/models"):
            await self._json(send, {"object": "list", "data": [{"id": MODEL}]})
        elif route == ("POST", "/v1/chat/completions"):
            await self._stream(receive, send)
        else:
            await self._json(send, {"error": "not found"}, status=404)

    async def _json(self, send: Send, document: object, status: int = 200) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(document).encode()})

    async def _stream(self, receive: Receive, send: Send) -> None:
        raw, more = b"", True
        while more:
            message = await receive()
            raw, more = raw + message.get("body", b""), message.get("more_body", False)
        body = json.loads(raw or b"{}")
        trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for word in tokens(prompt_of(body), max_tokens_of(body)):
            await self._event(send, trace, {"content": word}, None)
            await asyncio.sleep(PACE_S)
        await self._event(send, trace, {}, "stop")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _event(self, send: Send, trace: str, delta: dict[str, str], end: str | None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": end}
        chunk = {"id": trace, "object": "chat.completion.chunk", "choices": [choice]}
        data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": data, "more_body": True})


app = Independent()


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
