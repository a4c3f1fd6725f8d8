"""A verify run's report and its renderings: a live view while it runs, then a summary
table for people, versioned JSON and JUnit XML for machines."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..exit_codes import ExitCode
from .plan import Plan
from .probe import Probe
from .results import ScenarioResult, Status
from .runner import RunResult
from .target import Target

SCHEMA = "jarvis.verify-hang/1"
#: Evidence lines shown per failing scenario without --verbose.
SHOWN_EVIDENCE = 8
_STYLE = {Status.PASS: "green", Status.FAIL: "bold red", Status.SKIP: "dim"}
_ICON = {Status.PASS: "✔", Status.FAIL: "✘", Status.SKIP: "–"}


@dataclass(slots=True)
class Report:
    """The judged run."""

    plan: Plan
    run: RunResult

    @property
    def results(self) -> list[ScenarioResult]:
        return self.run.results

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def passed(self) -> bool:
        """Every scenario that ran passed, and at least one ran."""
        return self.count(Status.FAIL) == 0 and self.count(Status.PASS) > 0

    @property
    def verdict(self) -> str:
        if self.run.hung_during is not None or any(
            r.hung for r in self.results if r.status is Status.FAIL
        ):
            return "hang"
        if self.count(Status.FAIL):
            return "fail"
        return "pass" if self.passed else "unchecked"

    def exit_code(self) -> ExitCode:
        if self.count(Status.FAIL):
            return ExitCode.FAILURE
        return ExitCode.OK if self.passed else ExitCode.UNAVAILABLE

    def to_json(self) -> dict[str, object]:
        started = datetime.fromtimestamp(self.run.started_wall, UTC)
        return {
            "schema": SCHEMA,
            "passed": self.passed,
            "verdict": self.verdict,
            "started_at": started.isoformat().replace("+00:00", "Z"),
            "seconds": round(self.run.seconds, 3),
            "target": self.run.target.to_json(),
            "server": self.run.server or None,
            "engine": self.run.engine,
            "resume": self.run.resume,
            "plan": self.plan.to_json(),
            "hang": None
            if self.run.hung_during is None
            else {
                "during": self.run.hung_during,
                "silent_s": self.run.silent_s,
                "stacks": self.run.stacks,
            },
            "counts": {s.value: self.count(s) for s in Status},
            "scenarios": [r.to_json() for r in self.results],
        }


def _status_text(result: ScenarioResult) -> Text:
    label = "HANG" if result.hung and result.status is Status.FAIL else result.status.value
    if result.status is Status.FAIL:
        label = label.upper()
    return Text(f"{_ICON[result.status]} {label}", style=_STYLE[result.status])


def render(report: Report, console: Console, *, verbose: bool = False) -> None:
    """The summary table, the evidence for failures, and the verdict."""
    table = Table(title="jarvis verify-hang", title_justify="left", expand=False)
    table.add_column("scenario", style="bold")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("what was checked / what went wrong", overflow="fold")
    for result in report.results:
        table.add_row(result.name, _status_text(result), f"{result.seconds:.2f} s", result.summary)
    console.print(table)
    for result in report.results:
        if result.status is Status.FAIL or (verbose and result.evidence):
            console.print(_evidence(result, verbose))
    if report.run.hung_during is not None:
        silent = report.run.silent_s
        after = f", verdict {silent:.1f} s after its last answer" if silent is not None else ""
        stuck = f"the server hung during {report.run.hung_during}{after}; where it was stuck:"
        console.print(Text(stuck, "bold red"))
        for line in report.run.stacks:
            console.print(Text(f"  {line}"), soft_wrap=True)
    console.print(_verdict_line(report))
    if report.run.engine is not None:
        console.print(Text(f"engine: {report.run.engine['summary']}"), soft_wrap=True)
    resume = report.run.resume
    if resume is not None and resume["detach_grace_s"]:
        offered = "offered" if resume["offered"] else "not seen offered"
        line = (
            f"resume: {offered} ({resume['why']}); a dropped answer may be held "
            f"{resume['detach_grace_s']:g} s for a reattach"
        )
        console.print(Text(line, style="dim"), soft_wrap=True)
    server = report.run.server
    if server:
        console.print(
            Text(f"embedded server log: {server['log_file']}", style="dim"), soft_wrap=True
        )


def _evidence(result: ScenarioResult, verbose: bool) -> Group:
    lines: list[RenderableType] = [Text(f"{result.name}:", style=_STYLE[result.status])]
    shown = 0
    for item in result.evidence:
        for line in item.splitlines():
            if not verbose and shown >= SHOWN_EVIDENCE:
                break
            lines.append(Text(f"  {line}"))
            shown += 1
    total = sum(len(item.splitlines()) for item in result.evidence)
    if shown < total:
        lines.append(Text(f"  … {total - shown} more line(s) (-v, or --json)", style="dim"))
    return Group(*lines)


def _verdict_line(report: Report) -> Text:
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in Status)
    style = "bold green" if report.passed else "bold red"
    verdict = report.verdict.upper()
    if report.run.hung_during:
        verdict += f" (the server hung during {report.run.hung_during})"
    return Text.assemble((verdict, style), f": {counts} in {report.run.seconds:.1f} s")


def write_junit(report: Report, path: Path) -> None:
    """One testcase per scenario: failures carry their evidence, skips their reason."""
    suite = ET.Element("testsuite", name="jarvis.verify-hang")
    suite.set("tests", str(len(report.results)))
    suite.set("failures", str(report.count(Status.FAIL)))
    suite.set("skipped", str(report.count(Status.SKIP)))
    suite.set("time", f"{report.run.seconds:.3f}")
    for result in report.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="jarvis.verify-hang",
            name=result.name,
            time=f"{result.seconds:.3f}",
        )
        if result.status is Status.FAIL:
            failure = ET.SubElement(
                case, "failure", message=result.summary, type="hang" if result.hung else "fail"
            )
            failure.text = "\n".join(result.evidence)
        elif result.status is Status.SKIP:
            ET.SubElement(case, "skipped", message=result.summary)
        elif result.evidence:
            ET.SubElement(case, "system-out").text = "\n".join(result.evidence)
    from ..junit import write as write_xml  # the one writer: well-formed whatever we quote

    write_xml(suite, path)


# -- views: what the run shows while it runs ---------------------------------------


class QuietView:
    """Shows nothing (JSON on stdout)."""

    def target(self, target: Target) -> None:
        return None

    def started(self, name: str) -> None:
        return None

    def finished(self, result: ScenarioResult) -> None:
        return None

    def probe(self, probe: Probe) -> None:
        return None


class LineView(QuietView):
    """One line per finished scenario: for logs and terminals that are not interactive."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def target(self, target: Target) -> None:
        for line in target.detected():
            self.console.print(f"verify-hang: {line}", highlight=False, soft_wrap=True)

    def finished(self, result: ScenarioResult) -> None:
        line = Text.assemble(
            _status_text(result), f" {result.name} ({result.seconds:.2f} s) ", result.summary
        )
        self.console.print(line, highlight=False, soft_wrap=True)


@dataclass(slots=True)
class _Row:
    status: str = "pending"
    result: ScenarioResult | None = None
    began: float = 0.0


@dataclass(eq=False)
class LiveView(QuietView):
    """A live table of the scenarios and the probe latency, redrawn by rich's own thread."""

    console: Console
    names: tuple[str, ...]
    rows: dict[str, _Row] = field(default_factory=dict)
    probes: int = 0
    last_ms: float = 0.0
    max_ms: float = 0.0
    failed_probes: int = 0
    where: str = "starting…"
    _live: Live | None = None

    def __post_init__(self) -> None:
        self.rows = {name: _Row() for name in self.names}

    def __enter__(self) -> LiveView:
        self._live = Live(self, console=self.console, refresh_per_second=8, transient=True)
        self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, value, tb)

    def target(self, target: Target) -> None:
        self.where = "\n".join(target.detected())

    def started(self, name: str) -> None:
        self.rows[name] = _Row("running", None, time.monotonic())

    def finished(self, result: ScenarioResult) -> None:
        self.rows[result.name] = _Row("done", result)

    def probe(self, probe: Probe) -> None:
        self.probes += 1
        if probe.latency is None:
            self.failed_probes += 1
            return
        self.last_ms = probe.latency * 1000
        self.max_ms = max(self.max_ms, self.last_ms)

    def __rich__(self) -> RenderableType:
        table = Table(box=None, show_header=False, pad_edge=False)
        for name, row in self.rows.items():
            if row.result is not None:
                status = _status_text(row.result)
                detail = row.result.summary
            elif row.status == "running":
                status = Text("… running", style="yellow")
                detail = f"{time.monotonic() - row.began:.1f} s"
            else:
                status, detail = Text("  pending", style="dim"), ""
            table.add_row(Text(name, style="bold"), status, Text(detail, overflow="ellipsis"))
        probes = Text(
            f"probes {self.probes}: last {self.last_ms:.0f} ms, max {self.max_ms:.0f} ms"
            + (f", {self.failed_probes} unanswered" if self.failed_probes else ""),
            style="red" if self.failed_probes else "dim",
        )
        return Group(Text(f"verify-hang: {self.where}", style="bold"), table, probes)
