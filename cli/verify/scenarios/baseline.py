"""`baseline`: one stream on an idle server completes; its TTFT, duration and gaps are
the yardstick the later scenarios' "undisturbed" is measured against."""

from __future__ import annotations

from ..results import Checks, ScenarioResult
from ..timings import summary_ms
from .context import Context, ended_cleanly, ms, text_is_right

PROMPT = "Long essay baseline"
TOKENS = 40


async def baseline(ctx: Context) -> ScenarioResult:
    checks = Checks("baseline")
    t = await ctx.stream(PROMPT, session=ctx.session("base"), label="baseline", max_tokens=TOKENS)
    metrics: dict[str, object] = {}
    if ended_cleanly(checks, t):
        checks.expect(t.outcome == "completed", f"{t.describe()}: ended {t.outcome}")
        text_is_right(checks, ctx, t)
    if t.first_chunk_at is not None and t.ended_at is not None:
        gaps = t.content_gaps()
        ctx.baseline_gap = max(gaps, default=0.0)
        metrics = {
            "ttft_ms": round((t.first_chunk_at - t.sent_at) * 1000, 1),
            "duration_ms": round((t.ended_at - t.sent_at) * 1000, 1),
            "chunks": len(t.chunks),
            "gaps": summary_ms(gaps),
        }
        summary = (
            f"completed: TTFT {ms(t.first_chunk_at - t.sent_at)}, "
            f"{ms(t.ended_at - t.sent_at)} for {len(t.chunks)} chunks"
        )
    else:
        summary = "no chunk arrived"
    return checks.result(summary, metrics)
