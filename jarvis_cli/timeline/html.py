"""Write a timeline as one self-contained HTML file: the data as JSON, the page's
script and styles inline, nothing fetched from anywhere (it opens from disk, offline).

The data is columnar (one array per field) with times in milliseconds from the first
line drawn: a bar costs about 40 bytes, so the limits of `record.py` keep the file
under about 5 MB whatever the log. Every string from the log (session ids, traces,
evidence lines) reaches the page only as JSON, escaped so that it cannot close the
script element, and the page's script writes it with `textContent`, never as HTML.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

from jarvis.exceptions import ConfigError

from ..diagnose.report import Report
from ..diagnose.tree import diagnosis_path
from ..logs.dialects import parse_line
from ..logs.findings import Finding
from .budget import fit, set_density
from .record import (
    MAX_BARS,
    MAX_CLEANUP_MARKERS,
    MAX_COUNTED_SESSIONS,
    MAX_LANES,
    MAX_MARKERS,
    OTHER,
    OTHER_LANE,
    Bar,
    Mark,
    Timeline,
)

SCHEMA = "jarvis.timeline/1"
#: Lanes added for sessions named by findings but past MAX_LANES (drawn from evidence).
MAX_FINDING_LANES = 200
#: Density bins per lane on the page, at most (the recorder's finer bins are merged).
PAGE_BINS = 400
_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def page_data(
    timeline: Timeline, report: Report, *, title: str, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON the page draws: lanes, bars, markers, loop spans, density, findings."""
    t0 = timeline.first_ts or 0.0
    t1 = timeline.last_ts if timeline.last_ts is not None else t0

    def ms(ts: float) -> int:
        return round((ts - t0) * 1000)

    lanes = list(timeline.lanes)
    bars = timeline.bars
    reasons: list[str] = []
    reason_index: dict[str, int] = {}
    columns: dict[str, list[Any]] = {
        k: [] for k in ("lane", "start", "end", "reason", "trace", "sid", "flags", "input")
    }
    for bar in bars:
        reason = bar.reason or "open"
        if reason not in reason_index:
            reason_index[reason] = len(reasons)
            reasons.append(reason)
        columns["lane"].append(bar.lane)
        columns["start"].append(ms(bar.start))
        columns["end"].append(-1 if bar.end is None else ms(bar.end))
        columns["reason"].append(reason_index[reason])
        columns["trace"].append(bar.trace)
        columns["sid"].append(bar.stream_id if bar.stream_id != bar.trace else "")
        flags = (1 if bar.cancelled else 0) | (2 if bar.fenced else 0)
        flags |= 4 if bar.cleanup_done not in (None, "True") else 0
        columns["flags"].append(flags)
        columns["input"].append(bar.input)
    kinds = [mark.value for mark in Mark]
    markers: dict[str, list[int]] = {"lane": [], "t": [], "kind": [], "bar": []}
    for lane, when, kind, index in timeline.markers:
        markers["lane"].append(lane)
        markers["t"].append(ms(when))
        markers["kind"].append(kinds.index(kind.value))
        markers["bar"].append(index)
    other_lane = -1
    if timeline.limits.streams_other or any(lane == OTHER for lane, _ in timeline.density):
        other_lane = len(lanes)
        lanes.append(OTHER_LANE)
    drawn_lanes = len(lanes)
    by_id: dict[str, list[int]] = {}
    for i, bar in enumerate(bars):
        for key in {bar.trace, bar.stream_id} - {""}:
            by_id.setdefault(key, []).append(i)
    findings = [_finding(f, bars, by_id, lanes, t0, other_lane) for f in report.findings]
    density = _density(timeline, t0, t1, other_lane)
    return {
        "schema": SCHEMA,
        "title": title,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "t0": t0,
        "span_ms": max(1, ms(t1)),
        "verdict": report.verdict,
        "exit_code": int(report.exit_code()),
        "diagnosis": _diagnosis(report),
        "coverage": report.analyzer.coverage.to_json(),
        "stats": report.analyzer.stats.to_json(),
        "lanes": lanes,
        "inputs": _inputs(report),
        "reasons": reasons,
        "bars": columns,
        "kinds": kinds,
        "markers": markers,
        "loop": [[ms(a), ms(b), lag, where] for a, b, lag, where in timeline.loop_spans],
        "density": density,
        "findings": findings,
        "notes": _notes(timeline, report, len(lanes) - drawn_lanes),
        "context": context or {},
    }


def _inputs(report: Report) -> list[str]:
    """Each input's name as the report gives it: its files, and the process that wrote
    them when several were merged (`system.w2.log (worker 2, pid 1234)`)."""
    coverage = report.analyzer.coverage
    names = []
    for files in coverage.inputs:
        label = coverage.labels.get(files[0]) if files else None
        name = ", ".join(files)
        names.append(f"{name} ({label})" if label else name)
    return names


def _diagnosis(report: Report) -> list[str]:
    return [str(step) for step in diagnosis_path(report.tree)]


def _finding(
    finding: Finding,
    bars: list[Bar],
    by_id: dict[str, list[int]],
    lanes: list[str],
    t0: float,
    other_lane: int,
) -> dict[str, Any]:
    """A finding with what the page needs to highlight it: its bars, its lane, and the
    time of each evidence line. Its session gets a lane if it had none (past the limit)."""
    ids: set[str] = {finding.trace} if finding.trace else set()
    evidence: list[dict[str, Any]] = []
    for line in finding.evidence:
        record = parse_line(line.text)
        when = None
        if record is not None:
            when = None if record.ts is None else round((record.ts - t0) * 1000)
            for key in ("trace", "stream_id", "request_id", "prev_trace"):
                value = record.fields.get(key)
                if value:
                    ids.update(value.split(","))
        evidence.append({"file": line.file, "line": line.line, "text": line.text, "t": when})
    hits = sorted({i for key in ids for i in by_id.get(key, ())})
    lane = bars[hits[0]].lane if hits else -1
    if lane < 0 and finding.session is not None:
        if finding.session in lanes:
            lane = lanes.index(finding.session)
        elif len(lanes) < MAX_LANES + MAX_FINDING_LANES + (1 if other_lane >= 0 else 0):
            lane = len(lanes)
            lanes.append(finding.session)
    return {
        "id": finding.id.value,
        "severity": finding.severity.label,
        "message": finding.message,
        "session": finding.session,
        "trace": finding.trace,
        "remedy": finding.remedy,
        "evidence": evidence,
        "bars": hits,
        "lane": lane,
    }


def _density(timeline: Timeline, t0: float, t1: float, other_lane: int) -> dict[str, Any]:
    """Flushes per lane in at most PAGE_BINS bins over the whole span."""
    span = max(t1 - t0, timeline.bin_s)
    width = max(timeline.bin_s, span / PAGE_BINS)
    # A bin of the page holds whole recorder bins.
    width = timeline.bin_s * math.ceil(width / timeline.bin_s)
    merged: Counter[tuple[int, int]] = Counter()
    for (lane, number), count in timeline.density.items():
        start = number * timeline.bin_s
        page_bin = max(0, int((start - t0) / width))
        if lane != OTHER or other_lane >= 0:
            merged[other_lane if lane == OTHER else lane, page_bin] += count
    out: dict[str, Any] = {"bin_ms": round(width * 1000, 3)}
    set_density(out, merged)
    return out


def _notes(timeline: Timeline, report: Report, finding_lanes: int) -> list[str]:
    """What the page leaves out, in words (the page shows these above the lanes)."""
    limits = timeline.limits
    notes: list[str] = []
    if limits.sessions > MAX_LANES:
        more = "+" if limits.sessions >= MAX_COUNTED_SESSIONS else ""
        notes.append(
            f"{limits.sessions:,}{more} sessions: the first {MAX_LANES:,} seen have a lane "
            f"each; the {limits.streams_other:,} streams of the others are drawn only as "
            f"flush density in the '{OTHER_LANE}' lane (with the flushes of streams that "
            "started before the log)"
            + (
                f", except {finding_lanes} session(s) named by findings, drawn from the "
                "findings' evidence lines"
                if finding_lanes
                else ""
            )
        )
    if limits.streams_unbarred > limits.streams_other:
        notes.append(
            f"{limits.streams_unbarred - limits.streams_other:,} streams have no bar: past "
            f"{MAX_BARS:,} bars (or with no timestamp), they are counted and their flushes "
            "drawn as density"
        )
    if limits.markers_dropped:
        notes.append(
            f"{limits.markers_dropped:,} markers are not drawn: past {MAX_MARKERS:,} "
            f"(cleanup steps: past their own {MAX_CLEANUP_MARKERS:,})"
        )
    if limits.untimed_flushes:
        notes.append(
            f"{limits.untimed_flushes:,} flush lines have no timestamp near them: "
            "counted, not in the density"
        )
    if limits.loop_spans_dropped:
        notes.append(f"{limits.loop_spans_dropped:,} loop_blocked spans are not drawn")
    if timeline.first_ts is None:
        notes.append("no lifecycle line has a timestamp: there is nothing to draw in time")
    elif limits.untimed:
        notes.append(f"{limits.untimed:,} lifecycle lines have no timestamp: not drawn")
    if report.analyzer.suppressed:
        total = sum(report.analyzer.suppressed.values())
        notes.append(f"{total:,} findings past the per-kind limit are counted, not listed")
    return notes


def render(data: dict[str, Any]) -> str:
    """The page: the template with its styles, script and data inline."""
    assets = resources.files("jarvis_cli.timeline") / "assets"
    template = (assets / "page.html").read_text(encoding="utf-8")
    document = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return (
        template.replace("/*STYLE*/", (assets / "timeline.css").read_text(encoding="utf-8"))
        .replace("/*SCRIPT*/", (assets / "timeline.js").read_text(encoding="utf-8"))
        .replace("{{TITLE}}", html.escape(data["title"]))
        .replace("/*DATA*/", document.translate(_SCRIPT_UNSAFE))
    )


def check_writable(path: Path) -> None:
    """Fail now, with a usage error, if the page could not be written at `path`: before
    a long read or a whole run, not after it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write --html {path}: {exc.strerror}") from exc
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        what = "is a directory" if path.is_dir() else "its folder is not writable"
        raise ConfigError(f"cannot write --html {path}: {what}")


def write(
    timeline: Timeline,
    report: Report,
    path: Path,
    *,
    title: str,
    context: dict[str, Any] | None = None,
) -> int:
    """Write the page to `path` (its folder made if needed); returns its size in bytes."""
    text = render(fit(page_data(timeline, report, title=title, context=context)))
    # A path from argv may hold bytes that are no UTF-8 (surrogates): shown as U+FFFD.
    data = text.encode("utf-8", "replace")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write --html {path}: {exc.strerror}") from exc
    return len(data)
