"""jarvis serve --upstream: tokens read from a real OpenAI-compatible server's SSE as the
spec says, whatever characters they hold and whatever line ends the server writes."""

from __future__ import annotations

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
