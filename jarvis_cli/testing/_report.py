"""What `verify_hang` returns: the run's report, read as a test reads it (passed, each
scenario's result, a plain-text explanation for the assertion message)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..verify.results import ScenarioResult, Status

if TYPE_CHECKING:
    from ..verify.report import Report

#: Failure evidence lines `explain()` shows per scenario; `to_json()` has them all.
EXPLAINED_EVIDENCE = 3


class VerifyReport:
    """The verdict of one run: `assert report.passed, report.explain()`.

    `results` holds each scenario's `ScenarioResult` (name, status, summary,
    evidence, metrics) in run order; `to_json()` is the `--json` report.
    """

    __slots__ = ("_report", "_serving", "_verbose")

    def __init__(
        self, report: Report, serving: Sequence[str] = (), *, verbose: bool = False
    ) -> None:
        self._report = report
        #: What went wrong serving the app itself (it would not stop): each fails the run.
        self._serving = tuple(serving)
        #: `verbose=True` was asked for: explain() shows every line of evidence.
        self._verbose = verbose

    def served(self, notes: Sequence[str]) -> VerifyReport:
        """This report, with what went wrong serving the app (each fails the run)."""
        return VerifyReport(self._report, [*self._serving, *notes], verbose=self._verbose)

    def __repr__(self) -> str:
        scenarios = ", ".join(f"{r.name} {r.status.value}" for r in self.results)
        return f"<VerifyReport {self.verdict}: {scenarios}>"

    @property
    def passed(self) -> bool:
        """Every scenario that ran passed, at least one ran, and the app was served cleanly."""
        return self._report.passed and not self._serving

    @property
    def verdict(self) -> str:
        """`pass`, `fail`, `hang` or `unchecked` (no scenario could check anything)."""
        verdict = self._report.verdict
        return "fail" if verdict == "pass" and self._serving else verdict

    @property
    def results(self) -> list[ScenarioResult]:
        return list(self._report.results)

    def result(self, name: str) -> ScenarioResult:
        """The result of scenario `name`; KeyError if it was not run."""
        for result in self._report.results:
            if result.name == name:
                return result
        ran = ", ".join(r.name for r in self._report.results)
        raise KeyError(f"scenario {name!r} was not run (ran: {ran})")

    def to_json(self) -> dict[str, object]:
        return self._report.to_json()

    def explain(self) -> str:
        """Plain text: the verdict, a line per scenario, the first evidence of each failure
        (all of it with `verbose=True`)."""
        run = self._report.run
        counts = ", ".join(f"{self._report.count(s)} {s.value}" for s in Status)
        lines = [
            f"jarvis verify-hang: {self.verdict.upper()} at {run.target.base_url} "
            f"({counts} in {run.seconds:.1f} s)"
        ]
        for result in self._report.results:
            lines.append(f"  {_label(result):<4} {result.name}: {result.summary}")
            if result.status is not Status.FAIL:
                continue
            evidence = [line for item in result.evidence for line in item.splitlines()]
            if evidence and result.summary.startswith(evidence[0]):
                evidence = evidence[1:]  # the summary says it already
            shown = len(evidence) if self._verbose else EXPLAINED_EVIDENCE
            lines += [f"       {line}" for line in evidence[:shown]]
            if len(evidence) > shown:
                more = len(evidence) - shown
                lines.append(f"       … {more} more line(s) in report.result({result.name!r})")
        if run.hung_during is not None:
            lines.append(f"  the server hung during {run.hung_during}")
        lines += [f"  {line}" for line in self._serving]
        return "\n".join(lines)


def _label(result: ScenarioResult) -> str:
    """As the CLI's table says it: FAIL, or HANG for a failure that hung; pass; skip."""
    if result.status is not Status.FAIL:
        return result.status.value
    return "HANG" if result.hung else "FAIL"
