"""The swarm's summary for people: load, latencies, failures by kind, the gate, the verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..exit_codes import ExitCode
from .itl import CHARS_PER_TOKEN
from .runner import LocustRun, Plan
from .thresholds import (
    CHUNK_GAP,
    FULL_STREAM,
    INTERRUPT_TTFT,
    ITL,
    ITL_ESTIMATED,
    KINDS,
    RESUME,
    STREAM,
    TTFT,
    Check,
    Figures,
)

_LATENCIES = (
    (TTFT, "time to first token"),
    (INTERRUPT_TTFT, "interrupt → first token"),
    (CHUNK_GAP, "gap between chunks (per stream mean)"),
    (ITL, "inter-token, per token (server's count)"),
    (ITL_ESTIMATED, f"inter-token, per token (estimated ~{CHARS_PER_TOKEN} chars/token)"),
    (FULL_STREAM, "full stream (completed)"),
    (STREAM, "any stream, to its end"),
)
#: Shown when users reloaded (or were to: --reload-rate), after interrupt → first token.
_RESUME = (RESUME, "reload → first resumed event")


@dataclass(slots=True)
class Diagnosis:
    """`jarvis diagnose` on the embedded server's log after the swarm."""

    verdict: str
    findings: list[str] = field(default_factory=list)
    log_path: Path | None = None
    #: The files read: the log itself, or each worker's of a fleet.
    log_files: tuple[Path, ...] = ()
    #: The timeline page of the same read (next to locust's report), or why there is none.
    timeline: Path | str | None = None

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"


@dataclass(slots=True)
class SwarmReport:
    plan: Plan
    figures: Figures
    checks: list[Check]
    run: LocustRun
    diagnosis: Diagnosis | None = None
    target: str = ""

    @property
    def crossed(self) -> list[str]:
        names = [c.name for c in self.checks if not c.held]
        if self.diagnosis is not None and not self.diagnosis.healthy:
            names.append("diagnose")
        return names

    def exit_code(self) -> ExitCode:
        return ExitCode.FAILURE if self.crossed else ExitCode.OK


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.0f}"


def _latency_table(figures: Figures, *, reloads: bool) -> Table:
    table = Table(title="latencies (ms)", title_justify="left", pad_edge=False)
    table.add_column("metric")
    for label in ("count", "p50", "p90", "p99", "max"):
        table.add_column(label, justify="right")
    rows = list(_LATENCIES)
    if reloads or figures.sse(RESUME) is not None:
        rows.insert(2, _RESUME)
    for name, label in rows:
        row = figures.sse(name)
        if row is None:
            table.add_row(label, "0", "–", "–", "–", "–", style="dim")
            continue
        table.add_row(label, f"{row.requests:,}", _ms(row.pct("50%")), _ms(row.pct("90%")),
                      _ms(row.pct("99%")), _ms(row.max))  # fmt: skip
    return table


def _tokens_line(figures: Figures, seconds: float) -> Text:
    """Where the tokens (and so the per-token ITL) came from: the server's usage, or the
    text estimate, named as such; and the throughput they make."""
    (counted, reported), (guessed, estimated) = figures.tokens_reported, figures.tokens_estimated
    parts = []
    if counted:
        parts.append(f"{reported:,} counted by the server ({counted:,} streams)")
    if guessed:
        parts.append(f"{estimated:,} estimated from the text ({guessed:,} streams, "
                     f"~{CHARS_PER_TOKEN} chars/token)")  # fmt: skip
    if not parts:
        return Text("tokens: none read", style="dim")
    rate = f"; {figures.tokens / seconds:,.0f} tokens/s" if seconds > 0 else ""
    return Text("tokens: " + ", ".join(parts) + rate, style="dim")


def _text_check_line(figures: Figures) -> Text:
    """Whether WrongText was judged: only jarvis-synthetic's text is known in advance, so on
    any other model the check is off, and the summary says so rather than count it passed
    (nor claim the model is not deterministic: nobody measured that)."""
    if figures.text_checked:
        return Text(f"text check (WrongText): on, {figures.text_checked:,} streams checked "
                    "against the deterministic model")  # fmt: skip
    return Text(
        "text check (WrongText): off, this model's text is not known in advance (only "
        "jarvis-synthetic's is); not judged, not passed",
        style="yellow",
    )


def _kinds_line(title: str, failures: dict[str, int]) -> Text:
    if not failures:
        return Text(f"{title}: none", style="green")
    kinds = [k for k in (*KINDS, "other") if failures.get(k)]
    kinds += sorted(k for k in failures if k not in kinds)
    return Text(f"{title}: ", style="bold red") + Text(
        ", ".join(f"{k} {failures[k]:,}" for k in kinds)
    )


def _resume_lines(figures: Figures, reload_rate: float) -> list[Text]:
    """What the reloads measured and how their resumes failed, or that none happened;
    and, when the server did not resume at all, what to change."""
    row = figures.sse(RESUME)
    if row is None:
        return [Text(f"resumes: none (--reload-rate {reload_rate:g}: no reload in this run)",
                     style="yellow")]  # fmt: skip
    lines = [
        Text(f"resumes: {row.requests:,} (reload → first resumed event p50 "
             f"{_ms(row.pct('50%'))} ms, p99 {_ms(row.pct('99%'))} ms), "
             f"{figures.resume_failures:,} failed"),
        _kinds_line("resume failures by kind", figures.resume_kinds),
    ]  # fmt: skip
    if figures.resume_kinds.get("NoResume"):
        lines.append(
            Text("NoResume: the server did not resume (events without ids, or 404, 405 or 501 "
                 "at GET /v1/streams/{id}); start it with resume on (jarvis serve "
                 "--resume-ttl S), or leave --reload-rate out", style="yellow")
        )  # fmt: skip
    return lines


def _gate_table(checks: list[Check]) -> Table:
    table = Table(title="thresholds", title_justify="left", pad_edge=False)
    for label in ("", "threshold", "limit", "measured"):
        table.add_column(label)
    for check in checks:
        mark = Text("✔", style="green") if check.held else Text("✘", style="bold red")
        table.add_row(mark, check.name, check.limit, check.value)
    return table


def _generator_lines(run: LocustRun) -> list[Text]:
    lines = []
    for process in run.processes:
        median = process.median_cpu
        if median is None:
            continue
        style = "bold yellow" if process.saturated else "dim"
        peak = max(process.samples)
        lines.append(Text(f"  {process.role}: CPU median {median:.0%} of a core, "
                          f"peak {peak:.0%}", style=style))  # fmt: skip
    return lines


def render(report: SwarmReport, console: Console) -> None:
    plan, figures, run = report.plan, report.figures, report.run
    mode = f"{plan.workers} worker process(es)" if plan.workers else "one locust process"
    servers = " + ".join(plan.servers)
    console.print(
        Text.assemble(
            ("swarm ", "bold"),
            f"{report.target or servers}: {plan.users} users "
            f"({plan.shape}), {plan.run_time_s:g} s, interrupt rate "
            f"{plan.interrupt_rate:g}"
            + (f", reload rate {plan.reload_rate:g}" if plan.reload_rate else "")
            + f", {mode}",
        )
    )
    reloads = plan.reload_rate > 0 or figures.resumes > 0
    resumes = (f", resumes {figures.resumes:,}, resume failures {figures.resume_failures:,}"
               if reloads else "")  # fmt: skip
    console.print(
        f"requests {figures.requests:,} HTTP, streams {figures.streams:,}, "
        f"stream failures {figures.stream_failures:,}{resumes}"
    )
    console.print(_latency_table(figures, reloads=reloads))
    console.print(_tokens_line(figures, plan.run_time_s))
    console.print(_kinds_line("failures by kind", figures.failures))
    if reloads:
        for line in _resume_lines(figures, plan.reload_rate):
            console.print(line)
    if figures.request_failures:
        also = ", each resume GET its resume's failure" if reloads else ""
        console.print(
            Text(f"failed HTTP requests: {figures.request_failures:,} "
                 f"(each chat POST among them is also its stream's HTTPError{also})",
                 style="dim")
        )  # fmt: skip
    console.print(_text_check_line(figures))
    console.print(_gate_table(report.checks))
    if report.diagnosis is not None:
        d = report.diagnosis
        style = "green" if d.healthy else "bold red"
        files = d.log_files or ((d.log_path,) if d.log_path else ())
        where = "  " + " ".join(str(path) for path in files) if files else ""
        console.print(Text("diagnose (server log): ", style="bold") + Text(d.verdict, style=style)
                      + Text(where, style="dim"))  # fmt: skip
        for finding in d.findings[:5]:
            console.print(f"  {finding}", highlight=False)
        if isinstance(d.timeline, Path):
            console.print(Text(f"timeline: {d.timeline}", style="dim"), soft_wrap=True)
        elif d.timeline is not None:
            console.print(Text(d.timeline, style="yellow"), soft_wrap=True)
    cpu = _generator_lines(run)
    if cpu:
        console.print(Text("load generator", style="bold"))
        for line in cpu:
            console.print(line)
    if run.generator_bound:
        console.print(
            Text("the load generator was the bottleneck: ", style="bold yellow")
            + Text(
                "locust's CPU saturated"
                + (f" ({run.cpu_warnings[0]})" if run.cpu_warnings else "")
                + ", so latencies include its own queueing; the figures measure "
                "locust as much as the server. Use --workers N, fewer users, or more "
                "machines (docs/swarm.md) before blaming the server."
            )
        )
    console.print(Text(f"reports: {plan.report_dir}", style="dim"))
    crossed = report.crossed
    if crossed:
        blame = " (while the load generator was saturated)" if run.generator_bound else ""
        console.print(
            Text("FAIL ", style="bold red") + Text(f"crossed: {', '.join(crossed)}{blame}")
        )
    else:
        console.print(Text("PASS ", style="bold green") + Text("every threshold held"))
