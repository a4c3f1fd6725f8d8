"""`disconnect`: the client leaves, before the first token and mid-stream, by FIN and by RST.

The server's live streams for that session must drop to zero within 1 s
(read from `/v1/streams`, else from the log), and a new prompt in the same
session must then complete: the symptom a user sees otherwise is a chat
that stays wedged. A 409 to that prompt (a server that rejects prompts in a busy
session, and has not yet noticed the client left) is retried until the same 1 s
bound has passed since the drop.

A server that offers resume may hold a dropped answer for a reattach (a reload picks
it up): its bound is the grace (`--detach-grace`, `Context.grace`) plus that 1 s. The
four cases run at once, so the grace is waited out once. Past the bound, the session
is watched an idle bound more, so that the failure says how long the answer really ran.
"""

from __future__ import annotations

import asyncio

from .. import serverlog, wire
from ..plan import CLEANUP_BOUND_S
from ..results import Checks, ScenarioResult, quoted
from ..timings import summary_ms
from .busy import refused
from .context import (
    LONG,
    LONG_TOKENS,
    SHORT,
    SHORT_TOKENS,
    Context,
    ms,
    ran_to_end,
)

CASES = [(when, how) for when in ("before-first-token", "mid-stream") for how in ("fin", "rst")]
POLL_S = 0.05


async def disconnect(ctx: Context) -> ScenarioResult:
    checks = Checks("disconnect")
    log_mark = None
    if ctx.target.log_path is not None:
        log_mark = await asyncio.to_thread(serverlog.size, ctx.target.log_path)
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_case(ctx, checks, w, h, log_mark)) for w, h in CASES]
    cleared = [s for s in (t.result() for t in tasks) if s is not None]
    metrics: dict[str, object] = {"cases": len(CASES), "cleanup": summary_ms(cleared)}
    if ctx.grace:
        metrics.update(
            grace_s=ctx.grace,
            bound_s=ctx.cleanup_bound,
            held=sum(1 for s in cleared if s > CLEANUP_BOUND_S),
        )
    drops = f"{len(CASES)} drops (FIN/RST, before the first token and mid-stream)"
    if cleared:
        summary = f"{drops}: {_ended(ctx, cleared)}, each session usable again"
    else:
        # Nothing measured the cleanup: say what was checked, never "within 0 ms".
        summary = f"{drops}: each session usable again; cleanup not measured"
    return checks.result(summary, metrics)


def _ended(ctx: Context, cleared: list[float]) -> str:
    """How the dropped answers ended, in words: at once, or held for a reattach (those
    that lived on past the cleanup bound a server without a grace gets)."""
    if not ctx.grace:
        return f"cleaned up within {ms(max(cleared))}"
    bound = f"({ctx.grace_words()})"
    held = [s for s in cleared if s > CLEANUP_BOUND_S]
    prompt = [s for s in cleared if s <= CLEANUP_BOUND_S]
    if not held:
        return f"cleaned up within {ms(max(cleared))} {bound}"
    if not prompt:
        ended = f"ended {_span(held)} after its client left"
        return f"each answer was held for a reattach and {ended} {bound}"
    return (
        f"{len(held)} held for a reattach, ending {_span(held)} after their client left, "
        f"{len(prompt)} cleaned up within {ms(max(prompt))} {bound}"
    )


def _span(seconds: list[float]) -> str:
    low, high = min(seconds), max(seconds)
    return f"{high:.1f} s" if high - low < 0.05 else f"{low:.1f} to {high:.1f} s"


async def _case(
    ctx: Context, checks: Checks, when: str, how: str, log_mark: int | None
) -> float | None:
    label = f"{when}/{how}"
    session = ctx.session("dc", when.partition("-")[0], how)
    connection = await open_stream(ctx, checks, label, session, mid_stream=when == "mid-stream")
    if connection is None:
        return None
    if when == "before-first-token" and b"data:" in connection.received:
        checks.note(f"{label}: a chunk had already arrived when the client left")
    connection.drop(reset=how == "rst")
    dropped = ctx.clock()
    cleared = await _wait_cleared(ctx, checks, label, session, dropped, log_mark)
    bound = ctx.cleanup_bound
    while True:
        again = await ctx.stream(
            SHORT, session=session, label=f"after {label}", max_tokens=SHORT_TOKENS
        )
        if not refused(again) or ctx.clock() - dropped >= bound:
            break
        await asyncio.sleep(POLL_S)  # still busy with the stream of the client who left
    what = "the session must be usable again"
    if refused(again):
        what += f" within {bound:g} s of the drop"
    await ran_to_end(checks, ctx, again, what=what)
    return cleared


async def open_stream(
    ctx: Context, checks: Checks, label: str, session: str, *, mid_stream: bool
) -> wire.Connection | None:
    """A long stream on a raw connection, read up to its head (or its first chunk)."""
    address = ctx.address(session)
    chat = ctx.client.request(LONG, session=session, max_tokens=LONG_TOKENS)
    request = wire.request_bytes(address, chat)
    try:
        connection = await ctx.connect(address)
    except OSError as exc:
        checks.fail(f"{label}: cannot connect: {exc}")
        return None

    async def head() -> None:
        await wire.send(connection, request)
        await connection.read_until(b"\r\n\r\n")
        if mid_stream and connection.streaming:
            await connection.read_until(b"data:")

    try:
        hung, _ = await ctx.until_idle(head(), connection)
    except OSError as exc:
        connection.drop(reset=True)
        checks.fail(f"{label}: connection failed: {exc}")
        return None
    if hung:
        connection.drop(reset=True)
        what = "a first event" if mid_stream else "a response head"
        checks.fail(
            f"{label}: hung: no byte for {ctx.plan.deadline:g} s waiting for {what}, and "
            "none on any other stream of the run meanwhile",
            hang=True,
        )
        return None
    if not connection.streaming or (mid_stream and b"data:" not in connection.received):
        connection.drop(reset=True)
        checks.fail(f"{label}: the stream did not start: {quoted(connection.received)}")
        return None
    return connection


async def _wait_cleared(
    ctx: Context, checks: Checks, label: str, session: str, dropped: float, log_mark: int | None
) -> float | None:
    """Seconds until the session has no live stream, or None (failed or not checkable)."""
    if not ctx.target.has_streams and (ctx.target.log_path is None or log_mark is None):
        checks.skip("cleanup after a disconnect: no /v1/streams and no log to read it from")
        return None
    bound = ctx.cleanup_bound
    while True:
        gone = await _gone(ctx, session, log_mark)
        elapsed = ctx.clock() - dropped
        if gone:
            checks.confirm()
            return elapsed
        if elapsed >= bound:
            break
        await asyncio.sleep(POLL_S)
    source = "GET /v1/streams" if ctx.target.has_streams else "no stream_end in the log"
    if not ctx.grace:
        checks.fail(
            f"{label}: session {session} still has a live stream {CLEANUP_BOUND_S:g} s "
            f"after the client left ({source})"
        )
        return None
    # Held past the grace: watch on (an idle bound more) to say how long it really ran.
    watch_to = bound + ctx.plan.deadline
    while elapsed < watch_to and not gone:
        await asyncio.sleep(POLL_S)
        gone = await _gone(ctx, session, log_mark)
        elapsed = ctx.clock() - dropped
    ran = (
        f"it ended {elapsed:.1f} s after the client left"
        if gone
        else f"it was still live {watch_to:g} s after the client left"
    )
    checks.fail(
        f"{label}: session {session} still had a live stream {bound:g} s after the client "
        f"left ({source}), past the grace for a reattach ({_grace_origin(ctx)}) + "
        f"{CLEANUP_BOUND_S:g} s: {ran}"
    )
    return None


async def _gone(ctx: Context, session: str, log_mark: int | None) -> bool:
    """Whether `session` has no live stream now (`/v1/streams`, else the log)."""
    if ctx.target.has_streams:
        live = await ctx.live_streams(session)
        return live is not None and not live
    log_path = ctx.target.log_path
    assert log_path is not None
    assert log_mark is not None
    return await asyncio.to_thread(serverlog.session_ended, log_path, log_mark, session)


def _grace_origin(ctx: Context) -> str:
    """The grace and where it came from, as a verdict names it."""
    if ctx.plan.detach_grace is not None:
        return f"--detach-grace {ctx.grace:g} s"
    return (
        f"{ctx.grace:g} s, the default for a server that offers resume: give yours with "
        "--detach-grace"
    )
