"""A user's app behind `StreamGuard` whose generator's `finally` takes 3 s (a database
write, a trace export) with the guard's 2 s cancel wait: correct, only slow to clean up.

The guard waits the whole `cancel_wait` for the old answer's `finally`, then lets the new
prompt go ahead with the old stream fenced; its `stream_end` says `cleanup_done=False`
and `stream_cleanup_finished` follows when the `finally` ends.

    python -m tests.peers.slow_finally --port 8001 [--log-file PATH]
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header

from jarvis import OpenAIChunks, StreamGuard

from ._synth import MODEL, PACE_S, max_tokens_of, parse_args, prompt_of, serve, tokens

#: How long the user's cleanup takes: past the guard's cancel wait.
FINALLY_S = 3.0


def create_app(log_file: str | None) -> FastAPI:
    guard = StreamGuard(cancel_wait=2.0, log=log_file)
    app = FastAPI(lifespan=guard.lifespan)

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(
        body: Annotated[dict[str, Any], Body()],
        x_session_id: Annotated[str | None, Header()] = None,
    ) -> Any:
        words = tokens(prompt_of(body), max_tokens_of(body))

        async def answer() -> AsyncIterator[str]:
            try:
                for word in words:
                    yield word
                    await asyncio.sleep(PACE_S)
            finally:
                await asyncio.sleep(FINALLY_S)

        return guard.response(x_session_id, answer(), encode=OpenAIChunks(MODEL))

    return app


def main() -> None:
    args = parse_args(__doc__ or "")
    app = create_app(args.log_file)
    serve(app, args.port)


if __name__ == "__main__":
    main()
