"""The overlap judgement on made-up transcripts: what each check catches, without a server.

Under --strict the server is held to jarvis's contract (terminal chunk, [DONE],
end_reason, exact text); without it, only behaviour counts: timing, crossed
chunks, and length against the prompt's natural answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
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
    ran_to_end,
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
    ctx.naturals.know(LONG, LONG_TOKENS, Natural(A_TEXT, 1.5, deterministic=True))
    ctx.naturals.know(SHORT, SHORT_TOKENS, Natural(B_TEXT, 0.1, deterministic=True))
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
    t = Transcript(label, "s1", prompt, max_tokens, sent_at, status=200, stream_id=stream_id,
                   content_type="text/event-stream")  # fmt: skip
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
    assert "sent 1 chunk(s) of text after the first text of B b" in failures


def test_an_a_that_runs_to_completion_was_never_superseded(client: ChatClient) -> None:
    """A completed (and late): both the missing cancel and the bound are reported."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (1.5, A_TEXT[9:])],
               end="completed", stream_id="a")  # fmt: skip
    failures = "\n".join(judged(context(client), a, b_stream()).failures)
    assert "it was never superseded" in failures
    assert "ended 1400 ms after B was sent; the bound is 1000 ms" in failures


def test_an_a_cut_without_a_terminator_fails_even_when_fast(client: ChatClient) -> None:
    """A fenced A closed with no finish chunk nor [DONE] is not a clean end."""
    a = Transcript("A", "s1", LONG, LONG_TOKENS, 0.0, status=200, stream_id="a",
                   content_type="text/event-stream")  # fmt: skip
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


# -- text, judged wherever the model is deterministic ---------------------------------


def varying_context(client: ChatClient, *, says_complete: bool = True) -> Context:
    """Without --strict, against a model whose fresh answers differ (not deterministic)."""
    ctx = context(client, strict=False)
    ctx.naturals.know(LONG, LONG_TOKENS, Natural(A_TEXT[:40], 1.5, False, says_complete))
    ctx.naturals.know(SHORT, SHORT_TOKENS, Natural(B_TEXT[:10], 0.1, False, says_complete))
    return ctx


def superseded_a() -> Transcript:
    return stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:9]), (0.12, A_TEXT[9:20])],
                  end="stop", stream_id="a")  # fmt: skip


def test_a_deterministic_b_with_a_foreign_prefix_is_corruption_naming_the_extra_text(
    client: ChatClient,
) -> None:
    """A's unread tokens at the start of B (a reused queue): B is long enough, but its text
    is not its answer; the first evidence line says corrupted bytes and quotes the start
    of the foreign prefix, escaped and bounded."""
    leftover = "\x1b[31m left" + "over " * 20
    b = stream("B", SHORT, SHORT_TOKENS, 0.10, [(0.20, leftover + B_TEXT)], end="stop",
               stream_id="b")  # fmt: skip
    failures = judged(context(client, strict=False), superseded_a(), b).failures
    assert len(failures) == 1, failures
    assert failures[0].startswith("B b (session s1): B is the newest prompt of its session, but")
    assert (
        f"its text starts with {len(leftover)} character(s) that are not its answer"
        in (failures[0])
    )
    assert "('\\x1b[31m leftover over over'…)" in failures[0]
    assert "then the answer a fresh session gets" in failures[0]


def test_a_deterministic_b_with_a_foreign_suffix_or_other_text_is_corruption(
    client: ChatClient,
) -> None:
    """Extra text after the answer, or a different word inside it: corrupted bytes, with
    where it differs."""
    suffix = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, B_TEXT + " extra")], end="stop",
                    stream_id="b")  # fmt: skip
    failures = judged(context(client, strict=False), superseded_a(), suffix).failures
    assert (
        "after the whole answer a fresh session gets, 6 more character(s) (' extra')"
        in (failures[0])
    )
    swapped = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, "X" + B_TEXT[1:])], end="stop",
                     stream_id="b")  # fmt: skip
    failures = judged(context(client, strict=False), superseded_a(), swapped).failures
    assert (
        "corrupted bytes: its text differs from a fresh session's answer at character 0"
        in (failures[0])
    )


def test_a_deterministic_a_that_carries_foreign_text_is_corruption_too(client: ChatClient) -> None:
    """A superseded A must be a clean start of its answer: anything else is reported."""
    a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, "zzz" + A_TEXT[:9])], end="stop",
               stream_id="a")  # fmt: skip
    failures = judged(context(client, strict=False), a, b_stream()).failures
    assert failures[0].startswith("A a (session s1): corrupted bytes: its text differs")


def test_a_model_that_is_not_deterministic_is_never_failed_on_length(client: ChatClient) -> None:
    """B shorter, or longer, than any fresh answer, but ending with a natural finish and the
    end marker, is complete; A that delivered more than a fresh answer is not judged on it:
    supersede rests on timing and on no chunk of A after B's first."""
    for b_text in (B_TEXT[:2], B_TEXT + B_TEXT):
        b = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, b_text)], end="stop", stream_id="b")
        a = stream("A", LONG, LONG_TOKENS, 0.0, [(0.05, A_TEXT[:60]), (0.12, "other words")],
                   end="stop", stream_id="a")  # fmt: skip
        checks = judged(varying_context(client), a, b)
        assert checks.failures == [], checks.failures


def test_a_model_that_is_not_deterministic_needs_a_natural_finish_and_the_end_marker(
    client: ChatClient,
) -> None:
    """From a model that is not deterministic, a B that just closes is a lost prompt (its
    fresh answers end with a natural finish and the marker); when fresh answers do not end
    that way either, completeness is skipped, never passed or failed."""
    b = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, B_TEXT)], end="close", stream_id="b")
    failures = judged(varying_context(client), superseded_a(), b).failures
    assert failures == [
        "B b (session s1): B is the newest prompt of its session, but it ended with a plain "
        "close, where a fresh session's answer ends with a natural finish and the end marker"
    ]
    checks = judged(varying_context(client, says_complete=False), superseded_a(), b)
    assert checks.failures == []
    assert any("whether 'What is 2+2?' was answered in full" in s for s in checks.skipped)


def test_a_mismatch_asks_fresh_sessions_before_calling_the_model_deterministic() -> None:
    """Two fresh answers happened to agree, a third prompt's did not: before any
    corruption is reported, two more fresh sessions are asked; when they differ, the model
    is taken as not deterministic and the stream is judged by its ending alone."""
    answers = iter(["one two", "one two three", "one"])

    def handler(request: httpx.Request) -> httpx.Response:
        text = next(answers, "one")
        body = (
            f"data: {json.dumps({'choices': [{'delta': {'content': text}}]})}\n\n"
            f"data: {json.dumps({'choices': [{'finish_reason': 'stop'}]})}\n\ndata: [DONE]\n\n"
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async def go() -> tuple[Checks, Natural | None]:
        client = ChatClient(["http://peer"], model="m", deadline=1.0,
                            transport=httpx.MockTransport(handler))  # fmt: skip
        try:
            ctx = context(client, strict=False)
            # Learnt, not told: as a real run has it.
            ctx.naturals.know(SHORT, SHORT_TOKENS, Natural("one", 0.1, True), settled=False)
            b = stream("B", SHORT, SHORT_TOKENS, 0.1, [(0.2, "one two")], end="stop",
                       stream_id="b")  # fmt: skip
            checks = Checks("overlap")
            await ran_to_end(checks, ctx, b, what="B")
            return checks, await ctx.naturals.get(SHORT, SHORT_TOKENS)
        finally:
            await client.aclose()

    checks, natural = asyncio.run(go())
    assert checks.failures == []
    assert natural is not None
    assert not natural.deterministic
