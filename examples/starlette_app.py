"""A guarded chat route in plain Starlette: the library alone, with its core dependencies.

`pip install jarvis-streamkit uvicorn`, then `uvicorn starlette_app:app`. A new prompt in a
session (X-Session-Id) ends the session's older answer before the new one streams.
"""

import asyncio
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jarvis import StreamGuard

guard = StreamGuard(log=os.environ.get("APP_LOG_FILE", "logs/starlette_app.log"))


async def answer(prompt: str) -> AsyncIterator[str]:
    """A stand-in model: the prompt's words, repeated up to 40, 25 ms apart."""
    words = prompt.split() or ["..."]
    for i in range(40):
        await asyncio.sleep(0.025)
        yield words[i % len(words)] + " "


async def chat(request: Request) -> Response:
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    return guard.response(request.headers.get("x-session-id"), answer(prompt), prompt=prompt)


app = Starlette(
    routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=guard.lifespan
)
