"""The smallest WebSocket chat on `guard.stream`, written the natural way: when the socket
closes, the handler cancels its answer task, and the guard logs that stream as
`disconnected` (the client went away), not `shutdown`. The handler is ten lines.

    APP_LOG_FILE=logs/ws.log uvicorn --app-dir examples websocket_minimal:app
"""

import asyncio
import os

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from jarvis import StreamGuard

guard = StreamGuard(log=os.environ.get("APP_LOG_FILE"))  # unset: the `jarvis.stream` logger


async def answer(ws: WebSocket, prompt: str) -> None:
    async with guard.stream(ws.query_params.get("session"), ws.send_text, prompt=prompt) as s:
        while not s.cancelled:  # a stand-in model that streams until it is stopped
            await s.send(prompt + " ")
            await asyncio.sleep(0.05)


async def chat(ws: WebSocket) -> None:
    await ws.accept()
    task = asyncio.create_task(answer(ws, await ws.receive_text()))
    await ws.receive()  # the next message of this protocol is the close
    task.cancel()


app = Starlette(routes=[WebSocketRoute("/chat", chat)], lifespan=guard.lifespan)
