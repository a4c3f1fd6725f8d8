"""`work_stops`: when a client leaves, or its answer is superseded, the engine stops.

Ending the stream a client sees is not stopping the engine: a proxy that never closes
its upstream request, or an engine that ignores the close, decodes on for nobody. Only
the engine's own busy gauge (`..engine`, `--engine-metrics`) tells. Four long streams
are dropped mid-stream (two by FIN, two by RST), then, under `--expect supersede`, two
answers are superseded by a new prompt in their session; each time the gauge must be
back at its level from before within `--work-stop-bound` (a new prompt's own request
counts as expected work while it streams). It runs right after baseline: the gauge
counts every request, so nothing else of the run may load the engine meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from jarvis.exceptions import ConfigError

from ..client import Transcript
from ..engine import EngineGauge, Idle
from ..plan import Expect
from ..results import Checks, ScenarioResult, Status
from .context import LONG, LONG_TOKENS, SHORT, SHORT_TOKENS, Context, at_once
from .disconnect import open_stream

NAME = "work_stops"
#: How the dropped clients leave, one stream each.
DROPS = ("fin", "rst", "fin", "rst")
#: Sessions whose answer is superseded (fewer with a smaller --sessions).
PAIRS = 2
#: How often a pair is looked at while the gauge is read.
POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class _Watched:
    """How the gauge came back: at the bound, in the end (watched past the bound for up
    to the idle bound more), and the level it had to reach at the bound."""

    at_bound: Idle
    final: Idle
    level: float
    #: Seconds the gauge had to come back within (with a grace for a reattach, longer).
    bound: float

    def to_json(self) -> dict[str, object]:
        return {
            "idle": self.at_bound.idle,
            "after_ms": round(self.at_bound.after_ms),
            "still_processing": self.at_bound.value - self.level,
            "idle_in_the_end": self.final.idle,
            "end_ms": round(self.final.after_ms),
            "bound_ms": round(self.bound * 1000),
        }


@dataclass(slots=True)
class _Pair:
    """One session's A (superseded) and B (the new prompt), watched as they stream."""

    session: str
    a: Transcript | None = None
    b: Transcript | None = None
    a_task: asyncio.Task[Transcript] | None = None
    b_task: asyncio.Task[Transcript] | None = None

    def b_streaming(self) -> bool:
        """B is on the engine (it has delivered text) and has not ended."""
        return (
            self.b is not None
            and self.b_task is not None
            and not self.b_task.done()
            and any(c.content for c in self.b.chunks)
        )

    def crossed(self) -> str:
        """A emitted text after B's first: it was never superseded (overlap's verdict)."""
        return at_once(self.a, self.b) if self.a is not None and self.b is not None else ""


async def work_stops(ctx: Context) -> ScenarioResult:
    gauge, http = ctx.engine, ctx.engine_http
    if gauge is None or http is None:
        return ScenarioResult(NAME, Status.SKIP, f"not run: {ctx.engine_missing}")
    checks = Checks(NAME)
    bound = ctx.plan.work_stop_s
    metrics: dict[str, object] = {
        "engine": gauge.engine,
        "gauge": gauge.name,
        "metrics_url": gauge.url,
        "bound_ms": round(bound * 1000),
    }
    said: list[str] = []
    try:
        level = await _at_rest(ctx, gauge, http, bound)
        metrics["level"] = level
        dropped = await _drops(ctx, checks, gauge, http, level)
        if dropped is not None:
            metrics["drops"] = dropped.to_json()
            if _judged(checks, ctx, gauge, dropped, "the client left"):
                said.append(
                    f"after {len(DROPS)} drops, the engine was idle again within "
                    f"{dropped.at_bound.after_ms:.0f} ms"
                    + (f" (within the {_bound_words(ctx, dropped.bound)})" if ctx.grace else "")
                )
        if ctx.plan.expect is Expect.SUPERSEDE:
            said += await _supersede_part(ctx, checks, gauge, http, level, metrics)
        else:
            checks.note("no supersede to watch: --expect independent")
    except (httpx.HTTPError, ConfigError) as exc:
        checks.fail(f"the engine's gauge could not be read at {gauge.url}: {exc}")
    summary = "; ".join(said) or "nothing measured"
    return checks.result(f"{summary} ({gauge.name}, bound {bound:g} s)", metrics)


async def _at_rest(
    ctx: Context, gauge: EngineGauge, http: httpx.AsyncClient, bound: float
) -> float:
    """The level the gauge must come back to: 0 once the run's earlier requests have
    left the engine (waited for up to `bound`), else what it reads then (another
    client's work on a shared engine)."""
    idle = await gauge.wait_idle(http, level=0, since=ctx.clock(), bound_s=bound)
    return idle.value


async def _drops(
    ctx: Context, checks: Checks, gauge: EngineGauge, http: httpx.AsyncClient, level: float
) -> _Watched | None:
    """Open `DROPS` long streams, read to their first event, and drop them all at once:
    how the gauge came back (at the bound, and in the end)."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                open_stream(
                    ctx,
                    checks,
                    f"drop {i + 1} ({how})",
                    ctx.session("ws", "drop", i),
                    mid_stream=True,
                )
            )
            for i, how in enumerate(DROPS)
        ]
    opened = [(task.result(), how) for task, how in zip(tasks, DROPS, strict=True)]
    connections = [(c, how) for c, how in opened if c is not None]
    busy = await gauge.read(http)
    for connection, how in connections:
        connection.drop(reset=how == "rst")
    left = ctx.clock()
    if len(connections) < len(DROPS):
        return None  # open_stream said why
    if busy <= level:
        checks.skip(
            f"the work after a disconnect: {gauge.name} stayed at {level:g} while "
            f"{len(DROPS)} streams were open: it does not count this server's requests (is "
            "--engine-metrics the engine behind --url?)"
        )
        return None
    # A server that resumes holds a dropped answer for a reattach (its grace), and its
    # engine decodes on meanwhile, by design: the work must stop once the grace is over.
    held = ctx.plan.work_stop_s + ctx.grace
    return await _watch(ctx, gauge, http, level=lambda: level, since=left, bound=held)


async def _supersede_part(
    ctx: Context,
    checks: Checks,
    gauge: EngineGauge,
    http: httpx.AsyncClient,
    level: float,
    metrics: dict[str, object],
) -> list[str]:
    """Supersede `PAIRS` answers, and judge how the gauge came back."""
    bound = ctx.plan.work_stop_s
    again = await _at_rest(ctx, gauge, http, bound)
    if again > level:
        checks.skip(
            f"the work after a supersede: the engine was still busy ({gauge.name} "
            f"{again:g}, not {level:g}) with the dropped streams' work"
        )
        return []
    pairs = [_Pair(ctx.session("ws", "sup", i)) for i in range(min(PAIRS, ctx.plan.sessions))]
    try:
        async with asyncio.TaskGroup() as group:
            for i, pair in enumerate(pairs):
                group.create_task(_supersede(ctx, pair, i + 1))
        if any(p.b is None for p in pairs):
            checks.skip("the work after a supersede: an answer to supersede never streamed text")
            return []
        result = await _watch_pairs(ctx, gauge, http, pairs, level)
    finally:
        await _finish(pairs, ctx.plan.deadline)
    crossed = next((p.crossed() for p in pairs if p.crossed()), "")
    streaming_on = [p.a for p in pairs if p.a is not None and p.a.ended_at is None]
    if crossed or streaming_on:
        what = crossed or f"{streaming_on[0].describe()} streamed on after its B"
        checks.skip(
            f"the work after a supersede: its answer was not superseded ({what}): "
            "overlap's verdict; the engine's work is not judged"
        )
        return []
    if result is None:
        return []
    metrics["supersedes"] = result.to_json()
    if not _judged(checks, ctx, gauge, result, "its answer was superseded"):
        return []
    return [
        f"after {len(pairs)} supersedes, the engine was down to the new prompts' work within "
        f"{result.at_bound.after_ms:.0f} ms"
    ]


async def _supersede(ctx: Context, pair: _Pair, n: int) -> None:
    """A (long), then B once A has delivered text; both are watched as they stream."""

    def hold_a(t: Transcript) -> None:
        pair.a = t

    def hold_b(t: Transcript) -> None:
        pair.b = t

    pair.a_task = asyncio.create_task(
        ctx.client.stream(
            LONG, session=pair.session, label=f"A{n}", max_tokens=LONG_TOKENS, started=hold_a
        )
    )
    # The transcript fills as A streams (a task of its own, bounded by the idle bound).
    while not pair.a_task.done():
        if pair.a is not None and any(c.content for c in pair.a.chunks):
            break
        await asyncio.sleep(POLL_S)
    else:
        return
    pair.b_task = asyncio.create_task(
        ctx.client.stream(
            SHORT, session=pair.session, label=f"B{n}", max_tokens=SHORT_TOKENS, started=hold_b
        )
    )
    await asyncio.sleep(0)  # B's task starts, and hands over its transcript (`hold_b`)


async def _watch_pairs(
    ctx: Context, gauge: EngineGauge, http: httpx.AsyncClient, pairs: list[_Pair], level: float
) -> _Watched | None:
    """How the gauge came back after the B's were sent; None when some A streamed on
    (not superseded: nothing to judge here), found out as soon as it shows."""
    since = max(p.b.sent_at for p in pairs if p.b is not None)
    watched = asyncio.create_task(
        _watch(ctx, gauge, http, level=lambda: level + sum(p.b_streaming() for p in pairs),
               since=since)
    )  # fmt: skip

    async def crossing() -> None:
        while True:
            if any(p.crossed() for p in pairs):
                return
            await asyncio.sleep(POLL_S)

    crossed = asyncio.create_task(crossing())
    try:
        await asyncio.wait({watched, crossed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        crossed.cancel()
        if not watched.done():
            watched.cancel()
        await asyncio.wait({watched, crossed})
    return None if watched.cancelled() else watched.result()


async def _finish(pairs: list[_Pair], deadline: float) -> None:
    """Let the B's end (each bounded by the idle bound), then leave whatever still
    streams: an A that was never superseded is closed by its client."""
    b_tasks = [p.b_task for p in pairs if p.b_task is not None]
    if b_tasks:
        await asyncio.wait(b_tasks, timeout=deadline + 1.0)
    tasks = [t for p in pairs for t in (p.a_task, p.b_task) if t is not None and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1.0)


async def _watch(
    ctx: Context,
    gauge: EngineGauge,
    http: httpx.AsyncClient,
    *,
    level: Callable[[], float],
    since: float,
    bound: float | None = None,
) -> _Watched:
    """The gauge at the bound (`--work-stop-bound` unless given), and in the end: past the
    bound it is watched for up to the idle bound more, so that a failure says how long
    the work went on."""
    bound = ctx.plan.work_stop_s if bound is None else bound
    at_bound = await gauge.wait_idle(http, level=level, since=since, bound_s=bound)
    then = level()
    if at_bound.idle:
        return _Watched(at_bound, at_bound, then, bound)
    final = await gauge.wait_idle(http, level=level, since=since, bound_s=bound + ctx.plan.deadline)
    return _Watched(at_bound, final, then, bound)


def _judged(
    checks: Checks, ctx: Context, gauge: EngineGauge, watched: _Watched, after: str
) -> bool:
    """Whether the engine was idle again within the bound; if not, a failure saying how
    long it kept decoding and how many requests it was still processing."""
    at_bound, final = watched.at_bound, watched.final
    if at_bound.idle:
        checks.confirm()
        return True
    seconds = final.after_ms / 1000
    how_long = f"{seconds:.1f} s" if final.idle else f"more than {seconds:.1f} s"
    still = at_bound.value - watched.level
    checks.fail(
        f"the engine kept decoding for {how_long} after {after}: "
        f"{still:g} request{'' if still == 1 else 's'} still processing at the "
        f"{_bound_words(ctx, watched.bound)} ({gauge.name} at {gauge.url} read "
        f"{at_bound.value:g}, where it was {watched.level:g})"
    )
    return False


def _bound_words(ctx: Context, bound: float) -> str:
    """The bound as a verdict says it: with a grace for a reattach, its two parts."""
    if bound > ctx.plan.work_stop_s:
        grace = bound - ctx.plan.work_stop_s
        return f"{bound:g} s bound, {ctx.plan.work_stop_s:g} s + grace {grace:g} s for a reattach"
    return f"{bound:g} s bound"
