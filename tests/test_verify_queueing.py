"""A server that queues prompts beyond its slots, read off transcripts: how many were in
flight, how many streamed at once, how long the rest waited (slow, not hung)."""

from __future__ import annotations

from jarvis_cli.verify.client import Chunk, Transcript
from jarvis_cli.verify.queueing import Queueing


def served(sent: float, first: float, last: float) -> Transcript:
    t = Transcript("A", "s", "p", None, sent_at=sent, status=200)
    t.chunks = [Chunk(first, "x", "w"), Chunk(last, "x", "w")]
    t.ended_at = last
    return t


def test_sixteen_prompts_on_four_slots_are_queueing_with_their_waits() -> None:
    """16 prompts sent at once, served 4 at a time, 1 s each: 16 in flight, 4 streaming at
    once, waits 0, 1, 2 and 3 s; described with its figures and as slow, not hung."""
    streams = [served(0.0, wave, wave + 1.0) for wave in (0.0, 1.0, 2.0, 3.0) for _ in range(4)]
    queueing = Queueing.of(streams)
    assert (queueing.in_flight, queueing.streaming) == (16, 4)
    assert queueing.queued
    assert queueing.describe() == (
        "16 prompts in flight, at most 4 streamed at once (the server queues the rest): "
        "wait for the first token p50 1.0 s, p99 3.0 s; slow, not hung"
    )
    assert queueing.to_json()["wait"] == {
        "count": 16, "p50_ms": 1000.0, "p99_ms": 3000.0, "max_ms": 3000.0
    }  # fmt: skip


def test_prompts_that_all_stream_at_once_are_not_queueing() -> None:
    """Side by side, each from its first chunk: nothing queued. A stream that ends as the
    next starts does not count as two at once."""
    assert not Queueing.of([served(0.0, 0.01, 1.0) for _ in range(8)]).queued
    relay = Queueing.of([served(0.0, 0.0, 1.0), served(1.0, 1.0, 2.0)])
    assert (relay.in_flight, relay.streaming) == (1, 1)
