"""`loadtests/locustfile.py` on its own: `python loadtests/locustfile.py` runs one user
with locust's `run_single_user` against a real server, bounded, and reports each stream.

Run in a subprocess: locust monkey-patches the standard library with gevent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest

from .conftest import ServerProcess
from .swarms import asgi_server, single_user


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_run_single_user_streams_interrupts_and_reports_every_stream(
    shared_server: ServerProcess,
) -> None:
    """Three conversations, each interrupted: every stream is reported under SSE `stream`,
    the interrupting prompts under `interrupt-ttft`, and no stream failed."""
    sse, output = single_user(
        shared_server.url,
        LOCUST_CONVERSATIONS="3",
        LOCUST_INTERRUPT_RATE="1",
        LOCUST_THINK_TIME="0.05",
    )
    streams = [row for row in sse if row[1] == "SSE" and row[2] == "stream"]
    assert len(streams) == 6  # three first prompts, three interrupting ones
    assert sum(1 for row in sse if row[2] == "interrupt-ttft") >= 1
    for name in ("StaleChunk", "Hang", "WrongText", "HTTPError", "BrokenStream", "Traceback"):
        assert name not in output


Message = MutableMapping[str, Any]
#: Text with characters other line splitters take for line ends: SSE reads them as text.
ODD_TEXT = ("para\u2028graph", " next\u2029one", " nel\u0085vt\x0bff\x0c", " end")


def _crlf_body() -> bytes:
    """An OpenAI stream as sse-starlette writes it (CRLF, an `event:` line, a comment),
    the content raw UTF-8 (U+2028 and friends unescaped)."""
    chunks = [{"id": "c1", "choices": [{"delta": {"content": t}, "finish_reason": None}]}
              for t in ODD_TEXT]  # fmt: skip
    chunks.append({"id": "c1", "choices": [{"delta": {}, "finish_reason": "stop"}]})
    events = [b": ping\r\n\r\n"]
    events += [b"event: completion\r\ndata: " + json.dumps(c, ensure_ascii=False).encode()
               + b"\r\n\r\n" for c in chunks]  # fmt: skip
    return b"".join(events) + b"data: [DONE]\r\n\r\n"


async def crlf_peer(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """No /v1/models (404); every chat POST streams `_crlf_body()` in 7-byte writes, so
    CRLFs and UTF-8 sequences are split between reads."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] != "/v1/chat/completions":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    body = _crlf_body()
    for i in range(0, len(body), 7):
        await send({"type": "http.response.body", "body": body[i : i + 7], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def crlf_url() -> Iterator[str]:
    """`crlf_peer` under a real uvicorn on port 0 (the port read back), stopped afterwards."""
    with asgi_server(crlf_peer) as url:
        yield url


@pytest.mark.timeout(60)
def test_the_locust_user_reads_crlf_streams_with_u2028_in_the_text(crlf_url: str) -> None:
    """Against a server writing CRLF events with `event:` lines, comments and U+2028 in the
    content, split at awkward places: every stream is read to `[DONE]` and counted as
    completed (full-stream), with no BrokenStream and no failure at all."""
    sse, output = single_user(
        crlf_url,
        LOCUST_CONVERSATIONS="3",
        LOCUST_INTERRUPT_RATE="0",
        LOCUST_DISCONNECT_RATE="0",
        LOCUST_THINK_TIME="0.01",
    )
    assert sum(1 for row in sse if row[2] == "stream") == 3
    assert sum(1 for row in sse if row[2] == "full-stream") == 3
    for name in ("BrokenStream", "StaleChunk", "Hang", "HTTPError", "Traceback"):
        assert name not in output
