"""A diagnosis: the judged tree, the findings that matter, and its three renderings
(rich for people, JSON and JUnit for machines)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..exit_codes import ExitCode
from ..logs.analysis import Analyzer
from ..logs.findings import Evidence, Finding, Severity
from .tree import Node, Status, build_tree, diagnosis_path, evaluate, leaves

SCHEMA = "jarvis.diagnose/1"
_ICON = {
    Status.PASS: ("✔", "green"),
    Status.WARN: ("!", "yellow"),
    Status.FAIL: ("✘", "red"),
    Status.NOT_APPLICABLE: ("–", "dim"),
}


@dataclass(slots=True)
class Report:
    analyzer: Analyzer
    findings: list[Finding]
    tree: Node
    fail_on: Severity

    @property
    def usable(self) -> bool:
        """A log with no lifecycle event proves nothing: it must never read as healthy."""
        return self.analyzer.coverage.recognised > 0

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.severity >= self.fail_on]

    @property
    def verdict(self) -> str:
        if not self.usable:
            return "unusable"
        return "unhealthy" if self.failing else "healthy"

    def exit_code(self) -> ExitCode:
        if not self.usable:
            return ExitCode.UNAVAILABLE
        return ExitCode.FAILURE if self.failing else ExitCode.OK

    def to_json(self) -> dict[str, object]:
        a = self.analyzer
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "fail_on": self.fail_on.label,
            "coverage": a.coverage.to_json(),
            "stats": a.stats.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "suppressed": {k.value: v for k, v in a.suppressed.items()},
            "open_streams": len(a.open_streams),
            "diagnosis": diagnosis_path(self.tree),
            "tree": self.tree.to_json(),
        }


def build_report(
    analyzer: Analyzer,
    *,
    fail_on: Severity = Severity.ERROR,
    session: str | None = None,
    trace: str | None = None,
    extra: list[Finding] | None = None,
) -> Report:
    """Judge the tree over the findings, narrowed to a session or trace if asked."""
    findings = list(analyzer.findings) + list(extra or [])
    if session is not None:
        findings = [f for f in findings if f.session == session]
    if trace is not None:
        findings = [f for f in findings if f.trace == trace]
    findings.sort(key=lambda f: (-f.severity, f.id.value))
    for finding in findings:
        finding.jarvis_log = analyzer.jarvis_log
    tree = build_tree(fleet=analyzer.shared_registry)
    evaluate(tree, analyzer, findings)
    return Report(analyzer, findings, tree, fail_on)


def _coverage_line(a: Analyzer) -> Text:
    c = a.coverage
    mb = c.bytes / 1e6
    rate = f", {mb / c.seconds:.0f} MB/s" if c.seconds > 0 and mb > 1 else ""
    other = max(0, c.lines - c.recognised - c.unrecognised - c.garbage)
    return Text.assemble(
        ("coverage ", "bold"),
        f"{mb:.1f} MB, {c.lines:,} lines: {c.recognised:,} lifecycle events, "
        f"{c.unrecognised:,} unrecognised events, {c.garbage:,} garbage, {other:,} other lines "
        f"({c.seconds:.2f} s{rate})",
    )


def _where(file: str, labels: dict[str, str]) -> str:
    """A file as a merged report names it: with the process that wrote it, if known."""
    label = labels.get(file)
    return f"{file} ({label})" if label else file


def _line_where(evidence: Evidence, labels: dict[str, str]) -> str:
    """`file:line`, and the process that wrote the file when the report merged several."""
    label = labels.get(evidence.file)
    where = f"{evidence.file}:{evidence.line}"
    return f"{where} ({label})" if label else where


def _inputs_line(a: Analyzer) -> Text:
    """Which files were merged by time, each with its process (a fleet's log)."""
    c = a.coverage
    inputs = "; ".join(", ".join(_where(f, c.labels) for f in files) for files in c.inputs)
    return Text.assemble(("inputs ", "bold"), f"{len(c.inputs)} merged by time: {inputs}")


def _tree(node: Node, verbose: bool, branch: Tree | None = None) -> Tree:
    icon, style = _ICON[node.status]
    label = Text.assemble((f"{icon} ", style), (node.question, style if node.children else ""))
    if node.findings:
        label.append(f"  {len(node.findings)} finding(s)", style=style)
    elif node.status is Status.NOT_APPLICABLE:
        label.append(f"  not applicable: {node.unjudged}", style="dim")
    here = Tree(label) if branch is None else branch.add(label)
    for child in node.children:
        _tree(child, verbose, here)
    return here


def _stats_table(a: Analyzer) -> Table:
    s = a.stats
    table = Table(title="summary", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    ended = ", ".join(f"{k} {v}" for k, v in sorted(s.ended.items())) or "none"
    d, w = s.durations_ms, s.cancel_wait_ms
    table.add_row("streams", f"{s.streams:,} started; ended: {ended}; {len(a.open_streams)} open")
    table.add_row("cancels", f"{s.cancels:,}; cancel waits p50 {w.quantile(0.5):.0f} ms, "
                  f"p99 {w.quantile(0.99):.0f} ms, max {w.max:.0f} ms; "
                  f"{s.cancel_timeouts} timed out")  # fmt: skip
    table.add_row("durations", f"p50 {d.quantile(0.5):.0f} ms, p99 {d.quantile(0.99):.0f} ms")
    # Only an older server's log says how many flushes were scheduled (flush_scheduled).
    scheduled = f"{s.scheduled:,} scheduled, " if s.scheduled else ""
    batched = f"{s.multi_token_flushes:,} with several tokens"
    table.add_row("flushes", f"{s.flushes:,} ({scheduled}{batched}), {s.tokens:,} tokens")
    if s.loop_blocked or s.max_loop_lag_ms:
        table.add_row("event loop", f"{s.loop_blocked} blocked, max lag {s.max_loop_lag_ms} ms")
    if s.queued or s.busy_rejected:
        q = s.queue_wait_ms
        table.add_row("busy", f"{s.queued:,} prompt(s) queued (wait p50 {q.quantile(0.5):.0f} ms, "
                      f"max {q.max:.0f} ms); {s.busy_rejected:,} refused with 409")  # fmt: skip
    if a.shared_registry:
        table.add_row("registry", f"{s.registry_failures:,} failed operation(s), "
                      f"{s.registry_outages:,} outage(s) recovered, "
                      f"{s.registry_refused:,} prompt(s) refused with 503")  # fmt: skip
    return table


def _finding_block(finding: Finding, verbose: bool, labels: dict[str, str]) -> Group:
    style = "red" if finding.severity >= Severity.ERROR else "yellow"
    lines: list[Text | str] = [
        Text.assemble(
            (f"{finding.severity.label.upper()} ", f"bold {style}"),
            (finding.id.value, "bold"),
            f": {finding.message}",
        )
    ]
    shown = finding.evidence if verbose else finding.evidence[:4]
    for evidence in shown:
        lines.append(
            Text(f"    {_line_where(evidence, labels)}: ", style="dim")
            + Text(evidence.text[:200] if not verbose else evidence.text)
        )
    if len(shown) < len(finding.evidence):
        lines.append(Text(f"    … {len(finding.evidence) - len(shown)} more (-v)", style="dim"))
    lines.append(Text(f"    remedy: {finding.remedy}", style="italic"))
    return Group(*lines)


def render(report: Report, console: Console, *, verbose: bool = False) -> None:
    """The human report: coverage first, the tree, the diagnosis, findings, summary."""
    a = report.analyzer
    console.print(_coverage_line(a))
    # One input keeps the report as it always was; merged inputs say who wrote each line.
    labels = a.coverage.labels if a.coverage.merged else {}
    if a.coverage.merged:
        console.print(_inputs_line(a))
    if not report.usable:
        console.print(
            "[bold red]unusable:[/] no lifecycle event recognised; this log proves nothing "
            "(it needs stream_start/stream_end lines in logfmt, JSON, stdlib logging, "
            "loguru or structlog form; check the path)"
        )
        return
    console.print(_tree(report.tree, verbose))
    path = diagnosis_path(report.tree)
    if path:
        console.print(Text("diagnosis: ", style="bold") + Text(" → ".join(path[1:])))
    limit = None if verbose else 10
    for finding in report.findings[:limit]:
        console.print(_finding_block(finding, verbose, labels))
    hidden = len(report.findings) - len(report.findings[:limit])
    suppressed = sum(a.suppressed.values())
    if hidden or suppressed:
        console.print(f"[dim]… {hidden + suppressed} more finding(s) (-v, or --json)[/]")
    console.print(_stats_table(a))
    counts = {s: sum(1 for f in report.findings if f.severity is s) for s in Severity}
    style = {"healthy": "bold green", "unhealthy": "bold red"}.get(report.verdict, "bold")
    console.print(
        Text(f"{report.verdict}: ", style=style)
        + Text(f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s)")
    )
    if report.verdict == "healthy" and not report.findings:
        proven = _proven(a)
        if proven:
            console.print(escape("; ".join(proven)), style="green")


def _proven(a: Analyzer) -> list[str]:
    """What a clean log shows, and no more: each claim only where the log has the lines
    that prove it."""
    proven = []
    if a.stats.streams and not a.open_streams:
        proven.append(f"every one of {a.stats.streams:,} streams reached stream_end")
    if a.stats.sessioned_streams:
        proven.append("one stream per session at a time")
    if a.cleanup_applies:
        proven.append("every stream_end recorded its cleanup")
    return proven


def write_junit(report: Report, path: Path) -> None:
    """One testcase per invariant (tree leaf); a failure carries its findings."""
    suite = ET.Element("testsuite", name="jarvis.diagnose")
    coverage = report.analyzer.coverage
    labels = coverage.labels if coverage.merged else {}
    cases = leaves(report.tree)
    failures = 0
    for leaf in cases:
        case = ET.SubElement(
            suite, "testcase", classname="jarvis.diagnose",
            name=leaf.finding.value if leaf.finding else leaf.question,
        )  # fmt: skip
        if leaf.status is Status.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", message=leaf.unjudged)
        elif leaf.findings and max(f.severity for f in leaf.findings) >= report.fail_on:
            failures += 1
            failure = ET.SubElement(case, "failure", message=leaf.findings[0].message)
            failure.text = "\n\n".join(
                f.message
                + "\n"
                + "\n".join(f"{_line_where(e, labels)}: {e.text}" for e in f.evidence)
                for f in leaf.findings
            )
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(sum(1 for leaf in cases if leaf.status is Status.NOT_APPLICABLE)))
    from ..junit import write as write_xml  # compiles its regex only when asked for XML

    write_xml(suite, path)
