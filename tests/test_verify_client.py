"""verify-hang's SSE client: transcripts judged from events, the idle bound (slow is not
hung), the headers every request carries, and the first request's set-up errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from jarvis_cli.chatapi import SessionIn, SSEEvent, dialect_named
from jarvis_cli.chatapi.dialect import OpenAI
from jarvis_cli.verify.client import ChatClient, Transcript
from jarvis_cli.verify.results import quoted
from jarvis_cli.verify.target import SetupError, first_request
from jarvis_cli.verify.wire import Address, request_bytes

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
    t = Transcript("A", "s1", "p", None, sent_at=0.0, status=200, content_type="text/event-stream")
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
    assert t.ending == "a natural finish (stop) and the end marker"


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


def test_endings_are_said_in_words_every_dialect_reads_alike() -> None:
    """A natural finish is 'a natural finish (stop)' or '(end_turn)', never an OpenAI field
    name; another finish is an early stop."""
    natural = transcript(
        (0.1, json.dumps({"id": "x", "choices": [{"delta": {}, "finish_reason": "stop"}]}))
    )
    assert natural.ending == "a natural finish (stop), then a plain close"
    early = transcript(
        (0.1, json.dumps({"id": "x", "choices": [{"finish_reason": "cancelled"}]})),
        (0.1, "[DONE]"),
    )
    assert early.ending == "an early stop (cancelled) and the end marker"


async def test_the_api_key_and_every_header_go_on_streamed_and_raw_requests() -> None:
    """--api-key and --header travel on the httpx request and in the bytes a raw socket
    writes (disconnect, slow_reader, hostile_input), and a --header wins over the key's
    header of the same name, whatever its case."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=SSE, content=b"data: [DONE]\n\n")

    client = ChatClient(
        ["http://test:8000"], model="m", deadline=1.0, api_key="k1",
        headers=(("X-Team", "blue"),), transport=httpx.MockTransport(handler),
    )  # fmt: skip
    try:
        await client.stream("p", session="s", label="A")
        await client.get_json("/v1/models")
    finally:
        await client.aclose()
    assert seen[0].headers["authorization"] == "Bearer k1"
    assert seen[0].headers["x-team"] == "blue"
    assert seen[1].headers["authorization"] == "Bearer k1"  # discovery and probes too
    raw = request_bytes(Address.of(client.base_url), client.request("p", session="s",
                                                                    max_tokens=3))  # fmt: skip
    assert b"\r\nAuthorization: Bearer k1\r\n" in raw
    assert b"\r\nX-Team: blue\r\n" in raw
    assert b"\r\nX-Session-Id: s\r\n" in raw
    replaced = ChatClient(["http://t"], model="m", deadline=1.0, api_key="k1",
                          headers=(("authorization", "Token t2"),))  # fmt: skip
    try:
        assert replaced.headers == {"authorization": "Token t2"}
    finally:
        await replaced.aclose()


def _sse_body(*pieces: tuple[float, bytes]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        for delay, data in pieces:
            await asyncio.sleep(delay)
            yield data

    return body()


async def test_a_stream_waiting_its_turn_while_others_stream_is_queued_not_hung() -> None:
    """A server with one slot: the second prompt gets no byte for longer than the idle
    bound, but the first streams all along, so the second is slow, never hung; and a
    stream that trickles comment bytes is slow too."""
    words = [(0.05, chunk("a", "w").encode()) for _ in range(16)]
    bodies = iter([
        [*words, (0.0, b"data: [DONE]\n\n")],  # streams for ~0.8 s
        [(0.8, chunk("b", "late").encode()), (0.0, b"data: [DONE]\n\n")],  # waits its turn
        [(0.1, b": keepalive\n")] * 8 + [(0.0, chunk("c", "slow").encode())],  # trickles
    ])  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=SSE, content=_sse_body(*next(bodies)))

    client = ChatClient(["http://test"], model="m", deadline=0.3,
                        transport=httpx.MockTransport(handler))  # fmt: skip
    try:
        first = asyncio.create_task(client.stream("p", session="s1", label="A"))
        await asyncio.sleep(0.01)
        second = await client.stream("p", session="s2", label="B")
        trickle = await client.stream("p", session="s3", label="C")
        await first
    finally:
        await client.aclose()
    assert not second.hung, second.problem()
    assert second.text == "late"
    assert not trickle.hung
    assert trickle.text == "slow"


async def test_the_first_refusal_the_set_up_explains_is_a_setup_error_naming_the_fix() -> None:
    """401, 404 and a 200 that is not a stream end the run with SetupError (exit 2): the
    message names the request, quotes the body (escaped, bounded) and says what to
    change; a 201 stream and a 503 are left to the scenarios."""
    cases = {
        "401": (httpx.Response(401, text="no key \x1b[2K"), ["--api-key KEY",
                "Authorization: Bearer KEY", "answered HTTP 401", "\\x1b[2K"]),
        "404": (httpx.Response(404, text="Not Found"), ["check --url (is http://test",
                "POST http://test/v1/chat/completions answered HTTP 404 'Not Found'"]),
        "json": (httpx.Response(200, json={"choices": []}), ["Content-Type 'application/json'",
                 "not an event stream", "--dialect", "--target FILE.toml"]),
    }  # fmt: skip
    for name, (response, said) in cases.items():
        client = ChatClient(["http://test"], model="m", deadline=1.0,
                            transport=httpx.MockTransport(lambda _, r=response: r))  # fmt: skip
        try:
            with pytest.raises(SetupError) as caught:
                await first_request(client, session="s", prompt="p", tokens=3)
        finally:
            await client.aclose()
        assert SetupError.exit_code == 2
        for text in said:
            assert text in str(caught.value), (name, str(caught.value))
    for response in (
        httpx.Response(201, headers=SSE, content=b"data: [DONE]\n\n"),
        httpx.Response(503, text="busy"),
    ):
        client = ChatClient(["http://test"], model="m", deadline=1.0,
                            transport=httpx.MockTransport(lambda _, r=response: r))  # fmt: skip
        try:
            await first_request(client, session="s", prompt="p", tokens=3)
        finally:
            await client.aclose()


def test_quoted_evidence_is_bounded_and_escaped() -> None:
    """What a server sent is quoted with control characters, quotes and backslashes
    escaped, and cut with an ellipsis."""
    assert quoted("a'b\\c\n\x1b") == "'a\\'b\\\\c\\n\\x1b'"
    assert quoted("x" * 10, limit=4) == "'xxxx'…"
    assert quoted(b"\xff ok") == "'\ufffd ok'"
