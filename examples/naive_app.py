"""A streaming chat server as it is usually first written: FastAPI, an async generator.

Nothing ties a stream to its session: a new prompt streams beside the last (docs/adopt.md).
"""

import asyncio
import atexit
import json
import logging
import os
import queue
import uuid
from collections.abc import AsyncIterator
from logging.handlers import QueueHandler, QueueListener

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

# Log off the event loop: records go through a queue to a thread that writes the file.
records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
to_file = logging.FileHandler(os.environ.get("APP_LOG_FILE", "logs/app.log"))
to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
writer = QueueListener(records, to_file)
writer.start()
atexit.register(writer.stop)
logging.basicConfig(level=logging.INFO, handlers=[QueueHandler(records)], format="%(message)s")
log = logging.getLogger("chat")
app = FastAPI()
WORDS = ["the", "answer", "streams", "one", "word", "at", "a", "time"]


async def generate(prompt: str) -> AsyncIterator[str]:
    """A stand-in model: deterministic words 30 ms apart, about 2 s for a long essay."""
    long = "long" in prompt.lower() or "essay" in prompt.lower()
    for i in range(64 if long else 24):
        await asyncio.sleep(0.03)
        yield WORDS[i % len(WORDS)] + " "


async def sse(tokens: AsyncIterator[str], model: str) -> AsyncIterator[str]:
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "model": model}
    async for token in tokens:
        choice = {"index": 0, "delta": {"content": token}, "finish_reason": None}
        yield f"data: {json.dumps(head | {'choices': [choice]})}\n\n"
    stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
    yield f"data: {json.dumps(head | {'choices': [stop]})}\n\ndata: [DONE]\n\n"


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):  # type: ignore[no-untyped-def]
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    log.info("chat session=%r prompt_chars=%d", request.headers.get("x-session-id"), len(prompt))
    tokens, model = generate(prompt), body.get("model", "demo")
    return StreamingResponse(sse(tokens, model), media_type="text/event-stream")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
