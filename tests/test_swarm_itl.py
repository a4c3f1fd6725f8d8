"""Inter-token latency counted per token, not per chunk: the bookkeeping with made-up
times, the token count read from the server's usage, and the locust user measuring a
server that batches 5 tokens per chunk every 75 ms (15 ms a token, not 75) and the real
`jarvis serve` with its 75 ms flush."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import pytest

from jarvis_cli.chatapi import SSEEvent, dialect_named
from jarvis_cli.swarm.itl import CHARS_PER_TOKEN, Pace

from .conftest import ServerProcess
from .swarms import asgi_server, single_user

Message = MutableMapping[str, Any]
#: The batching peer: CHUNKS chunks of CHUNK_TOKENS tokens, GAP_S apart.
CHUNKS = 6
CHUNK_TOKENS = 5
GAP_S = 0.075
#: One token of its text: 3 characters, so the ~4 chars/token estimate is visibly off.
TOKEN = " ab"  # noqa: S105 - model text, not a secret


def _arrivals(pace: Pace, chunks: int, text: str, gap: float, start: float = 10.0) -> None:
    for i in range(chunks):
        pace.chunk(text, start + i * gap)


def test_a_chunk_of_5_tokens_75_ms_after_the_last_is_5_gaps_of_15_ms() -> None:
    """Six chunks of 5 tokens 75 ms apart, the server counting 30 tokens: the 25 tokens
    after the first chunk arrived over 375 ms, 15 ms each; the per-chunk gap stays 75 ms."""
    pace = Pace()
    _arrivals(pace, 6, "x" * 20, 0.075)
    pace.count(30)
    assert not pace.estimated
    assert pace.itl == pytest.approx(0.015)
    assert pace.chunk_gap == pytest.approx(0.075)
    assert repr(pace) == "<Pace 6 chunks, 30 tokens (reported)>"


def test_without_a_count_tokens_are_estimated_at_4_chars_and_never_fewer_than_chunks() -> None:
    """No usage: 20 characters a chunk is 5 tokens (the same 15 ms); one short token per
    chunk (2 characters) is still one token per chunk, so ITL is the chunk gap."""
    batched = Pace()
    _arrivals(batched, 6, "x" * 20, 0.075)
    assert batched.estimated
    assert batched.tokens == 30
    assert batched.itl == pytest.approx(0.015)
    per_token = Pace()
    _arrivals(per_token, 10, " a", 0.02)
    assert per_token.tokens == 10
    assert per_token.itl == pytest.approx(per_token.chunk_gap) == pytest.approx(0.02)


def test_the_first_chunks_tokens_are_its_share_of_the_text() -> None:
    """A first chunk holding half the text holds half the tokens: they came with the first
    token, so only the other half count as gaps."""
    pace = Pace()
    pace.chunk("y" * 40, 1.0)
    pace.chunk("y" * 20, 1.1)
    pace.chunk("y" * 20, 1.2)
    pace.count(20)
    assert pace.itl == pytest.approx(0.2 / 10)


@pytest.mark.parametrize("texts", [[], ["one chunk"], ["all text", ""]])
def test_no_itl_below_two_chunks_or_without_text_after_the_first(texts: list[str]) -> None:
    """Nothing to divide: None, never a zero or a division error."""
    pace = Pace()
    for i, text in enumerate(texts):
        pace.chunk(text, float(i))
    assert pace.itl is None
    if len(texts) < 2:
        assert pace.chunk_gap is None


@pytest.mark.parametrize(
    ("dialect", "data", "tokens"),
    [
        ("openai", {"id": "c", "choices": [], "usage": {"completion_tokens": 30}}, 30),
        ("openai", {"id": "c", "choices": [{"delta": {"content": "a"}}]}, None),
        ("openai", {"id": "c", "choices": [], "usage": {"completion_tokens": True}}, None),
        ("openai", {"id": "c", "choices": [], "usage": {"completion_tokens": -1}}, None),
        ("openai", {"id": "c", "choices": [], "usage": {"completion_tokens": 3.0}}, None),
        (
            "anthropic",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 12},
            },
            12,
        ),
    ],
)
def test_the_dialects_read_the_servers_token_count(
    dialect: str, data: dict[str, Any], tokens: int | None
) -> None:
    """OpenAI's `usage.completion_tokens` and Anthropic's `usage.output_tokens` are the
    count; anything but a non-negative integer is none."""
    piece = dialect_named(dialect).read(SSEEvent("message", json.dumps(data)))
    assert piece is not None
    assert piece.tokens == tokens


def batching_peer(asked: list[bool]) -> Callable[..., Awaitable[None]]:
    """An OpenAI server that batches: CHUNKS chunks of CHUNK_TOKENS tokens, GAP_S apart,
    and the usage chunk only when the request asks for it (as OpenAI does). Whether each
    request asked goes to `asked`."""

    async def app(
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] != "/v1/chat/completions":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        options = json.loads(body).get("stream_options") or {}
        asked.append(options.get("include_usage") is True)
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def event(data: object) -> None:
            chunk = f"data: {json.dumps(data)}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        for i in range(CHUNKS):
            if i:
                await asyncio.sleep(GAP_S)
            delta = {"content": TOKEN * CHUNK_TOKENS}
            await event({"id": "b1", "choices": [{"delta": delta, "finish_reason": None}]})
        await event({"id": "b1", "choices": [{"delta": {}, "finish_reason": "length"}]})
        if asked[-1]:
            usage = {"prompt_tokens": 3, "completion_tokens": CHUNKS * CHUNK_TOKENS}
            await event({"id": "b1", "choices": [], "usage": usage})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


@pytest.fixture
def batching() -> Iterator[tuple[str, list[bool]]]:
    asked: list[bool] = []
    with asgi_server(batching_peer(asked)) as url:
        yield url, asked


def _values(rows: list[list[str]], name: str, column: int = 3) -> list[int]:
    return [int(row[column]) for row in rows if row[2] == name]


QUIET = {
    "LOCUST_CONVERSATIONS": "2",
    "LOCUST_INTERRUPT_RATE": "0",
    "LOCUST_DISCONNECT_RATE": "0",
    "LOCUST_THINK_TIME": "0.01",
}


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_the_locust_user_counts_itl_per_token_from_the_servers_usage(
    batching: tuple[str, list[bool]],
) -> None:
    """Against 5-token chunks 75 ms apart, the user asks for usage (stream_options), reads
    the server's 30 tokens and reports `itl` at a fifth of `chunk-gap` (~15 ms against ~75
    ms): per token, not per chunk. Both from the same chunks, so the ratio holds however
    late the peer's timers fire."""
    url, asked = batching
    sse, output = single_user(url, **QUIET)
    assert asked == [True, True]
    gaps, itls = _values(sse, "chunk-gap"), _values(sse, "itl")
    assert len(gaps) == len(itls) == 2, output
    for gap, itl in zip(gaps, itls, strict=True):
        assert gap >= GAP_S * 1000 - 1
        assert abs(itl * CHUNK_TOKENS - gap) <= 5, (itl, gap)
    assert _values(sse, "tokens-reported", column=4) == [CHUNKS * CHUNK_TOKENS] * 2
    assert not _values(sse, "itl-estimated")
    assert "Traceback" not in output


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_with_usage_off_the_tokens_are_estimated_and_reported_under_their_own_name(
    batching: tuple[str, list[bool]],
) -> None:
    """`--usage off`: no stream_options in the request, no count from the server; the
    tokens are estimated from the text (90 characters: 23 tokens at ~4 a token, not 30)
    and the ITL goes under `itl-estimated`, never `itl`."""
    url, asked = batching
    sse, _ = single_user(url, **QUIET, LOCUST_USAGE="off")
    assert asked == [False, False]
    chars = CHUNKS * CHUNK_TOKENS * len(TOKEN)
    estimate = -(-chars // CHARS_PER_TOKEN)
    assert _values(sse, "tokens-estimated", column=4) == [estimate] * 2
    assert not _values(sse, "itl")
    gaps, itls = _values(sse, "chunk-gap"), _values(sse, "itl-estimated")
    for gap, itl in zip(gaps, itls, strict=True):
        later = estimate * (CHUNKS - 1) / CHUNKS
        assert abs(itl * later - gap * (CHUNKS - 1)) <= later, (itl, gap)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_against_jarvis_serve_itl_is_the_models_pace_not_the_75_ms_flush(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """`jarvis serve` at its defaults (100 tokens/s, 75 ms flush): each chunk carries ~7
    tokens, so `chunk-gap` is ~75 ms while `itl`, from the server's usage, is the model's
    own ~10 ms a token; every stream's 60 tokens are the server's count."""
    server = server_factory()
    sse, output = single_user(server.url, **QUIET, LOCUST_PROMPT_MIX="long", LOCUST_MAX_TOKENS="60")
    gaps, itls = _values(sse, "chunk-gap"), _values(sse, "itl")
    assert len(gaps) == len(itls) == 2, output
    for gap, itl in zip(gaps, itls, strict=True):
        assert 60 <= gap <= 150, gap
        assert 8 <= itl <= 20, itl
        assert gap >= 4 * itl
    assert _values(sse, "tokens-reported", column=4) == [60, 60]
