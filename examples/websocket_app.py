"""A chat server over a WebSocket, on `guard.stream`: the guard's lifecycle without SSE.

One connection is one session. The client sends `{"prompt": "..."}`; the server
answers with `{"type": "token", "stream": id, "text": ...}` messages and one
`{"type": "end", "stream": id, "reason": ...}`. A prompt sent while an answer
streams supersedes it: the old answer's `end` arrives before the new one's first
token, never after.

    python examples/websocket_app.py      # ws://127.0.0.1:8000/chat
"""

import asyncio
import json
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from jarvis import GuardedStream, StreamEnd, StreamGuard

guard = StreamGuard(cancel_wait=2.0, flush_ms=75)
WORDS = ["a", "stand", "in", "model", "streams", "words", "like", "these"]


async def generate(prompt: str) -> AsyncIterator[str]:
    """A stand-in model: deterministic words 20 ms apart."""
    for i in range(60 if "long" in prompt.lower() else 8):
        await asyncio.sleep(0.02)
        yield WORDS[i % len(WORDS)] + " "


async def answer(ws: WebSocket, session: str, prompt: str, live: set[GuardedStream]) -> None:
    async def write(text: str) -> None:
        await ws.send_text(json.dumps({"type": "token", "stream": s.id, "text": text}))

    async def end(e: StreamEnd) -> None:
        await ws.send_text(json.dumps({"type": "end", "stream": s.id, "reason": e.reason.value}))

    s = guard.stream(session, write, end=end, prompt=prompt)
    live.add(s)
    try:
        async with s:
            if s.cancelled:  # a newer prompt came first: never start the model
                return
            async for token in generate(prompt):
                if not await s.send(token):  # superseded or gone: stop pulling tokens
                    break
    finally:
        live.discard(s)


async def chat(ws: WebSocket) -> None:
    await ws.accept()
    session = ws.query_params.get("session") or f"ws-{id(ws):x}"
    live: set[GuardedStream] = set()
    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            prompt = json.loads(await ws.receive_text())["prompt"]
            task = asyncio.create_task(answer(ws, session, prompt, live))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except WebSocketDisconnect:
        for s in list(live):
            s.disconnect()
    finally:
        if tasks:  # bounded: every answer was told to stop
            await asyncio.wait(tasks, timeout=guard.cancel_wait + 1)


app = Starlette(routes=[WebSocketRoute("/chat", chat)], lifespan=guard.lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
