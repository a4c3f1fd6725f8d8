"""The overlap judgement on made-up transcripts: what each check catches, without a server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from jarvis_cli.verify.client import ChatClient, Transcript
from jarvis_cli.verify.plan import Expect, Plan
from jarvis_cli.verify.results import Checks, Status
from jarvis_cli.verify.scenarios.context import LONG, LONG_TOKENS, SHORT, SHORT_TOKENS, Context
from jarvis_cli.verify.scenarios.overlap import _judge_independent, _judge_supersede
from jarvis_cli.verify.target import Target

from jarvis.synthetic import expected_text


@pytest.fixture
def client() -> Iterator[ChatClient]:
    client = ChatClient("http://unused", model="jarvis-synthetic", deadline=1.0)
    yield client
    asyncio.run(client.aclose())


def context(client: ChatClient, expect: Expect = Expect.SUPERSEDE) -> Context:
    target = Target("http://unused", "jarvis-synthetic", True, True, "/healthz", None, True)
    return Context(Plan(expect=expect, cancel_wait=0.5), target, client, "t1", 0.0)


def stream(
    label: str, prompt: str, max_tokens: int, sent_at: float, pieces: list[tuple[float, str]],
    *, end: str, stream_id: str,
) -> Transcript:  # fmt: skip
    """A transcript whose text arrives in `pieces`, then ends with `end` and [DONE]."""
    t = Transcript(label, "s1", prompt, max_tokens, sent_at, status=200, stream_id=stream_id)
    for at, text in pieces:
        t.absorb(json.dumps({"id": stream_id, "choices": [{"delta": {"content": text}}]}), at)
    last = pieces[-1][0] if pieces else sent_at
    finish = "cancelled" if end == "superseded" else "stop"
    t.absorb(
        json.dumps(
            {"id": stream_id, "choices": [{"delta": {}, "finish_reason": finish}],
             "jarvis": {"end_reason": end}}
        ),
        last,
    )  # fmt: skip
    t.absorb("[DONE]", last)
    t.ended_at = last
    return t


A_TEXT = expected_text(LONG, LONG_TOKENS)
B_TEXT = expected_text(SHORT, SHORT_TOKENS)


def b_stream() -> Transcript:
    return stream("B", SHORT, SHORT_TOKENS, 0.10, [(0.20, B_TEXT)], end="completed", stream_id="b")


def judged(ctx: Context, a: Transcript, b: Transcript) -> Checks:
    checks = Checks("overlap")
    judge = _judge_supersede if ctx.plan.expect is Expect.SUPERSEDE else _judge_independent
    judge(checks, ctx, a, b)
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
    assert "2 chunk(s) arrived after the first chunk of B b (session s1)" in failures


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
    a.absorb(json.dumps({"id": "a", "choices": [{"delta": {"content": A_TEXT[:9]}}]}), 0.05)
    a.error, a.ended_at = "RemoteProtocolError: incomplete chunked read", 0.15
    failures = "\n".join(judged(context(client), a, b_stream()).failures)
    assert "connection ended without a terminator" in failures


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
