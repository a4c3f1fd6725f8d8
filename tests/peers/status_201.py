"""FastAPI answering every streamed chat with `201 Created` (an answer like any 2xx):
correct, one stream per `X-Session-Id`, superseded streams end `finish_reason: "stop"`
and `[DONE]`.

    python -m tests.peers.status_201 --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header
from fastapi.responses import StreamingResponse

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

app = FastAPI()
sessions = Sessions()


def _chunk(trace: str, content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return f"data: {json.dumps({'id': trace, 'choices': [choice]})}\n\n".encode()


@app.get("/v1/models")
async def models() -> dict[str, object]:
    return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}


@app.post("/v1/chat/completions", status_code=201)
async def chat(
    body: Annotated[dict[str, Any], Body()],
    x_session_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    trace = f"chatcmpl-{uuid.uuid4().hex[:12]}"
    words = tokens(prompt_of(body), max_tokens_of(body))

    async def answer() -> AsyncIterator[bytes]:
        async with sessions.turn(x_session_id) as cancel:
            for word in words if cancel is not None else ():
                if cancel.is_set():
                    break
                yield _chunk(trace, word)
                await asyncio.sleep(PACE_S)
        yield _chunk(trace, None, "stop") + b"data: [DONE]\n\n"

    return StreamingResponse(answer(), status_code=201, media_type="text/event-stream")


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
