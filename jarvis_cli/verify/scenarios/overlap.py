"""`overlap`: the classic manual test (docs/background.md), in many sessions, many rounds.

Per session, A ("Long essay about quantum computing") then B ("What is 2+2?"),
`--overlap-ms` after the server started answering A. Under `supersede`, A
counts as superseded when no chunk of A arrives after B's first chunk and A's
response ends within the cancel bound after B was sent; when the model is
deterministic, A's text is also a clean start of its natural answer, shorter
than it. B must deliver its whole answer: the very text a fresh session gets,
or, from a model that is not deterministic, an answer that ends with a natural
finish and the end marker (`context.ran_to_end`). How A ends (a finish reason
of any value, an end marker, an error event, a plain close) is reported, not
judged, unless --strict. Under `independent`: both deliver their whole answers,
neither carries the other's bytes, and a server that queues prompts beyond its
slots is reported with its figures (slow, not hung). Under `reject` and `queue`,
`busy.py` judges each pair: B refused at once and A whole, or A whole and then B.
"""

from __future__ import annotations

import asyncio

from ..client import Transcript
from ..plan import CANCEL_MARGIN_S, Expect
from ..queueing import Queueing
from ..results import Checks, ScenarioResult
from ..timings import summary_ms
from .busy import BUSY, judge_queue, judge_reject
from .context import (
    LONG,
    LONG_TOKENS,
    SHORT,
    SHORT_TOKENS,
    Context,
    at_once,
    ended,
    endings_note,
    ms,
    ran_to_end,
    text_is_part,
    text_is_right,
)

Pair = tuple[Transcript, Transcript]
#: How long B waits for the server to start answering A before it is sent anyway.
HEAD_WAIT_S = 1.0


async def overlap(ctx: Context) -> ScenarioResult:
    checks = Checks("overlap")
    sessions = [ctx.session("ov", i) for i in range(ctx.plan.sessions)]
    pairs: list[Pair] = []
    for round_no in range(1, ctx.plan.rounds + 1):
        batch = await _round(ctx, sessions, round_no)
        pairs += batch
        if any(a.hung or b.hung for a, b in batch):
            checks.note(f"stopped after round {round_no}: the server left requests unanswered")
            break
    supersede = ctx.plan.expect is Expect.SUPERSEDE
    exercised = [(a, b) for a, b in pairs if not _a_done_before_b(a, b)]
    judge = _JUDGES[ctx.plan.expect]
    for a, b in exercised:
        await judge(checks, ctx, a, b)
    if len(exercised) < len(pairs):
        checks.note(
            f"{len(pairs) - len(exercised)} pair(s) did not overlap: A had finished before "
            "B was sent (lower --overlap-ms)"
        )
    if not exercised and pairs:
        checks.skip("no pair overlapped: A always finished before B was sent")
    if supersede:
        endings_note(checks, [a for a, _ in exercised], "superseded streams")
    natural = None if ctx.plan.strict else await ctx.naturals.get(LONG, LONG_TOKENS)
    a_end = [a.ended_at - b.sent_at for a, b in exercised if a.ended_at is not None]
    b_ttft = [b.first_chunk_at - b.sent_at for _, b in exercised if b.first_chunk_at is not None]
    metrics: dict[str, object] = {
        "sessions": len(sessions),
        "pairs": len(pairs),
        "overlapped": len(exercised),
        "a_end_after_b_sent": summary_ms(a_end),
        "b_ttft": summary_ms(b_ttft),
        "late_a_chunks": sum(_late_chunks(a, b) for a, b in exercised),
        "a_natural": natural.describe() if natural else None,
    }
    if supersede:
        summary = (
            f"{len(exercised)} overlaps ({len(sessions)} sessions × {ctx.plan.rounds} rounds): "
            f"B completed, A superseded within {ms(max(a_end, default=0.0))}, "
            "no chunk of A after B's first"
        )
    elif ctx.plan.expect is Expect.REJECT:
        b_refused = [_answered(b) - b.sent_at for _, b in exercised if b.status == BUSY]
        metrics["b_refused"] = summary_ms(b_refused)
        summary = (
            f"{len(exercised)} overlaps: B refused with {BUSY} within "
            f"{ms(max(b_refused, default=0.0))}, A completed whole"
        )
    elif ctx.plan.expect is Expect.QUEUE:
        b_waits = [
            b.first_text_at - (a.last_byte_at or a.sent_at)
            for a, b in exercised
            if b.first_text_at is not None
        ]
        metrics["b_start_after_a_end"] = summary_ms(b_waits)
        summary = (
            f"{len(exercised)} overlaps: A completed, then B, its first text within "
            f"{ms(max(b_waits, default=0.0))} of A's end; never side by side"
        )
    else:
        summary = f"{len(exercised)} overlaps: both streams finished cleanly, nothing crossed"
        queueing = Queueing.of([t for pair in pairs for t in pair])
        metrics["queueing"] = queueing.to_json()
        if queueing.queued:
            summary += f"; {queueing.describe()}"
            checks.note(queueing.describe())
    return checks.result(summary, metrics)


async def _round(ctx: Context, sessions: list[str], round_no: int) -> list[Pair]:
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_pair(ctx, s, round_no)) for s in sessions]
    return [task.result() for task in tasks]


async def _pair(ctx: Context, session: str, round_no: int) -> Pair:
    """A, then B `--overlap-ms` after the server started answering A.

    Timed from A's response head, not from A's send: on a loaded machine a request
    can sit in a socket buffer for tens of milliseconds, and B must land while A
    streams, not overtake it. A server that does not answer A within a second gets
    B anyway. Each is hung only when it and every other stream of the run sat idle for
    the idle bound, so a hung server costs one bound, and a queue costs none.
    """
    answered = asyncio.Event()
    a_task = asyncio.create_task(
        ctx.client.stream(
            LONG, session=session, label=f"A{round_no}", max_tokens=LONG_TOKENS, answered=answered
        )
    )
    try:
        head = asyncio.ensure_future(answered.wait())
        await asyncio.wait({a_task, head}, timeout=HEAD_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        head.cancel()
        await asyncio.sleep(ctx.plan.overlap_s)
        b = await ctx.client.stream(
            SHORT,
            session=session,
            label=f"B{round_no}",
            max_tokens=SHORT_TOKENS,
        )
        return await a_task, b
    finally:
        a_task.cancel()  # only ever still running when this pair is itself cancelled


def _a_done_before_b(a: Transcript, b: Transcript) -> bool:
    return a.answered and a.ended_at is not None and a.ended_at < b.sent_at


def _late_chunks(a: Transcript, b: Transcript) -> int:
    return 0 if b.first_chunk_at is None else len(a.chunks_after(b.first_chunk_at))


def _answered(t: Transcript) -> float:
    return t.headers_at if t.headers_at is not None else t.ended_at or t.sent_at


async def _judge_supersede(checks: Checks, ctx: Context, a: Transcript, b: Transcript) -> None:
    if b.status == BUSY:
        checks.fail(
            f"{b.describe()}: refused with HTTP {BUSY} while {a.describe()} streamed: the "
            "server rejects a prompt in a busy session instead of superseding the running "
            "answer (--expect reject, if that is its promise)",
            primary=True,
        )
        return
    crossed = at_once(a, b)
    checks.expect(not crossed, crossed, primary=True)
    await ran_to_end(checks, ctx, b, what="B is the newest prompt of its session")
    a_ended = ended(checks, ctx, a)
    if a.hung or a.ended_at is None:
        return
    bound = ctx.plan.cancel_wait + CANCEL_MARGIN_S
    late = a.ended_at - b.sent_at
    checks.expect(
        late <= bound,
        f"{a.describe()}: ended {ms(late)} after B was sent; the bound is {ms(bound)} "
        f"(cancel wait {ctx.plan.cancel_wait:g} s + {CANCEL_MARGIN_S:g} s margin)",
    )
    if not a_ended:
        return
    if ctx.plan.strict:
        checks.expect(
            a.outcome != "completed",
            f"{a.describe()}: ran to completion although B arrived while it streamed: "
            f"it was never superseded{_queued_hint(a, b)}",
        )
        text_is_right(checks, ctx, a, whole=False)
        return
    await text_is_part(checks, ctx, a)
    natural = await ctx.naturals.get(a.prompt, a.max_tokens)
    if natural is None:
        checks.skip(f"A was cut short: no fresh session got a complete answer to {LONG!r}")
        return
    if not natural.deterministic:
        return  # superseded rests on timing alone: A's length varies anyway
    checks.expect(
        a.text != natural.text,
        f"{a.describe()}: delivered its whole answer ({len(a.text)} of {natural.chars} "
        f"characters) although B arrived while it streamed: it was never superseded"
        f"{_queued_hint(a, b)}",
    )


def _queued_hint(a: Transcript, b: Transcript) -> str:
    """What a server that queued B behind A did, in words ("" if it did not)."""
    first = b.first_text_at
    if first is None or a.last_byte_at is None or first < a.last_byte_at:
        return ""
    return "; B waited for it to end (the server queues: --expect queue)"


async def _judge_independent(checks: Checks, ctx: Context, a: Transcript, b: Transcript) -> None:
    for t in (a, b):
        await ran_to_end(checks, ctx, t, what="overlapping prompts run side by side (independent)")


_JUDGES = {
    Expect.SUPERSEDE: _judge_supersede,
    Expect.INDEPENDENT: _judge_independent,
    Expect.REJECT: judge_reject,
    Expect.QUEUE: judge_queue,
}
