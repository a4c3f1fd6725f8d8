"""One analysis over a set of inputs: open, bound by time, scan, judge."""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import Analyzer
from .scan import Scanner, last_ts, offset_at_time, ts_resolver
from .sources import Sources, open_inputs


@dataclass(slots=True)
class Window:
    """An optional time window (`--since`/`--until`, epoch seconds)."""

    since: float | None = None
    until: float | None = None


def analyze(
    paths: list[str],
    *,
    stale_after_s: float = 30.0,
    window: Window | None = None,
    engine: str | None = None,
) -> tuple[Analyzer, Sources]:
    """Scan every input in order and return the judged analyzer (caller closes sources).

    `engine` picks the logfmt hot loop ("c" or "python"); by default, the C one if built.
    """
    sources = open_inputs(paths)
    try:
        analyzer = Analyzer(stale_after_s=stale_after_s, engine=engine)
        analyzer.ts_at = ts_resolver(sources.items)
        scanner = Scanner(analyzer)
        end_ts: float | None = None
        for source in sources:
            start, end = 0, len(source)
            if window is not None and window.since is not None:
                start = offset_at_time(source, window.since)
            if window is not None and window.until is not None:
                end = offset_at_time(source, window.until)
            if start < end:
                scanner.scan(source, start, end)
            else:
                analyzer.coverage.sources.append(source.name)
            tail = last_ts(source)
            if tail is not None and window is not None and window.until is not None:
                tail = min(tail, window.until)
            if tail is not None:
                end_ts = tail if end_ts is None else max(end_ts, tail)
        analyzer.finish(end_ts, ts_resolver(sources.items))
    except BaseException:
        sources.close()
        raise
    return analyzer, sources
