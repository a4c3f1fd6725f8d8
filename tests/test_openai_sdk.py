"""The official `openai` Python SDK, unchanged, talks to jarvis: streamed and whole
completions, usage, custom headers, and errors surface as the SDK's own exceptions."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from jarvis.synthetic import expected_text, expected_tokens

from .conftest import ServerProcess

pytestmark = pytest.mark.e2e

MODEL = "jarvis-synthetic"
SHORT = "What is 2+2?"
MEDIUM = "Explain how a stream is cancelled when a new prompt arrives"


@pytest.fixture
def client(shared_server: ServerProcess) -> Iterator[openai.OpenAI]:
    """A sync SDK client on the shared server: every call bounded, no retries."""
    with openai.OpenAI(
        base_url=f"{shared_server.url}/v1", api_key="x", timeout=10.0, max_retries=0
    ) as sdk:
        yield sdk


def user(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def test_sdk_stream_reassembles_exactly_the_synthetic_text(client: openai.OpenAI) -> None:
    """`stream=True` yields ChatCompletionChunks whose deltas join to exactly the synthetic
    model's text; every chunk has the same id (the X-Stream-Id), the first delta has the
    assistant role, and the last chunk says `finish_reason="stop"`."""
    with client.chat.completions.create(model=MODEL, messages=user(MEDIUM), stream=True) as stream:
        chunks = list(stream)
        stream_id = stream.response.headers["x-stream-id"]
    assert chunks
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == expected_text(MEDIUM)
    assert {chunk.id for chunk in chunks} == {stream_id}
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk.model for chunk in chunks} == {MODEL}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)


def test_sdk_stream_include_usage_ends_with_a_usage_only_chunk(client: openai.OpenAI) -> None:
    """With `stream_options={"include_usage": True}` the last chunk has `choices == []` and
    a usage block counting every token streamed; no earlier chunk carries usage."""
    with client.chat.completions.create(
        model=MODEL,
        messages=user(SHORT),
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    *content_chunks, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == len(expected_tokens(SHORT))
    assert last.usage.prompt_tokens == len(SHORT.split())
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(chunk.usage is None for chunk in content_chunks)
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks if c.choices)
    assert text == expected_text(SHORT)


def test_sdk_whole_completion_has_the_same_text_and_usage(client: openai.OpenAI) -> None:
    """Without `stream`, `create` returns a ChatCompletion holding the same text as the
    stream would, `finish_reason="stop"`, and a consistent usage block."""
    completion = client.chat.completions.create(model=MODEL, messages=user(MEDIUM))
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_text(MEDIUM)
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == len(expected_tokens(MEDIUM))
    assert completion.usage.prompt_tokens == len(MEDIUM.split())
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_sdk_max_completion_tokens_caps_the_text(client: openai.OpenAI) -> None:
    """`max_completion_tokens=5` cuts the text to its first 5 tokens and the SDK sees
    `finish_reason="length"`."""
    completion = client.chat.completions.create(
        model=MODEL, messages=user(MEDIUM), max_completion_tokens=5
    )
    assert completion.choices[0].message.content == expected_text(MEDIUM, 5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


def test_sdk_extra_headers_session_id_reaches_the_server(
    client: openai.OpenAI, shared_server: ServerProcess
) -> None:
    """`extra_headers={"X-Session-Id": ...}` is honoured: the response echoes the session
    and the server logs the stream under it."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=user(SHORT), extra_headers={"X-Session-Id": "sdk-session-1"}
    )
    completion = raw.parse()
    assert raw.headers["x-session-id"] == "sdk-session-1"
    assert completion.id == raw.headers["x-stream-id"]
    assert completion.choices[0].message.content == expected_text(SHORT)
    event = shared_server.wait_for_event(
        "stream_start", session="sdk-session-1", trace=raw.headers["x-trace-id"]
    )
    assert event["stream_id"] == completion.id


def test_sdk_bad_request_raises_bad_request_error(client: openai.OpenAI) -> None:
    """An empty `messages` list surfaces as `openai.BadRequestError`, status 400, with the
    error's message, type, param and code parsed by the SDK."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[])
    exc = caught.value
    assert exc.status_code == 400
    assert exc.param == "messages"
    assert exc.code == "invalid_request"
    assert exc.type == "invalid_request_error"
    assert exc.body == {
        "message": "messages must be a non-empty list",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "invalid_request",
    }


def test_sdk_bad_session_header_raises_bad_request_error(client: openai.OpenAI) -> None:
    """A streamed request with an invalid X-Session-Id fails before any chunk, as
    `openai.BadRequestError` naming the header."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=user(SHORT),
            stream=True,
            extra_headers={"X-Session-Id": "has space"},
        )
    assert caught.value.status_code == 400
    assert caught.value.param == "X-Session-Id"
    assert caught.value.code == "invalid_session_id"


def test_sdk_lists_the_served_model(client: openai.OpenAI) -> None:
    """`models.list()` returns the one model the server answers as."""
    assert [model.id for model in client.models.list()] == [MODEL]
