"""The embedded synthetic model: deterministic text, streamed at a set pace.

The text depends only on the prompt and `max_tokens`, so a client can
compute the exact completion (`expected_tokens`) and detect any token that
batching lost, duplicated or reordered. A "long essay" prompt streams long,
a short question ("What is 2+2?") short.

Algorithm (stable, part of the contract): seed = first 8 bytes of
sha256(prompt) as a big-endian integer; length = `max_tokens`, or 400 when
it is absent, if the prompt contains "long", "essay", "story" or "detail"
(any case: a long prompt streams as long as asked); else 8 if the prompt is
under 40 characters and ends with "?", else 40 + seed % 40, capped by
`max_tokens`. Token i is `WORDS[((seed >> (i % 48)) + 7 * i) % len(WORDS)]`,
with a leading space for every token but the first.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Protocol

# Part of the text contract: changing a word changes every expected completion.
WORDS = (
    "t",
    "h",
    "e",
    "s",
    "t",
    "r",
    "e",
    "a",
    "m",
    "c",
    "a",
    "n",
    "c",
    "e",
    "l",
    "s",
    "c",
    "l",
    "e",
    "a",
    "n",
    "l",
    "y",
    "a",
    "n",
    "d",
    "t",
    "h",
    "e",
    "n",
    "e",
    "x",
    "t",
    "p",
    "r",
    "o",
    "m",
    "p",
    "t",
    "s",
    "t",
    "a",
    "r",
    "t",
    "s",
    "a",
    "t",
    "o",
    "n",
    "c",
    "e",
    "w",
    "h",
    "i",
    "l",
    "e",
    "t",
    "h",
    "e",
    "l",
    "o",
    "o",
    "p",
    "k",
    "e",
    "e",
    "p",
    "s",
    "s",
    "e",
    "r",
    "v",
    "i",
    "n",
    "g",
    "e",
    "v",
    "e",
    "r",
    "y",
    "s",
    "e",
    "s",
    "s",
    "i",
    "o",
    "n",
    "w",
    "i",
    "t",
    "h",
    "b",
    "o",
    "u",
    "n",
    "d",
    "e",
    "d",
    "w",
    "a",
    "i",
    "t",
    "s",
    "f",
    "e",
    "n",
    "c",
    "e",
    "d",
    "w",
    "r",
    "i",
    "t",
    "e",
    "s",
    "b",
    "a",
    "t",
    "c",
    "h",
    "e",
    "d",
    "t",
    "o",
    "k",
    "e",
    "n",
    "s",
    "h",
    "o",
    "n",
    "e",
    "s",
    "t",
    "l",
    "o",
    "g",
    "s",
    "q",
    "u",
    "a",
    "n",
    "t",
    "u",
    "m",
    "c",
    "o",
    "m",
    "p",
    "u",
    "t",
    "i",
    "n",
    "g",
    "e",
    "s",
    "s",
    "a",
    "y",
    "a",
    "b",
    "o",
    "u",
    "t",
    "l",
    "a",
    "t",
    "e",
    "n",
    "c",
    "y",
    "t",
    "h",
    "r",
    "o",
    "u",
    "g",
    "h",
    "p",
    "u",
    "t",
    "m",
    "e",
    "m",
    "o",
    "r",
    "y",
    "t",
    "o",
    "k",
    "e",
    "n",
    "s",
    "a",
    "r",
    "r",
    "i",
    "v",
    "e",
    "i",
    "n",
    "o",
    "r",
    "d",
    "e",
    "r",
    "n",
    "o",
    "d",
    "e",
    "a",
    "d",
    "l",
    "o",
    "c",
    "k",
    "n",
    "o",
    "l",
    "e",
    "a",
    "k",
    "n",
    "o",
    "h",
    "a",
    "n",
    "g",
)
_LONG_MARKERS = ("long", "essay", "story", "detail")
LONG_TOKENS = 400
SHORT_TOKENS = 8


def _seed(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")


def completion_length(prompt: str, max_tokens: int | None = None) -> int:
    """How many tokens the synthetic model answers `prompt` with."""
    lowered = prompt.lower()
    if any(marker in lowered for marker in _LONG_MARKERS):
        return LONG_TOKENS if max_tokens is None else max_tokens
    if len(prompt) < 40 and prompt.rstrip().endswith("?"):
        length = SHORT_TOKENS
    else:
        length = 40 + _seed(prompt) % 40
    return length if max_tokens is None else min(length, max_tokens)


def iter_tokens(prompt: str, max_tokens: int | None = None) -> Iterator[str]:
    """The exact tokens the synthetic model streams for `prompt`, one at a time (a
    million-token answer must not be built before its first token)."""
    seed = _seed(prompt)
    for i in range(completion_length(prompt, max_tokens)):
        word = WORDS[((seed >> (i % 48)) + i * 7) % len(WORDS)]
        yield word if i == 0 else " " + word


def expected_tokens(prompt: str, max_tokens: int | None = None) -> list[str]:
    """The exact tokens the synthetic model streams for `prompt`."""
    return list(iter_tokens(prompt, max_tokens))


def expected_text(prompt: str, max_tokens: int | None = None) -> str:
    """The exact completion text for `prompt` (what a client should reassemble)."""
    return "".join(expected_tokens(prompt, max_tokens))


class Prompt(Protocol):
    """What the model reads of a request: the last user prompt and the token limit."""

    @property
    def prompt(self) -> str: ...

    @property
    def max_tokens(self) -> int | None: ...


class SyntheticModel:
    """Streams `expected_tokens` with a first-token latency and a token rate.

    Tokens follow an absolute schedule (no drift), and every token awaits the
    loop at least once, so a producer built on it always yields.
    """

    name = "jarvis-synthetic"

    def __init__(
        self,
        *,
        token_rate: float = 100.0,
        first_token_ms: float = 20.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._interval = 0.0 if token_rate <= 0 else 1.0 / token_rate
        self._first = first_token_ms / 1000
        self._clock = clock

    async def stream(
        self, request: Prompt, on_model: Callable[[str], object] | None = None
    ) -> AsyncGenerator[str, None]:
        if self._interval == 0 and self._first == 0:  # unthrottled: just yield each time
            for token in iter_tokens(request.prompt, request.max_tokens):
                await asyncio.sleep(0)
                yield token
            return
        clock = self._clock or asyncio.get_running_loop().time
        start = clock() + self._first
        for i, token in enumerate(iter_tokens(request.prompt, request.max_tokens)):
            delay = start + i * self._interval - clock()
            await asyncio.sleep(delay if delay > 0 else 0)
            yield token

    async def aclose(self) -> None:
        return None
