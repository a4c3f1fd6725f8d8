"""A streaming chat server as it is usually first written: FastAPI, an async generator,
StreamingResponse. Nothing ties a stream to its session, so a second prompt in a session
streams alongside the first instead of replacing it: the bug `jarvis verify-hang` finds.

    python examples/naive_app.py                    # serves http://127.0.0.1:8000
    jarvis verify-hang --url http://127.0.0.1:8000  # FAIL: overlap and burst
"""

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

LOG_FILE = Path(os.environ.get("APP_LOG_FILE", "logs/naive_app.log"))
LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
logging.basicConfig(
    filename=LOG_FILE, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
)
log = logging.getLogger("naive_app")

app = FastAPI()
WORDS = ("the", "answer", "streams", "one", "word", "at", "a", "time", "as", "models", "do")


async def generate(prompt: str) -> AsyncIterator[str]:
    """A stand-in model: deterministic words 30 ms apart, ~2 s for a long essay."""
    long = "long" in prompt.lower() or "essay" in prompt.lower()
    for i in range(64 if long else 24):
        await asyncio.sleep(0.03)
        yield WORDS[i % len(WORDS)] + " "


def chunk(completion_id: str, model: str, content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    event = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(event)}\n\n"


async def sse(tokens: AsyncIterator[str], model: str) -> AsyncIterator[str]:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    async for token in tokens:
        yield chunk(completion_id, model, token)
    yield chunk(completion_id, model, None, finish="stop")
    yield "data: [DONE]\n\n"


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> StreamingResponse:
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    session = request.headers.get("X-Session-Id")
    log.info("chat session=%s prompt=%r", session, prompt[:60])
    model = body.get("model", "naive")
    tokens = generate(prompt)
    return StreamingResponse(sse(tokens, model), media_type="text/event-stream")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
