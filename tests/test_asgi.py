"""The chat endpoint driven with raw ASGI receive/send: timing-exact disconnect cases."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
from fastapi import FastAPI

from jarvis.config import ServerConfig
from jarvis.eventlog import RecordingLog
from jarvis.server.app import create_app
from jarvis.server.context import ServerContext
from jarvis.synthetic import expected_text
from jarvis.vocabulary import Event


def make_app(**settings: Any) -> tuple[Any, RecordingLog, ServerContext]:
    log = RecordingLog()
    config = ServerConfig(log_file=None, **settings)
    ctx = ServerContext.build(config, log=log)
    return create_app(ctx=ctx), log, ctx


def scope_for(session: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("t", 80),
        "headers": [(b"content-type", b"application/json"), (b"x-session-id", session.encode())],
    }  # fmt: skip


def body(prompt: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": prompt}], "stream": True}).encode()


async def exchange(call: Any, session: str, request: bytes) -> list[dict[str, Any]]:
    """One request through `call` with raw receive/send: the client stays connected until
    the last body message, as a real one reading to the end does; returns what was sent."""
    received = [{"type": "http.request", "body": request, "more_body": False}]
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if received:
            return received.pop(0)
        await finished.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    await asyncio.wait_for(call(scope_for(session), receive, send), 3)
    return sent


async def test_disconnect_before_the_body_starts_still_runs_the_whole_cleanup() -> None:
    """The client is gone before the first body byte (sse-starlette #156): the stream still
    logs stream_end reason=disconnected cleanup_done=True and leaves no registry entry."""
    app, log, ctx = make_app(first_token_ms=1000)
    messages = [{"type": "http.request", "body": body("Long essay"), "more_body": False},
                {"type": "http.disconnect"}]  # fmt: skip

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope_for("gone"), receive, send), 3)
    (end,) = log.of(Event.STREAM_END)
    assert end["reason"] == "disconnected"
    assert end["cleanup_done"] is True
    assert end["tokens"] == 0
    assert ctx.guard.live_count() == 0
    assert log.names().count("stream_cancelled") == 1


@pytest.mark.parametrize("path", ["direct", "routed"])
async def test_sse_bytes_on_the_wire_are_complete_and_in_order(path: str) -> None:
    """Raw send(): headers first, then chunks whose text is exactly the model's, then
    the terminal chunk and [DONE] with more_body=False; the same bytes whether the
    stream writes to the server's send directly or through FastAPI's route."""
    app, log, _ = make_app(token_rate=0, first_token_ms=0)
    call = app if path == "direct" else functools.partial(FastAPI.__call__, app)
    sent = await exchange(call, "wire", body("What is 2+2?"))
    assert sent[0]["type"] == "http.response.start"
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    stream = b"".join(m.get("body", b"") for m in sent[1:])
    assert stream.endswith(b"data: [DONE]\n\n")
    blocks = stream.split(b"\n\n")[:-1]
    # Every event carries its place in the stream first (resume's ids), [DONE] included.
    assert [b.split(b"\n", 1)[0] for b in blocks] == [
        b"id: %d" % n for n in range(1, len(blocks) + 1)
    ]
    events = [json.loads(b.split(b"\n", 1)[1][6:]) for b in blocks if b"\ndata: {" in b]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == expected_text("What is 2+2?")
    assert {e["id"] for e in events} == {headers[b"x-stream-id"].decode()}
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert log.of(Event.STREAM_END)[0]["reason"] == "completed"


async def test_finished_streams_leave_no_reference_cycles() -> None:
    """Streams must be freed by reference counting alone: cycles wait for full GC passes,
    which stall the loop for every stream (50-400 ms at 1,000 streams)."""
    import gc

    app, _, _ = make_app(token_rate=0, first_token_ms=0)

    async def one(i: int) -> None:
        received = [{"type": "http.request", "body": body(f"Long essay {i}"), "more_body": False}]
        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if received:
                return received.pop(0)
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished.set()

        await asyncio.wait_for(app(scope_for(f"gc{i % 3}"), receive, send), 5)

    await one(0)  # warm-up: module-level caches fill once
    gc.collect()
    gc.disable()
    try:
        await asyncio.gather(*(one(i) for i in range(30)))
        await asyncio.sleep(0.05)
        collected = gc.collect()
    finally:
        gc.enable()
    assert collected <= 5, f"{collected} objects in cycles after 30 streams (was 1290)"


async def test_an_unexpected_error_before_the_stream_is_a_500_json_and_a_log_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The direct path has no error middleware: a bug while validating must still answer
    an OpenAI-style 500, and the log must say what it was."""
    import jarvis.server.app

    def broken(raw: bytes) -> None:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(jarvis.server.app, "parse_chat_request", broken)
    app, log, ctx = make_app()
    received = [{"type": "http.request", "body": body("hi"), "more_body": False}]

    async def receive() -> dict[str, Any]:
        return received.pop(0) if received else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope_for("bug"), receive, send), 3)
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"])["error"]["code"] == "internal_error"
    (rejected,) = log.of(Event.REQUEST_REJECTED)
    assert rejected["status"] == 500
    assert rejected["message"] == "RuntimeError: parser bug"
    assert ctx.guard.live_count() == 0


async def test_a_middleware_added_to_the_app_applies_to_the_chat_route() -> None:
    """CORS, auth or anything a user adds later wraps the chat endpoint too: nothing
    bypasses the middleware stack (here a pure ASGI middleware that stamps a header)."""
    app, _, _ = make_app(token_rate=0)

    class Stamp:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def stamped(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-stamped", b"yes")]
                await send(message)

            await self.inner(scope, receive, stamped)

    app.add_middleware(Stamp)
    sent = await exchange(app, "mw", body("What is 2+2?"))
    start = sent[0]
    assert start["status"] == 200
    assert (b"x-stamped", b"yes") in start["headers"]
    assert sent[-1]["body"].endswith(b"data: [DONE]\n\n")


async def test_stream_start_logs_the_requested_model() -> None:
    """`stream_start model=` is the request's model on the streaming path too (a client
    value: the hostile-input checks rely on it reaching the log, escaped)."""
    app, log, _ = make_app(token_rate=0)
    request = {"model": "m x\\n", "messages": [{"role": "user", "content": "hi?"}], "stream": True}
    await exchange(app, "model", json.dumps(request).encode())
    (start,) = log.of(Event.STREAM_START)
    assert start["model"] == request["model"]
