"""FastAPI + StreamingResponse, one stream per session (`X-Session-Id`): a new prompt
cancels the old stream, which ends the ordinary way (`finish_reason: "stop"`, `[DONE]`).

    python -m tests.peers.stop_done --port 8001
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

app = FastAPI()
sessions = Sessions()


def chunk(stream_id: str, content: str | None, finish: str | None = None) -> str:
    """One OpenAI chunk as an SSE event (engine_gauge, this server with a gauge, too)."""
    delta = {} if content is None else {"content": content}
    event = {
        "id": stream_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(event)}\n\n"


@app.get("/v1/models")
async def models() -> dict[str, object]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}


@app.post("/v1/chat/completions")
async def chat(request: Request) -> StreamingResponse:
    body = await request.json()
    session = request.headers.get("x-session-id")
    words = tokens(prompt_of(body), max_tokens_of(body))
    stream_id = f"chatcmpl-{uuid.uuid4().hex[:16]}"

    async def answer() -> AsyncIterator[str]:
        async with sessions.turn(session) as cancel:
            yield chunk(stream_id, "")
            for word in words if cancel is not None else ():
                if cancel.is_set():
                    break
                yield chunk(stream_id, word)
                await asyncio.sleep(PACE_S)
            # Superseded or finished, the stream ends the same way: nothing jarvis-only.
            yield chunk(stream_id, None, "stop")
            yield "data: [DONE]\n\n"

    return StreamingResponse(answer(), media_type="text/event-stream")


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
