"""The server a swarm runs against: a URL that must answer, or the embedded one, whose log
`diagnose` reads afterwards."""

from __future__ import annotations

from pathlib import Path

import httpx

from ..diagnose.report import Report, build_report
from ..logs.run import analyze
from ..logs.sources import InputError
from ..timeline.draw import draw_logs
from ..verify import serverlog
from ..verify.target import Unreachable
from .report import Diagnosis

PROBE_TIMEOUT_S = 3.0


async def check_reachable(url: str, path: str = "/v1/models") -> None:
    """Any HTTP answer to GET `path` means the server is there, a 404 included (a server
    without a model list is fine); Unreachable if none. This probe is no stream and no
    failure of the swarm."""
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            await client.get(f"{url}{path}")
    except httpx.HTTPError as exc:
        raise Unreachable(f"nothing answers at {url} ({type(exc).__name__}: {exc})") from exc


def diagnose_log(path: Path, timeline: Path | None = None) -> Diagnosis:
    """`jarvis diagnose` over the whole log (every worker's file of a fleet, as
    `jarvis diagnose system.w*.log` reads them): its verdict and the failing findings.
    With `timeline`, the same read is drawn there too (`jarvis diagnose --html`)."""
    names = [str(file) for file in serverlog.files(path)]
    drawn: Path | str | None = None
    try:
        if timeline is None:
            report = _report(names)
        else:
            try:
                report, _ = draw_logs(names, timeline, title=f"jarvis swarm: {path.parent.name}")
                drawn = timeline
            except InputError:
                raise
            except Exception as exc:  # the page is an extra: never the swarm's verdict
                drawn = f"no timeline: {exc}"
                report = _report(names)
    except InputError as exc:
        return Diagnosis("unusable", [str(exc)], path)
    findings = [f"{f.severity.label.upper()} {f.id.value}: {f.message}" for f in report.failing]
    return Diagnosis(report.verdict, findings, path, tuple(Path(name) for name in names), drawn)


def _report(names: list[str]) -> Report:
    analyzer, sources = analyze(names)
    try:
        report = build_report(analyzer)
        sources.resolve_findings(report.findings)
    finally:
        sources.close()
    return report
