"""Read logs and draw their timeline in one go: what verify-hang and swarm call, where
they have the server's log (diagnose itself draws from the read it judges)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..diagnose.report import Report, build_report
from ..logs.run import Window, analyze
from .html import write
from .record import Recorder


def draw_logs(
    paths: list[str],
    out: Path,
    *,
    title: str,
    offsets: dict[str, int] | None = None,
    context: dict[str, Any] | None = None,
) -> tuple[Report, int]:
    """Diagnose `paths` (each from its byte offset in `offsets`, if named: what a run
    wrote) and write the page to `out`.

    Returns the report (its verdict is diagnose's) and the page's size in bytes.
    Raises `InputError` when a log cannot be read, as `jarvis diagnose` does.
    """
    recorder = Recorder()
    window = Window(offsets=offsets or {})
    analyzer, sources = analyze(paths, window=window, attach=recorder.attach)
    try:
        report = build_report(analyzer)
        sources.resolve_findings(report.findings)
    finally:
        sources.close()
    return report, write(recorder.timeline, report, out, title=title, context=context)
