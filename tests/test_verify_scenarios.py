"""The overlap judgement on made-up transcripts: what each check catches, without a server.

Under --strict the server is held to jarvis's contract (terminal chunk, [DONE],
end_reason, exact text); without it, only behaviour counts: timing, crossed
chunks, and length against the prompt's natural answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from jarvis.synthetic import expected_text
from jarvis_cli.chatapi import SSEEvent
from jarvis_cli.chatapi.dialect import OpenAI
from jarvis_cli.verify.client import ChatClient, Transcript
from jarvis_cli.verify.natural import Natural
from jarvis_cli.verify.plan import Expect, Plan
from jarvis_cli.verify.results import Checks, Status
from jarvis_cli.verify.scenarios.context import (
    LONG,
    LONG_TOKENS,
    SHORT,
    SHORT_TOKENS,
    Context,
)
from jarvis_cli.verify.scenarios.overlap import _judge_independent, _judge_supersede
from jarvis_cli.verify.target import Target


@pytest.fixture
def client() -> Iterator[ChatClient]:
    client = ChatClient(["http://unused"], model="jarvis-synthetic", deadline=1.0)
    yield client
    asyncio.run(client.aclose())


def context(
    client: ChatClient, expect: Expect = Expect.SUPERSEDE, *, strict: bool = True
) -> Context:
    target = Target("http://unused", "jarvis-synthetic", True, True, True, "/healthz", None, True)
    ctx = Context(Plan(expect=expect, cancel_wait=0.5, strict=strict), target, client, "t1", 0.0)
    # What calibration in fresh sessions would have found (the synthetic model's answers).
    ctx.naturals.know(LONG, LONG_TOKENS, Natural(len(A_TEXT), 1.5, deterministic=True))
    ctx.naturals.know(SHORT, SHORT_TOKENS, Natural(len(B_TEXT), 0.1, deterministic=True))
    return ctx


def absorb(t: Transcript, data: str, at: float) -> None:
    piece = OpenAI().read(SSEEvent("message", data))
    assert piece is not None
    t.absorb(piece, at)


def stream(
    label: str, prompt: str, max_tokens: int, sent_at: float, pieces: list[tuple[float, str]],
    *, end: str, stream_id: str,
) -> Transcript:  # fmt: skip
    """A transcript whose text arrives in `pieces`, then ends as `end` says: jarvis's
    `superseded`/`completed` (terminal chunk with end_reason, [DONE]), `stop` (a plain
    finish_reason stop and [DONE], no extension) or `close` (no terminator at all)."""
    t = Transcript(label, "s1", prompt, max_tokens, sent_at, status=200, stream_id=stream_id)
    for at, text in pieces:
        absorb(t, json.dumps({"id": stream_id, "choices": [{"delta": {"content": text}}]}), at)
    last = pieces[-1][0] if pieces else sent_at
    if end in ("superseded", "completed"):
        finish = "cancelled" if end == "superseded" else "stop"
        absorb(t, json.dumps(
            {"id": stream_id, "choices": [{"delta": {}, "finish_reason": finish}],
             "jarvis": {"end_reason": end}}
        ), last)  # fmt: skip
    elif end == "stop":
        absorb(t, json.dumps({"id": stream_id, "choices": [{"finish_reason": "stop"}]}), last)
    if end != "close":
        absorb(t, "[DONE]", last)
    t.ended_at = last
    return t


A_TEXT = expected_text(LONG, LONG_TOKENS)
B_TEXT = expected_text(SHORT, SHORT_TOKENS)


def b_stream() -> Transcript:
    return stream("B", SHORT, SHORT_TOKENS, 0.10, [(0.20, B_TEXT)], end="completed", stream_id="b")


def judged(ctx: Context, a: Transcript, b: Transcript) -> Checks:
    checks = Checks("overlap")
    judge = _judge_supersede if ctx.plan.expect is Expect.SUPERSEDE else _judge_independent
    asyncio.run(judge(checks, ctx, a, b))
    return checks


def test_a_superseded_a_and_an_exact_b_pass(client: ChatClient) -> None:
    """A cut at 0.12 s with a terminal event, B exact and after it: no failure."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (0.12, A_TEXT[9:20])],
               end="superseded", stream_id="a")  # fmt: skip
    checks = judged(context(client), a, b_stream())
    assert checks.failures == []
    assert checks.result("ok", {}).status is Status.PASS


def test_a_chunk_of_a_after_bs_first_chunk_is_two_streams_at_once(client: ChatClient) -> None:
    """The stream-id guard by arrival time: A still emitting after B started fails."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (0.25, A_TEXT[9:20])],
               end="superseded", stream_id="a")  # fmt: skip
    failures = "\n".join(judged(context(client), a, b_stream()).failures)
    assert failures.startswith("two streams of one session emitting at once: A a (session s1) ")
    assert "sent 1 chunk(s) after the first chunk of B b" in failures  # text, not the finish


def test_an_a_that_runs_to_completion_was_never_superseded(client: ChatClient) -> None:
    """A completed (and late): both the missing cancel and the bound are reported."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (1.5, A_TEXT[9:])],
               end="completed", stream_id="a")  # fmt: skip
    failures = "\n".join(judged(context(client), a, b_stream()).failures)
    assert "it was never superseded" in failures
    assert "ended 1400 ms after B was sent; the bound is 1000 ms" in failures


def test_an_a_cut_without_a_terminator_fails_even_when_fast(client: ChatClient) -> None:
    """A fenced A closed with no finish chunk nor [DONE] is not a clean end."""
    a = Transcript("A", "s1", LONG, LONG_TOKENS, 0.0, status=200, stream_id="a")
    absorb(a, json.dumps({"id": "a", "choices": [{"delta": {"content": A_TEXT[:9]}}]}), 0.05)
    a.error, a.ended_at = "RemoteProtocolError: incomplete chunked read", 0.15
    failures = "\n".join(judged(context(client), a, b_stream()).failures)
    assert "the connection broke mid-stream (RemoteProtocolError" in failures


def test_a_wrong_b_text_is_reported_with_where_it_differs(client: ChatClient) -> None:
    """B's text is compared with the synthetic model's, character by character."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9])], end="superseded",
               stream_id="a")  # fmt: skip
    b = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, B_TEXT[:3] + "X" + B_TEXT[4:])],
               end="completed", stream_id="b")  # fmt: skip
    failures = "\n".join(judged(context(client), a, b).failures)
    assert "text differs from the model's at character 3" in failures


def test_independent_accepts_two_complete_streams_side_by_side(client: ChatClient) -> None:
    """Under --expect independent, A streaming on beside B to completion is fine."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (1.5, A_TEXT[9:])],
               end="completed", stream_id="a")  # fmt: skip
    checks = judged(context(client, Expect.INDEPENDENT), a, b_stream())
    assert checks.failures == []


@pytest.mark.parametrize("end", ["stop", "close", "superseded"])
def test_without_strict_a_superseded_a_passes_however_it_ends(client: ChatClient, end: str) -> None:
    """A cut short (20 of its characters), ended by a plain `stop` + [DONE], by a plain
    close of the response, or by jarvis's terminal chunk: all pass, and the note says how."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (0.12, A_TEXT[9:20])],
               end=end, stream_id="a")  # fmt: skip
    checks = judged(context(client, strict=False), a, b_stream())
    assert checks.failures == []
    assert checks.result("ok", {}).status is Status.PASS


def test_without_strict_an_a_that_delivers_its_whole_answer_was_never_superseded(
    client: ChatClient,
) -> None:
    """A ends `stop` + [DONE] with its whole natural answer while B streamed: it was
    never superseded, however ordinary its ending."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (0.09, A_TEXT[9:])],
               end="stop", stream_id="a")  # fmt: skip
    failures = judged(context(client, strict=False), a, b_stream()).failures
    assert len(failures) == 1
    assert "delivered its whole answer" in failures[0]
    assert "it was never superseded" in failures[0]


def test_without_strict_two_streams_at_once_is_the_first_evidence_line(
    client: ChatClient,
) -> None:
    """A keeps emitting after B's first chunk and then is cut without a terminator and B
    is cut short too: the first line names the real failure, the rest follow."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (0.3, A_TEXT[9:20])],
               end="close", stream_id="a")  # fmt: skip
    b = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, B_TEXT[:4])], end="close", stream_id="b")
    failures = judged(context(client, strict=False), a, b).failures
    assert failures[0].startswith("two streams of one session emitting at once")
    assert "delivered 4 of the" in failures[1]
