"""The synthetic model: deterministic, computable text at a set pace."""

from __future__ import annotations

import asyncio

from jarvis.server.chat import parse_chat_request
from jarvis.synthetic import (
    LONG_TOKENS,
    SHORT_TOKENS,
    SyntheticModel,
    completion_length,
    expected_text,
    expected_tokens,
)


def test_text_is_a_pure_function_of_prompt_and_max_tokens() -> None:
    """Same prompt, same text; another prompt, another text; max_tokens caps the length."""
    assert expected_text("Long essay about quantum computing") == expected_text(
        "Long essay about quantum computing"
    )
    assert expected_text("hello there") != expected_text("hello there!")
    assert len(expected_tokens("Long essay", max_tokens=7)) == 7
    assert expected_text("Long essay", 7) == "".join(expected_tokens("Long essay")[:7])


def test_long_essay_streams_long_and_a_short_question_short() -> None:
    """The classic test's prompts: "Long essay..." is long, "What is 2+2?" is short."""
    assert completion_length("Long essay about quantum computing") == LONG_TOKENS
    assert completion_length("What is 2+2?") == SHORT_TOKENS
    assert completion_length("Long essay", max_tokens=5000) == 5000, "long streams as asked"
    assert completion_length("What is 2+2?", max_tokens=5000) == SHORT_TOKENS
    assert 40 <= completion_length("tell me about the weather in paris today") < 80


async def test_model_streams_the_expected_tokens_at_the_configured_pace() -> None:
    """400 tokens/s for 8 tokens takes about 20 ms after a 30 ms first-token delay."""
    model = SyntheticModel(token_rate=400, first_token_ms=30)
    request = parse_chat_request(b'{"messages":[{"role":"user","content":"What is 2+2?"}]}')
    loop = asyncio.get_running_loop()
    start = loop.time()
    tokens = [t async for t in model.stream(request)]
    elapsed = loop.time() - start
    assert tokens == expected_tokens("What is 2+2?")
    assert elapsed >= 0.030 + 7 / 400 - 0.002
