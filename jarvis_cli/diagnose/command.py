"""`jarvis diagnose`: read logs, rebuild every stream, walk the decision tree."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from jarvis.exceptions import ConfigError

from ..console import err, out
from ..durations import parse_duration
from ..logs.findings import Severity
from ..logs.patterns import parse_ts
from ..logs.run import Window, analyze
from .report import build_report, render, write_junit


def parse_time(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    when = parse_ts(text)
    if when is None:
        raise ConfigError(
            f"{option} takes an ISO-8601 time (2026-11-22T03:16:12Z) or epoch seconds, not {text!r}"
        )
    return when


def diagnose(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Log files (.gz and rotated sets too); '-' reads stdin. Default: logs/system.log.",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep reading as lines arrive (tail -F).")
    ] = False,
    since: Annotated[str | None, typer.Option(help="Only lines at or after this time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only lines before this time.")] = None,
    session: Annotated[
        str | None, typer.Option(help="Report only findings about this session.")
    ] = None,
    trace: Annotated[
        str | None, typer.Option(help="Report only findings about this trace.")
    ] = None,
    stale_after: Annotated[
        str, typer.Option(help="A stream open longer than this at the end is 'not ended'.")
    ] = "30s",
    fail_on: Annotated[
        str, typer.Option(help="Exit 1 on findings at or above: error or warning.")
    ] = "error",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a versioned JSON report instead.")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option(help="Also write JUnit XML: one testcase per invariant.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="All findings and all their evidence.")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also write a timeline: one self-contained HTML page (lanes per session, "
            "a bar per stream, markers, findings with their evidence); opens offline.",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Find the root cause of hangs and stream leaks in a jarvis log.

    Rebuilds every stream's lifecycle (stream_start … stream_end) from the
    structured log, checks the invariants (one emitting stream per session,
    cancels honoured, cleanup done, flushes finishing, batching on, loop
    alive) and walks the debugging decision tree to a diagnosis, with
    the log lines that prove it.

    Exit codes: 0 healthy, 1 findings at or above --fail-on, 2 usage error,
    3 input unusable (unreadable, or no lifecycle event in it).

        jarvis diagnose logs/system.log
        jarvis diagnose logs/system.log --session s1 -v
        jarvis diagnose --follow logs/system.log
        jarvis diagnose logs/system.w*.log --html timeline.html
        zcat old.log.gz | jarvis diagnose - --json

    --html never changes the exit code: the page draws what the report judged.
    """
    if fail_on not in ("error", "warning"):
        raise ConfigError(f"--fail-on takes error or warning, not {fail_on!r}")
    threshold = Severity.ERROR if fail_on == "error" else Severity.WARNING
    stale_s = parse_duration(stale_after, "--stale-after")
    window = Window(parse_time(since, "--since"), parse_time(until, "--until"))
    inputs = paths or ["logs/system.log"]
    if follow and html is not None:
        raise ConfigError("--html draws a whole read of the logs; it does not go with --follow")
    if follow:
        from .follow import follow_logs

        if "-" in inputs or any(p.endswith(".gz") for p in inputs):
            raise ConfigError("--follow reads plain files by name, not stdin or .gz")
        return int(
            follow_logs(
                inputs, stale_after_s=stale_s, fail_on=threshold, session=session, trace=trace
            )
        )
    recorder = None
    if html is not None:  # the timeline's modules load only when a page is asked for
        from ..timeline.html import check_writable
        from ..timeline.record import Recorder

        check_writable(html)
        recorder = Recorder()
    analyzer, sources = analyze(
        inputs,
        stale_after_s=stale_s,
        window=window,
        attach=recorder.attach if recorder is not None else None,
    )
    try:
        report = build_report(analyzer, fail_on=threshold, session=session, trace=trace)
        sources.resolve_findings(report.findings)
    finally:
        sources.close()
    if html is not None and recorder is not None:
        from ..timeline.html import write as write_html

        size = write_html(
            recorder.timeline,
            report,
            html,
            title="jarvis diagnose " + " ".join(inputs),
            context={"search": session or trace or ""},
        )
        err.print(f"timeline: {html} ({size / 1e6:.2f} MB)", highlight=False, soft_wrap=True)
    if junit is not None:
        write_junit(report, junit)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        render(report, out, verbose=verbose)
    return int(report.exit_code())
