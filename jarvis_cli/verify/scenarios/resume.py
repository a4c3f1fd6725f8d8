"""`resume`: a client that leaves mid-answer and comes back with `Last-Event-ID` gets the
rest of the answer, whole (no gap, no duplicate), and a Stop ends an answer within the
cancel bound, with no text after it.

Everything is read off the wire as the SSE spec defines it: each event's `id:` line;
the stream id from the `X-Stream-Id` header, else from the events' data (the id the
dialect reads: OpenAI's `id`, Anthropic's `message.id`, a target file's `id`); the
endpoints at `--resume-path` and `--cancel-path` under the chat URL's base. Whether the
server offers resume was asked once, before any scenario (`..resumable`): a server whose
events carry no ids, or that answers 404/405/501 there for a stream that just ran, does
not, and the scenario is not run, unless it was asked for by name (`--scenario
resume`), when that is its failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable

from ...chatapi import ChatRequest
from ..client import Transcript, is_success
from ..plan import CANCEL_MARGIN_S
from ..results import Checks, ScenarioResult, Status, quoted
from ..resumable import NOT_OFFERED, endpoint_request, no_resume
from .context import LONG, LONG_TOKENS, Context, ended, intact, ms, ran_to_end

#: Events carrying text read before the client leaves (or asks to stop).
CUT_AFTER = 3
#: The stopped answer's length: it would run far past any cancel bound if not stopped.
STOP_TOKENS = 2000
#: Characters of an event id that evidence quotes.
ID_CLIP = 40


async def resume(ctx: Context) -> ScenarioResult:
    checks = Checks("resume")
    if ctx.resumable.offered is False:  # the run asked before any scenario
        return _unavailable(ctx, checks, ctx.resumable.why, {})
    return await _cut_and_resume(ctx, checks)


async def _cut_and_resume(ctx: Context, checks: Checks) -> ScenarioResult:
    """Cut an answer, resume it (the text must be whole across the cut), then Stop one."""
    session = ctx.session("rs", "cut")
    home = ctx.client.url_for(session)
    away = _other(ctx.client.urls, home)
    cut = await ctx.client.stream(
        LONG,
        session=session,
        label="cut",
        max_tokens=LONG_TOKENS,
        url=home,
        until=_texts(CUT_AFTER),
    )
    metrics: dict[str, object] = {"stream_url": home, "resume_url": away}
    if not intact(checks, ctx, cut):
        return checks.result("the stream to cut did not stream", metrics)
    why = no_resume(cut)
    if why:
        return _unavailable(ctx, checks, why, metrics)
    if not cut.left:
        checks.skip(
            f"resume: {cut.describe()} ended after {len(cut.event_ids)} event(s), before the "
            f"client could leave after {CUT_AFTER} events with text"
        )
        return checks.result("", metrics)
    stream_id = cut.stream_id or ""
    resumed = await _resume(ctx, cut, stream_id, away)
    metrics["cut_after_id"] = cut.last_event_id
    if resumed.status in NOT_OFFERED:
        return _refused(ctx, checks, resumed, metrics)
    if not intact(checks, ctx, resumed):
        return checks.result("the resume did not stream", metrics)
    if resumed.first_event_at is not None:
        metrics["reconnect_ms"] = round((resumed.first_event_at - resumed.sent_at) * 1000, 1)
    metrics["resumed_events"] = len(resumed.event_ids)
    ids = _seamless(checks, cut, resumed)
    whole = _joined(cut, resumed)
    complete = await ran_to_end(
        checks, ctx, whole, what="the answer read across a cut must be the whole answer"
    )
    if len(ctx.client.urls) < 2:
        checks.note(
            "one --url: the resume went to the URL that streamed (a balancer may still hand "
            "it to another worker); give each worker's URL as --url to resume on another"
        )
    stop = await _stop(ctx, checks, home, away, metrics)
    where = "the same URL" if away == home else away
    first = resumed.first_event_at
    summary = (
        f"cut after event {_named(cut.last_event_id)} on {home}, resumed on {where}"
        + (f": first resumed event in {ms(first - resumed.sent_at)}" if first else "")
        + f"; {ids}{', the whole answer' if complete else ''}; {stop}"
    )
    return checks.result(summary, metrics)


async def _resume(ctx: Context, cut: Transcript, stream_id: str, url: str) -> Transcript:
    """GET the resume endpoint on `url` with `Last-Event-ID`, read to the stream's end."""
    request = _request(ctx, ctx.plan.resume_path, stream_id, cut.session, method="GET")
    request.headers["Last-Event-ID"] = cut.last_event_id
    t = Transcript("resumed", cut.session, cut.prompt, cut.max_tokens, sent_at=ctx.clock())
    t.url = url
    return await ctx.client.send(request, t)


async def _stop(
    ctx: Context, checks: Checks, home: str, away: str, metrics: dict[str, object]
) -> str:
    """A long answer, stopped after a few events through the cancel endpoint (on `away`):
    it must end within the cancel bound, and a resume after its end carries no text.
    Returns the summary's words for it."""
    session = ctx.session("rs", "stop")
    watch = _Watch(CUT_AFTER)
    reading = asyncio.create_task(
        ctx.client.stream(
            LONG,
            session=session,
            label="stopped",
            max_tokens=STOP_TOKENS,
            url=home,
            until=watch,
        )
    )
    started = asyncio.create_task(watch.reached.wait())
    await asyncio.wait({reading, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await started
    if reading.done():
        early = reading.result()
        if intact(checks, ctx, early):
            checks.skip(f"stop: {early.describe()} ended before {CUT_AFTER} events with text")
        return "Stop not checked"
    bound = ctx.plan.cancel_wait + CANCEL_MARGIN_S
    t = watch.transcript
    assert t is not None  # the watch saw the events it was waiting for
    request = _request(ctx, ctx.plan.cancel_path, t.stream_id or "", session, method="POST")
    stop_at = ctx.clock()
    status, body = await ctx.client.call(away, request, within=bound)
    line = f"POST {away}{request.target}"
    metrics["cancel_url"] = away
    metrics["stop_status"] = status
    if status in NOT_OFFERED or not is_success(status):
        await _leave(reading)
        answer = f"HTTP {status}" if status else "nothing"
        if status in NOT_OFFERED and not ctx.plan.resume_required:
            checks.skip(
                f"stop: {line} answered {answer} ({quoted(body)}): the server does not offer "
                "a Stop there (name it with --cancel-path)"
            )
            return "Stop not offered"
        checks.fail(f"stop: {line} answered {answer} ({quoted(body)}), not a 2xx")
        return "the Stop was refused"
    done, _ = await asyncio.wait({reading}, timeout=max(0.0, bound - (ctx.clock() - stop_at)))
    if not done:
        await _leave(reading)
        checks.fail(
            f"stop: {t.describe()} still streamed {ms(bound)} after {line} (answered HTTP "
            f"{status}): the cancel bound is {ms(bound)} (--cancel-wait + {CANCEL_MARGIN_S:g} s)",
            primary=True,
        )
        return "the Stop did not end the answer"
    stopped = reading.result()
    if not ended(checks, ctx, stopped):
        return "the stopped stream broke"
    took = (stopped.ended_at or ctx.clock()) - stop_at
    metrics["stop_ms"] = round(took * 1000, 1)
    metrics["stopped_ending"] = stopped.ending
    checks.confirm()
    after = await _after_stop(ctx, checks, stopped, home, bound)
    return f"a Stop ended the answer in {ms(took)} with {stopped.ending}{after}"


async def _after_stop(
    ctx: Context, checks: Checks, stopped: Transcript, url: str, bound: float
) -> str:
    """No text after a Stop: resumed after its last event, the stopped stream says nothing
    more (an empty body, a bare ending, or a 404 for a stream forgotten at once)."""
    request = _request(ctx, ctx.plan.resume_path, stopped.stream_id or "", stopped.session,
                       method="GET")  # fmt: skip
    request.headers["Last-Event-ID"] = stopped.last_event_id
    t = Transcript("after stop", stopped.session, stopped.prompt, None, sent_at=ctx.clock())
    t.url = url
    reading = asyncio.create_task(ctx.client.send(request, t, until=lambda r: bool(r.text)))
    done, _ = await asyncio.wait({reading}, timeout=bound)
    if not done:
        await _leave(reading)
        checks.note(
            f"stop: the resume of the stopped stream {stopped.stream_id or '<no id>'} stayed "
            f"open {ms(bound)} without text"
        )
        return ", nothing after it"
    after = reading.result()
    return (
        ", nothing after it"
        if checks.expect(
            not after.text,
            f"stop: text after the Stop: resumed after its last event "
            f"({_named(stopped.last_event_id)}), {stopped.describe()} carried "
            f"{len(after.text)} more character(s) ({quoted(after.text, 24)})",
            primary=True,
        )
        else ""
    )


def _seamless(checks: Checks, before: Transcript, after: Transcript) -> str:
    """The ids across the cut: each once, none missing (numbers must follow one another;
    ids that are not numbers can only be told apart). Returns the summary's words."""
    ids = before.event_ids + after.event_ids
    last = before.last_event_id
    if all(i.isdigit() for i in ids):
        numbers = [int(i) for i in ids]
        seams = [
            _seam(numbers[k - 1], numbers[k], k == len(before.event_ids), last)
            for k in range(1, len(numbers))
        ]
        problems = [s for s in seams if s]
        for problem in problems:
            checks.fail(problem, primary=True)
        if not problems:
            checks.confirm()
            return f"ids {numbers[0]}..{numbers[-1]} once each"
        return "ids with a gap or a duplicate"
    twice = sorted(set(before.event_ids) & set(after.event_ids))
    if checks.expect(
        not twice,
        f"duplicate: event id(s) {', '.join(quoted(i, ID_CLIP) for i in twice[:3])} arrived "
        "before the cut and again after it",
        primary=True,
    ):
        checks.note("event ids are not numbers: a gap shows only in the text")
    return f"{len(set(ids))} distinct ids"


def _seam(previous: int, current: int, at_cut: bool, last: str) -> str:
    """What is wrong between two consecutive ids ("" when nothing is)."""
    where = f"across the cut (Last-Event-ID: {last})" if at_cut else "within a response"
    came = (
        f"the resume began with event {current}"
        if at_cut
        else f"event {current} followed event {previous}"
    )
    if current <= previous:
        twice = f"{current}" if current == previous else f"{current}..{previous}"
        return f"duplicate {where}: {came}, so event(s) {twice} arrived twice"
    if current > previous + 1:
        lost = f"{previous + 1}" if current == previous + 2 else f"{previous + 1}..{current - 1}"
        return f"gap {where}: {came}, so event(s) {lost} never arrived"
    return ""


def _joined(before: Transcript, after: Transcript) -> Transcript:
    """The answer as the client read it: the events before the cut, then the resumed ones."""
    return dataclasses.replace(
        after,
        label="cut+resumed",
        sent_at=before.sent_at,
        stream_id=after.stream_id or before.stream_id,
        chunks=before.chunks + after.chunks,
        event_ids=before.event_ids + after.event_ids,
        malformed=before.malformed + after.malformed,
    )


def _named(event_id: str) -> str:
    """An event id as evidence names it: a number as is, anything else quoted."""
    return event_id if event_id.isdigit() else quoted(event_id, ID_CLIP)


def _refused(
    ctx: Context, checks: Checks, resumed: Transcript, metrics: dict[str, object]
) -> ScenarioResult:
    """The resume of the cut stream answered as an endpoint that is not there: a failure
    when the same endpoint resumed the run's first stream, else resume is not offered."""
    answered = f"{resumed.request_line} answered HTTP {resumed.status}"
    if ctx.resumable.offered:
        checks.fail(
            f"{answered} for the stream that was cut ({quoted(resumed.body)}), though "
            f"{ctx.resumable.why} for the run's first stream",
            primary=True,
        )
        return checks.result("the cut stream could not be resumed", metrics)
    why = (
        f"the server does not offer resume: {answered} for the stream that had just run "
        f"({quoted(resumed.body)}); if it lives elsewhere, name it with --resume-path"
    )
    return _unavailable(ctx, checks, why, metrics)


def _unavailable(
    ctx: Context, checks: Checks, why: str, metrics: dict[str, object]
) -> ScenarioResult:
    """Not run, saying why; a failure when the user asked for resume by name."""
    if ctx.plan.resume_required:
        checks.fail(f"resume was asked for (--scenario resume), but {why}")
        return checks.result("", metrics)
    return ScenarioResult("resume", Status.SKIP, f"not run: {why}", metrics)


def _request(
    ctx: Context, path: str, stream_id: str, session: str | None, *, method: str
) -> ChatRequest:
    """A request to a resume or stop endpoint, the session where the server reads it."""
    return endpoint_request(ctx.client, path, stream_id, session, method=method)


def _other(urls: list[str], url: str) -> str:
    """The URL after `url` among several (another worker), else `url` itself."""
    return urls[(urls.index(url) + 1) % len(urls)] if url in urls else url


def _texts(n: int) -> Callable[[Transcript], bool]:
    """True once `n` events carrying text have arrived."""
    return lambda t: sum(1 for c in t.chunks if c.content) >= n


class _Watch:
    """Told of a running stream's transcript as its bytes arrive: set once `n` events
    carrying text are in (the stream task's transcript is not reachable otherwise)."""

    def __init__(self, n: int) -> None:
        self.reached = asyncio.Event()
        self.transcript: Transcript | None = None
        self._enough = _texts(n)

    def __call__(self, t: Transcript) -> bool:
        self.transcript = t
        if self._enough(t):
            self.reached.set()
        return False  # go on reading


async def _leave(reading: asyncio.Task[Transcript]) -> None:
    """Stop reading (the connection closes), bounded."""
    reading.cancel()
    await asyncio.wait({reading}, timeout=1.0)
