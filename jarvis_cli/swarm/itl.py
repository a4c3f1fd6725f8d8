"""Inter-token latency counted per token, not per chunk, from a stream's chunk arrivals.

A server that batches (jarvis serve flushes every 75 ms) sends several tokens per SSE
chunk: a chunk of 5 tokens arriving 75 ms after the previous one is 5 inter-token gaps
of 15 ms, not one of 75 ms (the error of vLLM #27485 and inference-perf #410). So the
per-token ITL of a stream is the time from its first content chunk to its last, divided
by the tokens that arrived after the first chunk (the first chunk's tokens are its
time to first token). The per-chunk gap is kept beside it, named as such.

The token count is the server's own when it reports one (OpenAI `usage.completion_tokens`,
asked for with `stream_options.include_usage`; Anthropic `usage.output_tokens`) and the
stream completed, so the count covers every token the client read. Otherwise it is
estimated from the text: ~4 characters a token (English text through a BPE tokenizer),
and never fewer tokens than chunks. Which tokens the first chunk held is its share of
the text. Pure bookkeeping, no clock: the caller passes each arrival time, so a test
drives it with made-up times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The estimate when the server reports no count: characters of text per token.
CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class Pace:
    """When a stream's content chunks arrived and how much text each carried."""

    first_at: float | None = None
    last_at: float | None = None
    chunks: int = 0
    #: Characters of the first content chunk, and of all of them.
    first_chars: int = 0
    chars: int = 0
    #: Tokens the server reported for the stream, when it should be believed (see `count`).
    reported: int | None = None

    def __repr__(self) -> str:
        source = "estimated" if self.estimated else "reported"
        return f"<Pace {self.chunks} chunks, {self.tokens:g} tokens ({source})>"

    def chunk(self, text: str, now: float) -> None:
        """One content chunk (non-empty text) arrived at `now` (seconds, any clock)."""
        if self.first_at is None:
            self.first_at = now
            self.first_chars = len(text)
        self.last_at = now
        self.chunks += 1
        self.chars += len(text)

    def count(self, tokens: int) -> None:
        """The server's token count for the whole stream, to be used instead of the estimate.

        Give it only for a stream the client read to its natural end: a cut stream's
        count may include tokens that were generated but never sent."""
        self.reported = tokens

    @property
    def estimated(self) -> bool:
        return self.reported is None

    @property
    def tokens(self) -> float:
        """The stream's tokens: the server's count, else the estimate from the text."""
        if self.reported is not None:
            return float(self.reported)
        return float(max(self.chunks, math.ceil(self.chars / CHARS_PER_TOKEN)))

    @property
    def chunk_gap(self) -> float | None:
        """Mean seconds between consecutive content chunks (None below two chunks)."""
        if self.chunks < 2 or self.first_at is None or self.last_at is None:
            return None
        return (self.last_at - self.first_at) / (self.chunks - 1)

    @property
    def itl(self) -> float | None:
        """Mean seconds between tokens: the time from the first chunk to the last over the
        tokens that came after the first chunk (None below two chunks or with no text
        after the first chunk)."""
        if self.chunks < 2 or self.first_at is None or self.last_at is None or not self.chars:
            return None
        later = self.tokens * (self.chars - self.first_chars) / self.chars
        if later <= 0:
            return None
        return (self.last_at - self.first_at) / later
