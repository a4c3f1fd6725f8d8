"""Anthropic Messages streaming (`POST /v1/messages`) from a FastAPI router, one stream
per `X-Session-Id`: a superseded stream ends as any other, with `message_delta`
(`stop_reason: "end_turn"`) and `message_stop`.

    python -m tests.peers.anthropic_peer --port 8001
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Header
from fastapi.responses import StreamingResponse

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

router = APIRouter(prefix="/v1")
sessions = Sessions()


def _sse(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


async def _events(session: str | None, words: list[str]) -> AsyncIterator[bytes]:
    message = {"id": f"msg_{uuid.uuid4().hex[:20]}", "type": "message", "role": "assistant",
               "model": MODEL, "content": [], "stop_reason": None,
               "usage": {"input_tokens": 1, "output_tokens": 0}}  # fmt: skip
    yield _sse("message_start", message=message)
    yield _sse("content_block_start", index=0, content_block={"type": "text", "text": ""})
    sent = 0
    async with sessions.turn(session) as cancel:
        for word in words if cancel is not None else ():
            if cancel.is_set():
                break
            yield _sse("content_block_delta", index=0, delta={"type": "text_delta", "text": word})
            sent += 1
            await asyncio.sleep(PACE_S)
    yield _sse("content_block_stop", index=0)
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    yield _sse("message_delta", delta=delta, usage={"output_tokens": sent})
    yield _sse("message_stop")


@router.get("/models")
async def models() -> dict[str, object]:
    return {"data": [{"id": MODEL, "type": "model", "display_name": "Peer synthetic"}]}


@router.post("/messages")
async def messages(
    body: Annotated[dict[str, Any], Body()],
    x_session_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    words = tokens(prompt_of(body), max_tokens_of(body))
    return StreamingResponse(_events(x_session_id, words), media_type="text/event-stream")


app = FastAPI()
app.include_router(router)


def main() -> None:
    args = parse_args(__doc__ or "")
    serve(app, args.port)


if __name__ == "__main__":
    main()
