"""A streaming chat server as it is usually first written: FastAPI, an async generator.

With StreamGuard: a new prompt cancels the session's last stream first (docs/adopt.md).
"""

import asyncio
import atexit
import logging
import os
import queue
from collections.abc import AsyncIterator
from logging.handlers import QueueHandler, QueueListener

import uvicorn
from fastapi import FastAPI, Request

from jarvis import OpenAIChunks, StreamGuard

# Log off the event loop: records go through a queue to a thread that writes the file.
records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
to_file = logging.FileHandler(os.environ.get("APP_LOG_FILE", "logs/app.log"))
to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
writer = QueueListener(records, to_file)
writer.start()
atexit.register(writer.stop)
logging.basicConfig(level=logging.INFO, handlers=[QueueHandler(records)], format="%(message)s")
log = logging.getLogger("chat")
guard = StreamGuard(cancel_wait=2.0, flush_ms=75)
app = FastAPI(lifespan=guard.lifespan)
WORDS = ["the", "answer", "streams", "one", "word", "at", "a", "time"]


async def generate(prompt: str) -> AsyncIterator[str]:
    """A stand-in model: deterministic words 30 ms apart, about 2 s for a long essay."""
    long = "long" in prompt.lower() or "essay" in prompt.lower()
    for i in range(64 if long else 24):
        await asyncio.sleep(0.03)
        yield WORDS[i % len(WORDS)] + " "


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request):  # type: ignore[no-untyped-def]
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    log.info("chat session=%r prompt_chars=%d", request.headers.get("x-session-id"), len(prompt))
    tokens, model = generate(prompt), body.get("model", "demo")
    return guard.response(request.headers.get("x-session-id"), tokens, encode=OpenAIChunks(model))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=8000)
