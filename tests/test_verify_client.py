"""verify-hang's SSE client: transcripts judged from events, and the hard deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
from jarvis_cli.verify.client import ChatClient, Transcript


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
        t.absorb(data, at)
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
    assert "without a finish_reason chunk and [DONE]" in t.problem()


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
        lambda request: httpx.Response(200, headers={"x-stream-id": "s1"}, content=body())
    )
    client = ChatClient("http://test", model="m", deadline=0.3, transport=transport)
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
    client = ChatClient("http://test", model="m", deadline=1.0, transport=transport)
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
        return httpx.Response(200, content=done.encode())

    client = ChatClient(
        "http://test", model="m1", deadline=1.0, transport=httpx.MockTransport(handler)
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
