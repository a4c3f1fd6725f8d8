"""jarvis serve --upstream: tokens read from a real OpenAI-compatible server's SSE as the
spec says, whatever characters they hold and whatever line ends the server writes."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from jarvis.exceptions import UpstreamError
from jarvis.server.chat import parse_chat_request
from jarvis.server.upstream import UpstreamModel

SSE = {"content-type": "text/event-stream"}
#: Characters httpx's aiter_lines() would split a line at, but SSE does not.
SEPARATORS = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg\x1dh\x1ei"


def chunk(content: str) -> str:
    return json.dumps({"choices": [{"delta": {"content": content}}]}, ensure_ascii=False)


async def tokens(body: bytes, *, status: int = 200, headers: dict[str, str] = SSE) -> list[str]:
    transport = httpx.MockTransport(lambda r: httpx.Response(status, headers=headers, content=body))
    model = UpstreamModel("http://up", client=httpx.AsyncClient(transport=transport))
    request = parse_chat_request(b'{"messages":[{"role":"user","content":"hi"}],"stream":true}')
    try:
        return [t async for t in model.stream(request)]
    finally:
        await model.aclose()


async def test_tokens_with_line_separators_and_crlf_events_arrive_whole() -> None:
    """U+2028, U+0085, VT, FF and FS-RS inside a token, CRLF line ends: one token, intact,
    and [DONE] ends the stream (nothing after it is read)."""
    body = (
        f"data: {chunk(SEPARATORS)}\r\n\r\n: a comment\r\n\r\n"
        f"data: {chunk('!')}\r\n\r\ndata: [DONE]\r\n\r\ndata: {chunk('late')}\r\n\r\n"
    ).encode()
    assert await tokens(body) == [SEPARATORS, "!"]


async def test_an_upstream_refusal_and_a_malformed_chunk_are_upstream_errors() -> None:
    """A 4xx/5xx carries its status; data that is not JSON is named, not a traceback."""
    with pytest.raises(UpstreamError) as refused:
        await tokens(b'{"error": "no"}', status=503)
    assert refused.value.status == 503
    with pytest.raises(UpstreamError, match="malformed chunk"):
        await tokens(b"data: {not json\n\n")


async def test_an_upstream_that_is_not_an_event_stream_is_an_upstream_error() -> None:
    """A 200 with a JSON body (stream ignored upstream) is refused by name."""
    with pytest.raises(UpstreamError, match="event stream"):
        await tokens(b'{"choices": []}', headers={"content-type": "application/json"})


async def test_fronting_an_upstream_the_chunks_carry_the_upstreams_model_name() -> None:
    """A request naming no model is answered with the model the upstream names in its
    chunks, in every chunk of a stream and in a whole completion, never jarvis-synthetic."""
    from jarvis.config import ServerConfig
    from jarvis.eventlog import RecordingLog
    from jarvis.server.app import create_app
    from jarvis.server.context import ServerContext

    named = {"model": "llama-3-8b"}
    body = (
        "".join(
            f"data: {json.dumps(named | {'choices': [{'delta': {'content': t}}]})}\n\n"
            for t in ("Hel", "lo")
        )
        + "data: [DONE]\n\n"
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers=SSE, content=body))
    ctx = ServerContext.build(ServerConfig(log_file=None, upstream="http://up"), log=RecordingLog())
    await ctx.source.aclose()
    ctx.source = UpstreamModel("http://up", client=httpx.AsyncClient(transport=transport))
    app = create_app(ctx=ctx)

    async def ask(stream: bool) -> bytes:
        request = {"messages": [{"role": "user", "content": "hi"}], "stream": stream}
        inbox = [{"type": "http.request", "body": json.dumps(request).encode()}]
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            if inbox:
                return inbox.pop()
            await asyncio.Event().wait()  # the client stays until the response is done
            raise AssertionError("unreachable")

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        headers = [(b"content-type", b"application/json")]
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "headers": headers, "query_string": b""}  # fmt: skip
        await app(scope, receive, send)
        return b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]

    streamed = [
        line[6:] for line in (await ask(True)).decode().split("\n") if line.startswith("data: {")
    ]
    assert {json.loads(chunk)["model"] for chunk in streamed} == {"llama-3-8b"}
    whole = json.loads(await ask(False))
    assert (whole["model"], whole["choices"][0]["message"]["content"]) == ("llama-3-8b", "Hello")
    await ctx.source.aclose()
