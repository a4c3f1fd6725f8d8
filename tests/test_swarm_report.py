"""`jarvis swarm`'s summary on the terminal, from small fixture CSVs (no locust run): the
resume figures appear when users reloaded, and only then."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from rich.console import Console

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.swarm.report import SwarmReport, render
from jarvis_cli.swarm.runner import LocustRun, Plan
from jarvis_cli.swarm.thresholds import Figures, judge

from .test_swarm_thresholds import FAILURES, LIMITS, RESUME_FAILURES, RESUME_ROW, STATS, write

PLAN = Plan(
    url="http://127.0.0.1:8000", users=30, spawn_rate=15, run_time_s=30, interrupt_rate=0.3,
    workers=0, locustfile=Path("/x/locustfile.py"), report_dir=Path("/r"),
)  # fmt: skip


def shown(tmp_path: Path, stats: str, failures: str, reload_rate: float) -> tuple[str, SwarmReport]:
    """The summary as printed (one line per line, spaces squeezed), and the report."""
    figures = Figures.load(write(tmp_path, stats, failures))
    plan = dataclasses.replace(PLAN, reload_rate=reload_rate)
    report = SwarmReport(plan, figures, judge(figures, LIMITS), LocustRun([], 0))
    console = Console(file=io.StringIO(), width=200, color_system=None)
    render(report, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(" ".join(line.split()) for line in text.splitlines()), report


def test_reloads_show_their_count_latency_failures_and_threshold(tmp_path: Path) -> None:
    """With a `resume` entry: the header counts resumes, the latency table has the reload
    row (count, p50, p90, p99, max), the resume failures are listed by kind apart from the
    streams', a NoResume says what to change, and the resume threshold is in the gate."""
    text, report = shown(tmp_path, STATS + RESUME_ROW, RESUME_FAILURES, 0.5)
    assert "reload rate 0.5" in text
    assert "streams 200, stream failures 3, resumes 10, resume failures 2" in text
    assert "│reload → first resumed event │ 10 │ 80 │ 82 │ 95 │ 95│" in text
    assert "resumes: 10 (reload → first resumed event p50 80 ms, p99 95 ms), 2 failed" in text
    assert "failures by kind: Hang 1, StaleChunk 2" in text
    assert "resume failures by kind: ResumeGap 1, NoResume 1" in text
    assert "start it with resume on (jarvis serve --resume-ttl S)" in text
    assert "│ --max-p99-resume-ms │ 100 ms │ 95 ms" in text
    assert "FAIL crossed: --max-fail-ratio" in text
    assert report.exit_code() == ExitCode.FAILURE


def test_a_reload_rate_without_any_reload_says_so(tmp_path: Path) -> None:
    """--reload-rate given but no reload happened (a short run): said, not left out, and
    the resume threshold is not judged (nothing measured it)."""
    text, _ = shown(tmp_path, STATS, FAILURES, 0.1)
    assert "resumes: none (--reload-rate 0.1: no reload in this run)" in text
    assert "--max-p99-resume-ms" not in text


def test_without_reloads_the_summary_has_no_resume_lines(tmp_path: Path) -> None:
    """The default (no --reload-rate): no resume row, line or check anywhere."""
    text, _ = shown(tmp_path, STATS, FAILURES, 0.0)
    assert "resume" not in text
