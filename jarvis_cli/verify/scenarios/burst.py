"""`burst`: several prompts into one session within 50 ms, repeated.

Under `supersede`, once the burst settles exactly one stream is still
emitting, and it completes: no two streams of the session ever emit at once
(no chunk of one after a later one's first chunk), exactly one prompt
delivers its whole answer, and the others end within the cancel bound. With
a model that is not deterministic, length cannot tell a whole answer from a
cut one, and a superseded stream may end with a natural finish too: the
survivor is then the stream that delivered text last, and it must end with a
natural finish and the end marker. Every stream cut short carries a clean
start of its answer when the model is deterministic (else: corrupted bytes).
The survivor must be the newest prompt as the server saw them: requests sent
17 ms apart can overtake each other on the way in, so when the newest sent
is not the survivor, the server's log (its `stream_start` order) decides;
without a log that check is skipped. Under `independent` all complete. Under
`reject` exactly one prompt streams, its whole answer, and every other is refused
with 409 at once; under `queue` all stream their whole answers one after another,
each starting right after the one before it ended, never two at once.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from .. import serverlog
from ..client import Transcript
from ..plan import CANCEL_MARGIN_S, Expect
from ..queueing import Queueing
from ..results import Checks, ScenarioResult
from .busy import refusal_ok, refused, starts_after
from .context import (
    Context,
    at_once,
    ended,
    endings_note,
    ms,
    ran_to_end,
    text_is_part,
)

SIZE = 4
WINDOW_S = 0.05
CYCLES = 2
#: One prompt for every member of a burst, so one calibration gives its natural answer.
PROMPT = "Long essay burst"
TOKENS = 40


async def burst(ctx: Context) -> ScenarioResult:
    checks = Checks("burst")
    session = ctx.session("burst")
    log_path = ctx.target.log_path
    mark = await asyncio.to_thread(serverlog.size, log_path) if log_path else 0
    outcomes: dict[str, int] = {}
    superseded: list[Transcript] = []
    everyone: list[Transcript] = []
    for cycle in range(1, CYCLES + 1):
        prompts = await _cycle(ctx, session, cycle)
        everyone += prompts
        for t in prompts:
            outcomes[t.ending] = outcomes.get(t.ending, 0) + 1
        if ctx.plan.expect is Expect.SUPERSEDE:
            survivor = await _judge_supersede(checks, ctx, prompts, cycle)
            if survivor is not None:
                superseded += [t for t in prompts if t is not survivor]
                if survivor is not prompts[-1]:
                    await _judge_newest(checks, log_path, mark, session, prompts, survivor)
        elif ctx.plan.expect is Expect.REJECT:
            await _judge_reject(checks, ctx, prompts, cycle)
        elif ctx.plan.expect is Expect.QUEUE:
            await _judge_queue(checks, ctx, prompts, cycle)
        else:
            for t in prompts:
                await ran_to_end(checks, ctx, t, what="prompts run side by side (independent)")
        if any(t.hung for t in prompts):
            break
    endings_note(checks, superseded, "superseded streams")
    metrics: dict[str, object] = {"prompts_per_cycle": SIZE, "cycles": CYCLES, "endings": outcomes}
    ending = {
        Expect.SUPERSEDE: "one survivor each",
        Expect.REJECT: f"one answered each, {SIZE - 1} refused at once",
        Expect.QUEUE: "all answered one after another",
    }.get(ctx.plan.expect, "all finished")
    summary = f"{CYCLES} bursts of {SIZE} prompts in {WINDOW_S * 1000:.0f} ms: {ending}"
    if ctx.plan.expect is Expect.INDEPENDENT:
        queueing = Queueing.of(everyone)
        metrics["queueing"] = queueing.to_json()
        if queueing.queued:
            summary += f"; {queueing.describe()}"
            checks.note(queueing.describe())
    return checks.result(summary, metrics)


async def _cycle(ctx: Context, session: str, cycle: int) -> list[Transcript]:
    spacing = WINDOW_S / (SIZE - 1)
    async with asyncio.TaskGroup() as group:
        tasks = []
        for i in range(SIZE):
            if i:
                await asyncio.sleep(spacing)
            tasks.append(
                group.create_task(
                    ctx.stream(PROMPT, session=session, label=f"P{cycle}.{i}", max_tokens=TOKENS)
                )
            )
    return [t.result() for t in tasks]


async def _judge_supersede(
    checks: Checks, ctx: Context, prompts: list[Transcript], cycle: int
) -> Transcript | None:
    """No two at once, exactly one complete; returns the survivor if there is one."""
    busy = [t for t in prompts if refused(t)]
    if busy:
        checks.fail(
            f"cycle {cycle}: {', '.join(t.label for t in busy)} refused with HTTP 409 while "
            "an earlier prompt of the burst streamed: the server rejects a prompt in a busy "
            "session instead of superseding the running answer (--expect reject, if that is "
            "its promise)",
            primary=True,
        )
    crossed = _crossed(prompts)
    if crossed:
        more = f" (and {len(crossed) - 1} more such pair(s))" if len(crossed) > 1 else ""
        checks.fail(f"cycle {cycle}: {crossed[0]}{more}", primary=True)
    else:
        checks.confirm()
    clean = [t for t in prompts if ended(checks, ctx, t)]
    natural = None if ctx.plan.strict else await ctx.naturals.get(PROMPT, TOKENS)
    by_length = natural is None or natural.deterministic
    complete = [t for t in clean if await _whole(ctx, t)]
    listed = ", ".join(f"{t.label} {len(t.text)} chars, {t.ending}" for t in prompts)
    if not complete:
        checks.fail(
            f"cycle {cycle}: no prompt of the burst delivered its whole answer ({listed}): "
            "the last prompt was lost",
            primary=True,
        )
        return None
    if by_length and not checks.expect(
        len(complete) == 1,
        f"cycle {cycle}: {len(complete)} of {SIZE} prompts delivered their whole answer "
        f"({listed}); exactly one must survive",
    ):
        return None
    # Without a deterministic model, every ending may look natural: the survivor is the
    # stream whose text came last.
    survivor = max(complete, key=_last_text)
    await ran_to_end(checks, ctx, survivor, what="the survivor of a burst")
    last_sent = max(t.sent_at for t in prompts)
    bound = ctx.plan.cancel_wait + CANCEL_MARGIN_S
    for t in clean:
        if t is survivor or t.ended_at is None:
            continue
        late = t.ended_at - last_sent
        checks.expect(
            late <= bound,
            f"{t.describe()}: still streaming {ms(late)} after the last prompt of the burst "
            f"was sent (bound {ms(bound)})",
        )
        if ctx.plan.strict:
            checks.expect(t.outcome == "superseded", f"{t.describe()}: ended {t.outcome}")
        await text_is_part(checks, ctx, t)
    return survivor


async def _judge_reject(
    checks: Checks, ctx: Context, prompts: list[Transcript], cycle: int
) -> None:
    """Exactly one prompt streams, its whole answer; every other is refused at once."""
    crossed = _crossed(prompts)
    if crossed:
        checks.fail(f"cycle {cycle}: {crossed[0]}", primary=True)
    answered = [t for t in prompts if not refused(t) and t.streamed]
    listed = ", ".join(f"{t.label} {t.ending}" for t in prompts)
    checks.expect(
        len(answered) == 1,
        f"cycle {cycle}: {len(answered)} of {SIZE} prompts were answered ({listed}); under "
        "reject the first the server received streams and every other is refused",
        primary=True,
    )
    first = answered[0] if answered else None
    for t in prompts:
        if t is first:
            await ran_to_end(checks, ctx, t, what="the one prompt of a burst let in")
        elif t not in answered:
            refusal_ok(checks, ctx, t, running=first)


async def _judge_queue(checks: Checks, ctx: Context, prompts: list[Transcript], cycle: int) -> None:
    """Every prompt streams its whole answer, one after another, each right after the one
    before it, never two at once."""
    crossed = _crossed(prompts)
    if crossed:
        more = f" (and {len(crossed) - 1} more such pair(s))" if len(crossed) > 1 else ""
        checks.fail(f"cycle {cycle}: {crossed[0]}{more}", primary=True)
    for t in prompts:
        if refused(t):
            checks.fail(
                f"{t.describe()}: refused with 409 in a burst of {SIZE}: a queued prompt must "
                "wait its turn, then stream (--expect queue)",
                primary=True,
            )
        else:
            await ran_to_end(checks, ctx, t, what="a queued prompt of a burst answers in turn")
    started = sorted((t for t in prompts if t.first_text_at is not None), key=_first_text)
    for before, after in itertools.pairwise(started):
        starts_after(checks, ctx, before, after)


def _first_text(t: Transcript) -> float:
    return t.first_text_at or 0.0


def _last_text(t: Transcript) -> float:
    return max((c.at for c in t.chunks if c.content), default=t.ended_at or 0.0)


def _crossed(prompts: list[Transcript]) -> list[str]:
    """Every pair of streams of the session that emitted at once."""
    started = sorted((t for t in prompts if t.first_chunk_at is not None), key=_first)
    return [e for x, y in itertools.combinations(started, 2) if (e := at_once(x, y))]


def _first(t: Transcript) -> float:
    return t.first_chunk_at or 0.0


async def _whole(ctx: Context, t: Transcript) -> bool:
    """Delivered its whole answer: jarvis's `completed` under --strict; else, from a
    deterministic model, at least its natural length (what it says is judged after, so
    that extra bytes read as corruption, not as a second survivor); from any other, a
    natural finish and the end marker."""
    if ctx.plan.strict:
        return t.outcome == "completed"
    natural = await ctx.naturals.get(t.prompt, t.max_tokens)
    if natural is None:
        return t.natural or t.end_reason == "completed"
    if natural.deterministic:
        return len(t.text) >= natural.chars
    return t.complete if natural.says_complete else bool(t.text)


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
    starts = await asyncio.to_thread(serverlog.session_starts, log_path, mark, session)
    arrived = [
        found
        for fields in starts
        if (found := fields.get("stream_id") or fields.get("trace")) in ids
    ]
    if not arrived:
        checks.skip("the survivor of a burst is the newest prompt: the log's ids name no stream")
        return
    checks.expect(
        arrived[-1] == survivor.stream_id,
        f"{survivor.describe()} survived, but the server received {arrived[-1]} after it "
        "(the newest prompt must win)",
        primary=True,
    )
