"""`isolation`: overlaps in session X never disturb session Y's stream.

Y streams baseline's prompt while three prompts land in X 30 ms apart. Y must
deliver its whole answer with no gap between chunks beyond the baseline's plus
the probe threshold; every X stream must still end, uncorrupted (from a
deterministic model, a clean start of its answer). Under `reject` an X prompt
refused with 409 at once is an ending too.
"""

from __future__ import annotations

import asyncio

from ..plan import Expect
from ..results import Checks, ScenarioResult
from .baseline import PROMPT as Y_PROMPT
from .baseline import TOKENS as Y_TOKENS
from .busy import refusal_ok, refused
from .context import LONG, Context, ended, ms, ran_to_end, text_is_part

X_PROMPTS = 3
X_SPACING_S = 0.03
X_TOKENS = 40


async def isolation(ctx: Context) -> ScenarioResult:
    checks = Checks("isolation")
    y_session, x_session = ctx.session("iso", "y"), ctx.session("iso", "x")
    async with asyncio.TaskGroup() as group:
        y_task = group.create_task(
            ctx.stream(Y_PROMPT, session=y_session, label="Y", max_tokens=Y_TOKENS)
        )
        await asyncio.sleep(ctx.plan.overlap_s)
        x_tasks = []
        for i in range(X_PROMPTS):
            if i:
                await asyncio.sleep(X_SPACING_S)
            x_tasks.append(
                group.create_task(
                    ctx.stream(LONG, session=x_session, label=f"X{i}", max_tokens=X_TOKENS)
                )
            )
    y = y_task.result()
    worst = max(y.content_gaps(), default=0.0)
    if await ran_to_end(checks, ctx, y, what="Y is alone in its session"):
        limit = ctx.gap_limit()
        checks.expect(
            worst <= limit,
            f"{y.describe()}: a gap of {ms(worst)} between chunks while session X overlapped "
            f"(limit {ms(limit)})",
        )
    for task in x_tasks:
        x = task.result()
        if ctx.plan.expect is Expect.REJECT and refused(x):
            refusal_ok(checks, ctx, x, running=None)
        elif ended(checks, ctx, x):
            await text_is_part(checks, ctx, x)
    metrics: dict[str, object] = {
        "y_max_gap_ms": round(worst * 1000, 1),
        "x_endings": [task.result().ending for task in x_tasks],
    }
    summary = f"Y completed intact beside {X_PROMPTS} overlapping prompts in X (gap ≤ {ms(worst)})"
    return checks.result(summary, metrics)
