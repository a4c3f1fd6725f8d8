"""Plain Starlette, one stream per session (`X-Session-Id`), every event numbered
(`id: N`) and kept: a client that left comes back with `GET /v1/streams/{id}` and
`Last-Event-ID`, and `POST /v1/streams/{id}/cancel` stops an answer. The answer is made
by a task of its own, so it runs on when its reader leaves.

`--replay right` resumes after the client's last event; `repeat` resumes one event
early (event N again: a duplicate); `skip` one event late (event N+1 lost: a gap).

    python -m tests.peers.numbered --port 8001 --replay skip
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._fence import Sessions
from ._synth import MODEL, PACE_S, max_tokens_of, prompt_of, serve, tokens

#: Where a resume starts, relative to the event after Last-Event-ID.
REPLAY_SHIFT = {"right": 0, "repeat": -1, "skip": 1}
#: Answers kept for a resume (the oldest are forgotten first).
KEPT = 500


@dataclass
class Answer:
    """One stream's events as written, and whether it has ended."""

    stream_id: str
    session: str | None
    events: list[bytes] = field(default_factory=list)
    ended: bool = False
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: The task making it (held: a task nobody holds may be collected mid-answer).
    task: asyncio.Task[None] | None = None

    def write(self, payload: str) -> None:
        self.events.append(f"id: {len(self.events) + 1}\ndata: {payload}\n\n".encode())
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def follow(self, start: int) -> AsyncIterator[bytes]:
        """The events from index `start`, then each new one, until the answer ends."""
        i = max(start, 0)
        while True:
            changed = self.changed
            while i < len(self.events):
                yield self.events[i]
                i += 1
            if self.ended:
                return
            await changed.wait()


sessions = Sessions()
answers: dict[str, Answer] = {}
replay_shift = 0


def _chunk(stream_id: str, content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    return json.dumps(
        {
            "id": stream_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


async def _produce(answer: Answer, words: list[str]) -> None:
    async with sessions.turn(answer.session) as cancel:
        for word in words:
            if cancel is None or cancel.is_set() or answer.stop.is_set():
                break  # superseded (before it began, or now), or stopped
            answer.write(_chunk(answer.stream_id, word))
            await asyncio.sleep(PACE_S)
        answer.write(_chunk(answer.stream_id, None, "stop"))
        answer.write("[DONE]")
        answer.end()


async def models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def chat(request: Request) -> Response:
    body = await request.json()
    answer = Answer(f"chatcmpl-{uuid.uuid4().hex[:24]}", request.headers.get("x-session-id"))
    answers[answer.stream_id] = answer
    while len(answers) > KEPT:
        del answers[next(iter(answers))]
    answer.task = asyncio.create_task(
        _produce(answer, tokens(prompt_of(body), max_tokens_of(body)))
    )
    return StreamingResponse(
        answer.follow(0), media_type="text/event-stream", headers={"X-Stream-Id": answer.stream_id}
    )


def _found(request: Request) -> Answer | None:
    answer = answers.get(request.path_params["stream_id"])
    if answer is None or answer.session != request.headers.get("x-session-id"):
        return None
    return answer


async def resume(request: Request) -> Response:
    answer = _found(request)
    last = request.headers.get("last-event-id", "0")
    if answer is None or not last.isdigit():
        return JSONResponse({"error": {"message": "no such stream"}}, status_code=404)
    start = int(last) + replay_shift
    return StreamingResponse(
        answer.follow(start), media_type="text/event-stream",
        headers={"X-Stream-Id": answer.stream_id},
    )  # fmt: skip


async def cancel(request: Request) -> Response:
    answer = _found(request)
    if answer is None:
        return JSONResponse({"error": {"message": "no such stream"}}, status_code=404)
    answer.stop.set()
    return JSONResponse({"stream_id": answer.stream_id}, status_code=202)


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/streams/{stream_id}", resume),
        Route("/v1/streams/{stream_id}/cancel", cancel, methods=["POST"]),
    ]
)


def main() -> None:
    global replay_shift  # noqa: PLW0603 - set once, before serving
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replay", choices=sorted(REPLAY_SHIFT), default="right")
    args = parser.parse_args()
    replay_shift = REPLAY_SHIFT[args.replay]
    serve(app, args.port)


if __name__ == "__main__":
    main()
