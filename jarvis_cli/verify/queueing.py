"""How many prompts a server ran at once, and how long the others waited: a server with
a few slots queues the rest (llama.cpp's `--parallel`), which is slow, not hung.

Read off the transcripts alone: a prompt is in flight from its send to its end,
and streaming from its first chunk with text to its last; the wait is the time
to its first chunk with text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .client import Transcript
from .timings import quantile, summary_ms


def _most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    """The most spans (start, end) open at one moment; one that ends as another starts
    does not overlap it; a span of one instant still counts at that instant."""
    ends = [(max(end, start + 1e-6), -1) for start, end in spans]
    edges = sorted([(start, 1) for start, _ in spans] + ends)
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@dataclass(frozen=True, slots=True)
class Queueing:
    """What a batch of prompts saw: in flight at once, streaming at once, the waits."""

    in_flight: int
    streaming: int
    waits: tuple[float, ...]

    @classmethod
    def of(cls, streams: Sequence[Transcript]) -> Queueing:
        flight = [(t.sent_at, t.ended_at) for t in streams if t.ended_at is not None]
        spans = []
        waits = []
        for t in streams:
            texts = [c.at for c in t.chunks if c.content]
            if texts:
                spans.append((texts[0], texts[-1]))
                waits.append(texts[0] - t.sent_at)
        return cls(_most_at_once(flight), _most_at_once(spans), tuple(waits))

    @property
    def queued(self) -> bool:
        """Some prompts waited while fewer than all of them streamed."""
        return 0 < self.streaming < self.in_flight

    def describe(self) -> str:
        """`16 prompts in flight, at most 4 streamed at once (the rest waited their turn):
        wait for the first token p50 1.2 s, p99 3.1 s`."""
        p50, p99 = quantile(self.waits, 0.5), quantile(self.waits, 0.99)
        return (
            f"{self.in_flight} prompts in flight, at most {self.streaming} streamed at once "
            f"(the server queues the rest): wait for the first token p50 {p50:.1f} s, "
            f"p99 {p99:.1f} s; slow, not hung"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "in_flight_max": self.in_flight,
            "streaming_max": self.streaming,
            "wait": summary_ms(self.waits),
            "queued": self.queued,
        }
