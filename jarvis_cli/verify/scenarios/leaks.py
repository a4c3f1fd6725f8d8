"""`leaks`: after the run nothing is left behind.

`/v1/streams` must be empty (of this run's sessions), and, with a log,
every `stream_start` of the run's window must have its `stream_end`. The log
is judged by the same reader and lifecycle reconstruction as `jarvis
diagnose` (`jarvis_cli/logs`), in any dialect it reads, so both tools agree on what
a leak is: every error finding it makes about this run is a failure, with its
lines, except two streams of a session at once (`concurrent_streams`), which is
overlap's and burst's verdict, read from the wire. Cleanup (`cleanup_done=True`)
is judged only in a log that records it.

A server that offers resume may still hold an answer whose client left (slow_reader's,
resume's) for a reattach: both checks give the live streams the grace for a reattach
plus 1 s (`Context.cleanup_bound`) to end, and say so when they took that long.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from ...logs.analysis import Analyzer
from ...logs.findings import CLEANUP_UNJUDGED, Finding, FindingId, Severity
from ...logs.run import Window, analyze
from ...logs.sources import InputError
from ..plan import CLEANUP_BOUND_S
from ..results import Checks, ScenarioResult
from .context import Context

POLL_S = 0.05
#: A stream still open this long after the run is judged by the analyzer itself too.
STALE_AFTER_S = 30.0
#: Findings that are not about what a run leaves behind: overlap and burst judge them.
NOT_LEAKS = frozenset({FindingId.CONCURRENT_STREAMS})


async def leaks(ctx: Context) -> ScenarioResult:
    checks = Checks("leaks")
    metrics: dict[str, object] = {}
    done: list[str] = []
    if ctx.hung:
        checks.skip("no live stream left (GET /v1/streams): the server no longer answers")
    elif ctx.target.has_streams:
        held = await _streams_empty(ctx, checks, metrics)
        done.append(f"no live stream left (GET /v1/streams{f'; {held}' if held else ''})")
    else:
        checks.skip(f"no live stream left: {_no_streams_endpoint(ctx.target.streams_status)}")
    if ctx.target.log_path is None:
        checks.skip("every stream_start has its stream_end: no server log (pass --log-file)")
    else:
        await _log_lifecycles(ctx, checks, metrics, ctx.target.log_path)
        cleanup = " with cleanup_done=True" if metrics.get("log_cleanup_recorded") else ""
        done.append(f"all {metrics.get('log_streams', 0)} streams in the log ended{cleanup}")
    return checks.result("; ".join(done), metrics)


def _no_streams_endpoint(status: int) -> str:
    """Why GET /v1/streams could not be read, as it answered."""
    if status == 0:
        return "GET /v1/streams gave no answer in time"
    if status in (404, 405, 501):
        return f"GET /v1/streams answered HTTP {status}: the server does not list its streams"
    if 200 <= status < 300:
        return "GET /v1/streams answered without a sessions object: not a list of live streams"
    return f"GET /v1/streams answered HTTP {status}"


async def _streams_empty(ctx: Context, checks: Checks, metrics: dict[str, object]) -> str:
    """Judge `/v1/streams`; returns the words for a wait past the cleanup bound ("" if none)."""
    began = ctx.clock()
    settle_by = began + ctx.cleanup_bound
    while True:
        live = await ctx.live_streams()
        if (live is not None and not live) or ctx.clock() >= settle_by:
            break
        await asyncio.sleep(POLL_S)
    if live is None:
        checks.fail("GET /v1/streams gave no answer after the run")
        return ""
    metrics["live_streams"] = len(live)
    lines = [
        f"    session {s.get('session')}: {s.get('stream_id')} state={s.get('state')} "
        f"cancel={s.get('cancel_reason')} age={s.get('age_ms')} ms"
        for s in live[:10]
    ]
    waited = ctx.clock() - began
    head = f"{len(live)} stream(s) still live after the run (GET /v1/streams)"
    if ctx.grace:
        head += f", {ctx.cleanup_bound:g} s on ({ctx.grace_words()})"
    checks.expect(not live, "\n".join([f"{head}:", *lines]))
    if live or waited <= CLEANUP_BOUND_S:
        return ""
    metrics["held_ms"] = round(waited * 1000)
    return (
        f"the last ended {waited:.1f} s into the check, within the grace for a reattach, "
        f"{ctx.grace:g} s + {CLEANUP_BOUND_S:g} s"
    )


@dataclass(slots=True)
class _LogVerdict:
    lifecycle_events: int = 0
    streams: int = 0
    #: Whether the log records cleanup (cleanup_done, event_buffers_cleaned) at all.
    cleanup_recorded: bool = False
    ended: dict[str, int] = field(default_factory=dict)
    open_streams: list[str] = field(default_factory=list)
    failing: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)


async def _log_lifecycles(
    ctx: Context, checks: Checks, metrics: dict[str, object], path: Path
) -> None:
    # The server logs stream_end just after the client's [DONE]: give its writer a moment
    # (and a stream held for a reattach its grace).
    settle_by = ctx.clock() + ctx.cleanup_bound
    while True:
        try:
            verdict = await asyncio.to_thread(_judge_log, ctx, path)
        except InputError as exc:
            checks.fail(f"cannot read the server log: {exc}")
            return
        if not verdict.open_streams or ctx.hung or ctx.clock() >= settle_by:
            break
        await asyncio.sleep(POLL_S)
    counts: dict[str, int] = {}
    for finding in verdict.failing:
        counts[finding.id.value] = counts.get(finding.id.value, 0) + 1
    metrics.update(
        log_streams=verdict.streams,
        log_ended=verdict.ended,
        log_open=len(verdict.open_streams),
        log_findings=counts,
        log_cleanup_recorded=verdict.cleanup_recorded,
    )
    if not verdict.lifecycle_events:
        checks.skip(f"stream lifecycles: no stream lifecycle event in {path} during the run")
        return
    if not verdict.cleanup_recorded:
        checks.note(f"cleanup not judged: {CLEANUP_UNJUDGED}")
    opened = [f"    {line}" for line in verdict.open_streams[:10]]
    checks.expect(
        not verdict.open_streams,
        "\n".join(
            [
                f"{len(verdict.open_streams)} stream(s) have a stream_start and no stream_end"
                + (f", {ctx.cleanup_bound:g} s on ({ctx.grace_words()})" if ctx.grace else "")
                + ":",
                *opened,
            ]
        ),
    )
    for finding in verdict.failing:
        checks.fail(_describe(finding))
    if verdict.failing or verdict.open_streams:
        checks.note(f"the same log, in full: jarvis diagnose {path}")
    for finding in verdict.warnings[:5]:
        checks.note(f"warning {finding.id.value}: {finding.message}")


def _judge_log(ctx: Context, path: Path) -> _LogVerdict:
    """Runs in a worker thread: the analysis reads (mmaps) the whole window."""
    window = Window(since=ctx.started_wall)
    analyzer, sources = analyze([str(path)], stale_after_s=STALE_AFTER_S, window=window)
    try:
        verdict = _verdict(ctx, analyzer)
        sources.resolve_findings(verdict.failing)
    finally:
        sources.close()
    return verdict


def _verdict(ctx: Context, analyzer: Analyzer) -> _LogVerdict:
    verdict = _LogVerdict(
        lifecycle_events=analyzer.coverage.recognised,
        streams=analyzer.stats.streams,
        cleanup_recorded=analyzer.cleanup_applies,
        ended=dict(analyzer.stats.ended),
        open_streams=[
            f"stream {r.trace}{f' {r.stream_id}' if r.stream_id else ''} (session {r.session})"
            for r in analyzer.open_streams
            if ctx.ours(r.session)
        ],
    )
    for finding in analyzer.findings:
        if finding.session is not None and not ctx.ours(finding.session):
            continue
        if finding.id in NOT_LEAKS:
            continue
        if finding.severity < Severity.ERROR:
            verdict.warnings.append(finding)
        else:
            verdict.failing.append(finding)
    return verdict


def _describe(finding: Finding) -> str:
    lines = [f"{finding.id.value}: {finding.message}"]
    lines += [f"    {e.file}:{e.line}: {e.text[:300]}" for e in finding.evidence[:4]]
    return "\n".join(lines)
