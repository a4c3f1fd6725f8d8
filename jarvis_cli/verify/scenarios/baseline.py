"""`baseline`: one stream on an idle server completes; its TTFT, duration and gaps are
the yardstick the later scenarios' "undisturbed" is measured against, and its pace
(seconds per token) scales the budget of every scenario after it."""

from __future__ import annotations

from ..results import Checks, ScenarioResult
from ..timings import summary_ms
from .context import Context, intact, ms, text_is_right

PROMPT = "Long essay baseline"
TOKENS = 60


async def baseline(ctx: Context) -> ScenarioResult:
    checks = Checks("baseline")
    t = await ctx.stream(PROMPT, session=ctx.session("base"), label="baseline", max_tokens=TOKENS)
    metrics: dict[str, object] = {}
    if intact(checks, ctx, t):
        if ctx.plan.strict:
            checks.expect(t.outcome == "completed", f"{t.describe()}: ended {t.outcome}")
            text_is_right(checks, ctx, t)
        else:
            checks.expect(bool(t.text), f"{t.describe()}: answered, but with no text at all")
    if t.first_chunk_at is not None and t.ended_at is not None:
        gaps = t.content_gaps()
        ctx.baseline_gap = max(gaps, default=0.0)
        ctx.pace = (t.ended_at - t.sent_at) / TOKENS
        ctx.ttft = t.first_chunk_at - t.sent_at
        ids = "X-Stream-Id" if t.stream_id and not t.chunks[0].id else "in each event"
        carries = f"stream ids {ids}" if t.stream_id else "no stream ids"
        metrics = {
            "ttft_ms": round((t.first_chunk_at - t.sent_at) * 1000, 1),
            "duration_ms": round((t.ended_at - t.sent_at) * 1000, 1),
            "chunks": len(t.chunks),
            "characters": len(t.text),
            "gaps": summary_ms(gaps),
            "ending": t.ending,
            "stream_ids": bool(t.stream_id),
        }
        summary = (
            f"completed: TTFT {ms(t.first_chunk_at - t.sent_at)}, "
            f"{ms(t.ended_at - t.sent_at)} for {len(t.chunks)} chunks; {carries}; "
            f"ends with {t.ending}"
        )
        if not t.stream_id:
            checks.note("chunks carry no stream id: crossed streams are found by timing alone")
    else:
        summary = "no chunk arrived"
    return checks.result(summary, metrics)
