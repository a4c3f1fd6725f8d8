"""A raw ASGI callable with a correct one-stream-per-session registry, served by
`uvicorn --workers 2`: each worker process has its own registry, so two prompts of one
session that land in different workers never meet, and both stream.

    python -m tests.peers.per_process --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, tokens

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WORKERS = 2


def _event(trace: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    chunk = {"id": trace, "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def _body(receive: Receive) -> bytes:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def _send_json(send: Send, status: int, document: object) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(document).encode()})


def create_app() -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """One app per worker process, and with it one registry per process."""
    sessions = Sessions()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            await _send_json(send, 200, {"object": "list", "data": [{"id": MODEL}]})
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await _send_json(send, 404, {"error": "not found"})
            return
        body = json.loads(await _body(receive) or b"{}")
        session = dict(scope["headers"]).get(b"x-session-id")
        trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with sessions.turn(session.decode("latin-1") if session else None) as cancel:
            await send({"type": "http.response.body", "body": _event(trace, ""), "more_body": True})
            for word in tokens(prompt_of(body), max_tokens_of(body)) if cancel is not None else ():
                if cancel.is_set():
                    break
                chunk = _event(trace, word)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(PACE_S)
            await send({"type": "http.response.body", "body": _event(trace, None, "stop")
                        + b"data: [DONE]\n\n"})  # fmt: skip

    return app


def main() -> None:
    args = parse_args(__doc__ or "")
    uvicorn.run(
        "tests.peers.per_process:create_app",
        factory=True,
        workers=WORKERS,
        host="127.0.0.1",
        port=args.port,
        # uvicorn's supervisor binds the socket; at info it announces the real port
        # (tests/processes.py reads it back), and access_log off keeps the rest quiet.
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
