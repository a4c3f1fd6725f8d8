"""One analysis over a set of inputs: open, bound by time, scan (merged by time when
several processes wrote them), judge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .analysis import Analyzer
from .merge import Part, merge_scan, time_order
from .origins import label_sources
from .scan import Scanner, last_ts, offset_at_time, ts_resolver
from .sources import Source, Sources, open_inputs


@dataclass(slots=True)
class Window:
    """An optional time window (`--since`/`--until`, epoch seconds), and where to start
    in given files (path -> byte offset: what a run wrote since it noted their sizes)."""

    since: float | None = None
    until: float | None = None
    offsets: dict[str, int] = field(default_factory=dict)


def _bounds(source: Source, window: Window | None) -> tuple[int, int]:
    start, end = 0, len(source)
    if window is not None and window.since is not None:
        start = offset_at_time(source, window.since)
    if window is not None and window.until is not None:
        end = offset_at_time(source, window.until)
    if window is not None and source.name in window.offsets:
        at = min(window.offsets[source.name], len(source))
        if at > 0 and source.read(at - 1, at) != b"\n":  # not a line start: the next one
            newline = source.buffer.find(b"\n", at)
            at = len(source) if newline < 0 else newline + 1
        start = max(start, at)
    return start, end


def analyze(
    paths: list[str],
    *,
    stale_after_s: float = 30.0,
    window: Window | None = None,
    engine: str | None = None,
    attach: Callable[[Analyzer], None] | None = None,
) -> tuple[Analyzer, Sources]:
    """Scan every input and return the judged analyzer (caller closes sources).

    One input (a file, or one file's rotated set) is read in order, at full speed.
    Several (one per worker or host) are merged by timestamp, so that a session whose
    streams hop between processes is rebuilt in the order things happened.
    `engine` picks the logfmt hot loop ("c" or "python"); by default, the C one if built.
    `attach` is called with the analyzer before the scan (the timeline's recorder).
    """
    sources = open_inputs(paths)
    try:
        analyzer = Analyzer(stale_after_s=stale_after_s, engine=engine)
        analyzer.ts_at = ts_resolver(sources.items)
        analyzer.input_of = sources.input_of
        if attach is not None:
            attach(analyzer)
        scanner = Scanner(analyzer)
        end_ts: float | None = None
        inputs: list[list[Part]] = []
        for files in sources.inputs():
            parts: list[Part] = []
            for source in files:
                start, end = _bounds(source, window)
                if start < end:
                    parts.append((source, start, end))
                tail = last_ts(source)
                if tail is not None and window is not None and window.until is not None:
                    tail = min(tail, window.until)
                if tail is not None:
                    end_ts = tail if end_ts is None else max(end_ts, tail)
            inputs.append(parts)
        if sum(1 for parts in inputs if parts) > 1:
            analyzer.order_refs = time_order(sources, analyzer.ts_at)
            analyzer.coverage.sources.extend(source.name for source in sources)
            merge_scan(scanner, inputs)
        else:
            bounds = {
                source.index: (start, end) for parts in inputs for source, start, end in parts
            }
            for source in sources:
                if source.index in bounds:
                    scanner.scan(source, *bounds[source.index])
                else:
                    analyzer.coverage.sources.append(source.name)
        analyzer.finish(end_ts, ts_resolver(sources.items))
        analyzer.coverage.inputs = [[source.name for source in files] for files in sources.inputs()]
        analyzer.coverage.labels = label_sources(sources, analyzer.origins)
    except BaseException:
        sources.close()
        raise
    return analyzer, sources
