"""`slow_reader`: one client stops reading without closing; other sessions stream on.

The slow client shrinks its receive buffer and never reads past the
response head. A server that writes synchronously, or holds a global lock
across a send, stalls everyone behind it; a correct one keeps the other
sessions' inter-token latency. The slow connection is closed at the end, so
`leaks` then checks that its stream was cleaned up too.
"""

from __future__ import annotations

import asyncio

from .. import wire
from ..results import Checks, ScenarioResult, quoted
from ..timings import summary_ms
from .baseline import PROMPT as READER_PROMPT
from .baseline import TOKENS as READER_TOKENS
from .context import Context, ms, ran_to_end

SLOW_PROMPT = "Long essay nobody reads"
SLOW_TOKENS = 2000
RCVBUF = 4096
READERS = 3


async def slow_reader(ctx: Context) -> ScenarioResult:
    checks = Checks("slow_reader")
    session = ctx.session("slow")
    address = ctx.address(session)
    chat = ctx.client.request(SLOW_PROMPT, session=session, max_tokens=SLOW_TOKENS)
    request = wire.request_bytes(address, chat)
    try:
        connection = await ctx.connect(address, rcvbuf=RCVBUF)
    except OSError as exc:
        checks.fail(f"slow client: cannot connect: {exc}")
        return checks.result("", {})

    async def head() -> None:
        await wire.send(connection, request)
        await connection.read_until(b"\r\n\r\n")

    try:
        hung, _ = await ctx.until_idle(head(), connection)
        if hung:
            checks.fail(
                f"slow client: hung: no response head and no byte on any other stream for "
                f"{ctx.plan.deadline:g} s",
                hang=True,
            )
    except OSError as exc:
        checks.fail(f"slow client: connection failed: {exc}")
    if checks.failed or not connection.streaming:
        connection.drop(reset=True)
        if not checks.failed:
            checks.fail(f"slow client: the stream did not start: {quoted(connection.received)}")
        return checks.result("", {})
    try:
        gaps = await _readers(ctx, checks)
    finally:
        connection.drop(reset=False)
    worst = max(gaps, default=0.0)
    metrics: dict[str, object] = {"readers": READERS, "reader_gaps": summary_ms(gaps)}
    summary = f"{READERS} sessions kept their pace beside a stalled reader (max gap {ms(worst)})"
    return checks.result(summary, metrics)


async def _readers(ctx: Context, checks: Checks) -> list[float]:
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                ctx.stream(
                    READER_PROMPT,
                    session=ctx.session("sr", i),
                    label=f"R{i}",
                    max_tokens=READER_TOKENS,
                )
            )
            for i in range(READERS)
        ]
    gaps: list[float] = []
    limit = ctx.gap_limit()
    for task in tasks:
        t = task.result()
        gaps += t.content_gaps()
        if await ran_to_end(checks, ctx, t, what="a reader beside the stalled one"):
            worst = max(t.content_gaps(), default=0.0)
            checks.expect(
                worst <= limit,
                f"{t.describe()}: a gap of {ms(worst)} between chunks beside the stalled "
                f"reader (limit {ms(limit)})",
            )
    return gaps
