"""verify-hang's SSE client: transcripts judged from events, and the hard deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx

from jarvis_cli.chatapi import SessionIn, SSEEvent, dialect_named
from jarvis_cli.chatapi.dialect import OpenAI
from jarvis_cli.verify.client import ChatClient, Transcript

SSE = {"content-type": "text/event-stream"}


def chunk(stream_id: str, content: str = "", finish: str | None = None, end: str | None = None):
    event: dict[str, object] = {
        "id": stream_id,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    if end is not None:
        event["jarvis"] = {"end_reason": end}
    return "data: " + json.dumps(event) + "\n\n"


def transcript(*payloads: tuple[float, str]) -> Transcript:
    t = Transcript("A", "s1", "p", None, sent_at=0.0, status=200)
    for at, data in payloads:
        piece = OpenAI().read(SSEEvent("message", data))
        assert piece is not None
        t.absorb(piece, at)
    return t


def test_a_stream_with_a_finish_chunk_and_done_is_terminal_and_completed() -> None:
    """finish_reason then [DONE]: terminal; the text is the contents joined; outcome completed."""
    t = transcript(
        (0.1, json.dumps({"id": "x", "choices": [{"delta": {"content": "he"}}]})),
        (0.2, json.dumps({"id": "x", "choices": [{"delta": {"content": "llo"}}]})),
        (0.3, json.dumps({"id": "x", "choices": [{"delta": {}, "finish_reason": "stop"}]})),
        (0.3, "[DONE]"),
    )
    assert t.terminal
    assert t.text == "hello"
    assert t.outcome == "completed"
    assert t.problem() == ""
    assert t.content_gaps() == [0.2 - 0.1]


def test_jarvis_end_reason_decides_the_outcome() -> None:
    """A cancelled stream that says end_reason=superseded is 'superseded'."""
    t = transcript(
        (0.1, json.dumps({"id": "x", "choices": [{"finish_reason": "cancelled"}],
                          "jarvis": {"end_reason": "superseded"}})),
        (0.1, "[DONE]"),
    )  # fmt: skip
    assert t.outcome == "superseded"


def test_a_stream_without_done_is_cut_and_says_why() -> None:
    """No [DONE]: not terminal, outcome 'cut', and problem() explains it."""
    t = transcript((0.1, json.dumps({"id": "x", "choices": [{"delta": {"content": "a"}}]})))
    assert not t.terminal
    assert t.outcome == "cut"
    assert "without a finish_reason chunk and [DONE]" in t.problem(strict=True)
    assert t.problem() == ""  # a plain close is an ending like any other unless --strict
    assert t.ending == "a plain close"


def test_chunks_of_another_stream_are_foreign() -> None:
    """The stream-id guard: a chunk whose id is not the stream's own is reported."""
    t = transcript(
        (0.1, json.dumps({"id": "mine", "choices": [{"delta": {"content": "a"}}]})),
        (0.2, json.dumps({"id": "theirs", "choices": [{"delta": {"content": "b"}}]})),
    )
    assert [c.id for c in t.foreign] == ["theirs"]
    assert [c.at for c in t.chunks_after(0.15)] == [0.2]


def test_a_data_line_that_is_not_json_counts_as_malformed() -> None:
    """Corrupted bytes on the wire are counted, not silently dropped."""
    t = transcript((0.1, "{not json"), (0.2, "[1, 2]"))
    assert t.malformed == 2


async def test_a_server_that_stops_mid_stream_is_hung_within_the_deadline() -> None:
    """One chunk, then silence: the client returns `hung` at the deadline, keeping the chunk."""

    async def body() -> AsyncIterator[bytes]:
        yield chunk("s1", "hi").encode()
        await asyncio.sleep(3600)

    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"x-stream-id": "s1", **SSE}, content=body())
    )
    client = ChatClient(["http://test"], model="m", deadline=0.3, transport=transport)
    try:
        started = time.monotonic()
        t = await client.stream("p", session="s", label="A")
        elapsed = time.monotonic() - started
    finally:
        await client.aclose()
    assert t.hung
    assert t.outcome == "hung"
    assert t.text == "hi"
    assert t.stream_id == "s1"
    assert 0.25 < elapsed < 1.5


async def test_a_refusal_keeps_its_status_and_body() -> None:
    """A 400 is a transcript with the status and the start of the error body, not a raise."""
    transport = httpx.MockTransport(
        lambda request: httpx.Response(400, json={"error": {"message": "bad session"}})
    )
    client = ChatClient(["http://test"], model="m", deadline=1.0, transport=transport)
    try:
        t = await client.stream("p", session="bad id", label="A")
    finally:
        await client.aclose()
    assert t.outcome == "refused"
    assert "bad session" in t.body
    assert t.problem().startswith("HTTP 400")


async def test_the_request_carries_the_session_model_and_max_tokens() -> None:
    """What goes on the wire: X-Session-Id, the model, stream=true, max_tokens."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        done = chunk("s", "x", finish="stop") + "data: [DONE]\n\n"
        return httpx.Response(200, headers=SSE, content=done.encode())

    client = ChatClient(
        ["http://test"], model="m1", deadline=1.0, transport=httpx.MockTransport(handler)
    )
    try:
        t = await client.stream("hello", session="s-1", label="A", max_tokens=7)
    finally:
        await client.aclose()
    body = json.loads(seen[0].content)
    assert seen[0].headers["x-session-id"] == "s-1"
    assert body == {
        "model": "m1",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
        "max_tokens": 7,
    }
    assert t.outcome == "completed"


async def _one(
    body: bytes, *, dialect: str = "openai", session_in: str = "header:X-Session-Id"
) -> tuple[Transcript, httpx.Request]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=SSE, content=body)

    client = ChatClient(
        ["http://test"],
        model="m",
        deadline=1.0,
        dialect=dialect_named(dialect),
        session_in=SessionIn.parse(session_in),
        transport=httpx.MockTransport(handler),
    )
    try:
        t = await client.stream("hello", session="s-1", label="A", max_tokens=5)
    finally:
        await client.aclose()
    return t, seen[0]


async def test_line_separators_inside_a_token_and_crlf_endings_read_as_one_event_each() -> None:
    """U+2028, U+0085, \\x0b and friends are text, CRLF ends lines: SSE as the spec says
    (httpx's aiter_lines would split the token and count a malformed chunk)."""
    text = "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg\x1dh\x1ei"
    event = json.dumps({"id": "x", "choices": [{"delta": {"content": text}}]}, ensure_ascii=False)
    stop = json.dumps({"id": "x", "choices": [{"delta": {}, "finish_reason": "stop"}]})
    body = f"data: {event}\r\n\r\ndata: {stop}\r\n\r\ndata: [DONE]\r\n\r\n".encode()
    t, _ = await _one(body)
    assert t.malformed == 0
    assert t.text == text
    assert t.ending == "finish_reason stop and the end marker"


async def test_the_anthropic_dialect_reads_messages_streaming() -> None:
    """message_start's id, text deltas, the stop reason and message_stop, from /v1/messages."""
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1"}}),
        ("content_block_delta", {"type": "content_block_delta",
                                 "delta": {"type": "text_delta", "text": "Hi"}}),
        ("ping", {"type": "ping"}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    body = "".join(f"event: {name}\ndata: {json.dumps(d)}\n\n" for name, d in events).encode()
    t, request = await _one(body, dialect="anthropic")
    assert request.url.path == "/v1/messages"
    assert json.loads(request.content)["max_tokens"] == 5
    assert (t.stream_id, t.text, t.finish_reason, t.natural) == ("msg_1", "Hi", "end_turn", True)
    assert t.done_at is not None


async def test_the_session_travels_in_the_body_when_told_to() -> None:
    """--session-in body:metadata.session_id puts the id there and in no header."""
    _, request = await _one(b"data: [DONE]\n\n", session_in="body:metadata.session_id")
    assert json.loads(request.content)["metadata"] == {"session_id": "s-1"}
    assert "x-session-id" not in request.headers


async def test_a_sessions_prompts_take_turns_among_several_urls() -> None:
    """Replicas: a session's first prompt goes to the first URL, its second to the next."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200, headers=SSE, content=b"data: [DONE]\n\n")

    client = ChatClient(
        ["http://one", "http://two"], model="m", deadline=1.0,
        transport=httpx.MockTransport(handler),
    )  # fmt: skip
    try:
        for _ in range(3):
            await client.stream("p", session="s", label="A")
        await client.stream("p", session="other", label="B")
    finally:
        await client.aclose()
    assert hosts == ["one", "two", "one", "one"]
