"""A user's FastAPI app in front of an OpenAI-compatible engine (llama.cpp, vLLM, ...).

With StreamGuard, a new prompt in a session (X-Session-Id) ends the session's older answer
first, and ending it leaves the generator below, which closes the upstream request: that
is what tells the engine to stop decoding the answer nobody reads any more.

    LLAMA_URL=http://127.0.0.1:8080 uvicorn llamacpp_proxy:app --app-dir examples
"""

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from httpx_sse import aconnect_sse

from jarvis import OpenAIChunks, StreamGuard

ENGINE = os.environ.get("LLAMA_URL", "http://127.0.0.1:8080")
guard = StreamGuard(log=os.environ.get("APP_LOG_FILE", "logs/llamacpp_proxy.log"))
engine = httpx.AsyncClient(base_url=ENGINE, timeout=httpx.Timeout(120, connect=5))
app = FastAPI(lifespan=guard.lifespan)


async def answer(body: dict[str, Any], model: list[str]) -> AsyncIterator[str]:
    """The engine's text as it streams; the model's name as the engine gives it."""
    request = {**body, "stream": True}
    async with aconnect_sse(engine, "POST", "/v1/chat/completions", json=request) as events:
        async for event in events.aiter_sse():
            if event.data == "[DONE]":
                return
            chunk = event.json()
            model[0] = chunk.get("model") or model[0]
            for choice in chunk.get("choices") or []:
                if text := (choice.get("delta") or {}).get("content"):
                    yield text


@app.post("/v1/chat/completions")
async def chat(request: Request):  # type: ignore[no-untyped-def]
    body = await request.json()
    model = [str(body.get("model") or "engine")]
    tokens = answer(body, model)
    encode = OpenAIChunks(lambda: model[0])
    return guard.response(request.headers.get("x-session-id"), tokens, encode=encode)
