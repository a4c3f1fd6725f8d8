"""`burst`: several prompts into one session within 50 ms, repeated.

Under `supersede` exactly one survives each cycle and every other ends
superseded with a terminal event; the survivor must be the newest prompt,
as the server saw them. Requests sent 17 ms apart can overtake each other on
the way in, so when the newest sent is not the survivor, the server's log
(its `stream_start` order) decides; without a log that check is skipped.
Under `independent` all finish.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from jarvis.vocabulary import Event

from .. import serverlog
from ..client import Transcript
from ..plan import Expect
from ..results import Checks, ScenarioResult
from .context import Context, ended_cleanly, text_is_right

SIZE = 4
WINDOW_S = 0.05
CYCLES = 2
TOKENS = 40


async def burst(ctx: Context) -> ScenarioResult:
    checks = Checks("burst")
    session = ctx.session("burst")
    log_path = ctx.target.log_path
    mark = await asyncio.to_thread(serverlog.size, log_path) if log_path else 0
    outcomes: dict[str, int] = {}
    for cycle in range(1, CYCLES + 1):
        prompts = await _cycle(ctx, session, cycle)
        for t in prompts:
            outcomes[t.outcome] = outcomes.get(t.outcome, 0) + 1
        if ctx.plan.expect is Expect.SUPERSEDE:
            survivor = _judge_supersede(checks, ctx, prompts, cycle)
            if survivor is not None and survivor is not prompts[-1]:
                await _judge_newest(checks, log_path, mark, session, prompts, survivor)
        else:
            for t in prompts:
                if ended_cleanly(checks, t):
                    text_is_right(checks, ctx, t, whole=t.outcome == "completed")
        if any(t.hung for t in prompts):
            break
    metrics: dict[str, object] = {"prompts_per_cycle": SIZE, "cycles": CYCLES, **outcomes}
    ending = "one survivor each" if ctx.plan.expect is Expect.SUPERSEDE else "all finished"
    summary = f"{CYCLES} bursts of {SIZE} prompts in {WINDOW_S * 1000:.0f} ms: {ending}"
    return checks.result(summary, metrics)


async def _cycle(ctx: Context, session: str, cycle: int) -> list[Transcript]:
    spacing = WINDOW_S / (SIZE - 1)
    async with asyncio.TaskGroup() as group:
        tasks = []
        for i in range(SIZE):
            if i:
                await asyncio.sleep(spacing)
            prompt = f"Long essay burst {cycle}-{i}"
            label = f"P{cycle}.{i}"
            tasks.append(
                group.create_task(
                    ctx.stream(prompt, session=session, label=label, max_tokens=TOKENS)
                )
            )
    return [t.result() for t in tasks]


def _judge_supersede(
    checks: Checks, ctx: Context, prompts: list[Transcript], cycle: int
) -> Transcript | None:
    """Exactly one completed, the rest superseded; returns the survivor if there is one."""
    clean = [t for t in prompts if ended_cleanly(checks, t)]
    survivors = [t for t in clean if t.outcome == "completed"]
    listed = ", ".join(f"{t.label} {t.outcome}" for t in prompts)
    if not checks.expect(
        len(survivors) == 1,
        f"cycle {cycle}: {len(survivors)} of {SIZE} prompts completed ({listed}); "
        "exactly one must survive",
    ):
        return None
    survivor = survivors[0]
    text_is_right(checks, ctx, survivor)
    for t in clean:
        if t is not survivor:
            checks.expect(t.outcome == "superseded", f"{t.describe()}: ended {t.outcome}")
            text_is_right(checks, ctx, t, whole=False)
    return survivor


async def _judge_newest(
    checks: Checks,
    log_path: Path | None,
    mark: int,
    session: str,
    prompts: list[Transcript],
    survivor: Transcript,
) -> None:
    """The survivor was not the last prompt sent: was it the last the server received?"""
    if log_path is None:
        checks.skip("the survivor of a burst is the newest prompt: needs the server log")
        return
    ids = {t.stream_id for t in prompts if t.stream_id}
    lines = await asyncio.to_thread(serverlog.event_lines, log_path, Event.STREAM_START, mark)
    arrived = [
        fields.get("stream_id")
        for fields in (serverlog.parse(text).fields for text in lines)
        if fields.get("session") == session and fields.get("stream_id") in ids
    ]
    newest = arrived[-1] if arrived else None
    checks.expect(
        newest == survivor.stream_id,
        f"{survivor.describe()} survived, but the server received {newest} after it "
        "(the newest prompt must win)",
    )
