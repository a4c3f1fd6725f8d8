"""A raw ASGI app with a model that is not deterministic: each answer has its own
length, from an eighth of `max_tokens` to all of it, and its own words. Correct: one
stream per `X-Session-Id`, and every stream, superseded or not, ends
`finish_reason: "stop"` and `[DONE]`, so neither length nor ending tells a cut answer
from a whole one; only timing does.

    python -m tests.peers.varying_lengths --port 8001
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._fence import Sessions
from ._synth import DEFAULT_MAX_TOKENS, MODEL, PACE_S, max_tokens_of, parse_args, serve

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")  # fmt: skip
#: The shortest answer is this fraction of max_tokens: lengths vary up to 8x.
SHORTEST = 1 / 8
sessions = Sessions()


def sample(max_tokens: int | None) -> list[str]:
    """An answer of random length and words."""
    most = DEFAULT_MAX_TOKENS if max_tokens is None else max(max_tokens, 1)
    count = random.randint(max(1, round(most * SHORTEST)), most)
    words = [random.choice(WORDS) for _ in range(count)]
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def _event(trace: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"id": trace, "choices": [choice]}).encode() + b"\n\n"


async def _json(send: Send, status: int, document: object) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": json.dumps(document).encode()})


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    route = (scope["method"], scope["path"])
    if route == ("GET", "/v1/models"):
        await _json(send, 200, {"object": "list", "data": [{"id": MODEL}]})
        return
    if route != ("POST", "/v1/chat/completions"):
        await _json(send, 404, {"error": "not found"})
        return
    raw, more = b"", True
    while more:
        message = await receive()
        raw, more = raw + message.get("body", b""), message.get("more_body", False)
    body = json.loads(raw or b"{}")
    session = dict(scope["headers"]).get(b"x-session-id")
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
    async with sessions.turn(session.decode("latin-1") if session else None) as cancel:
        for word in sample(max_tokens_of(body)) if cancel is not None else ():
            if cancel.is_set():
                break
            await send({"type": "http.response.body", "body": _event(trace, word),
                        "more_body": True})  # fmt: skip
            await asyncio.sleep(PACE_S)
    await send({"type": "http.response.body",
                "body": _event(trace, None, "stop") + b"data: [DONE]\n\n"})  # fmt: skip


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
