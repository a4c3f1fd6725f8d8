"""A scenario's verdict (pass, fail or skip) and the evidence gathered on the way to it.

A check that needs what the server does not offer is recorded as skipped,
and a scenario whose every check was skipped is SKIP, never PASS: an
absent `/v1/streams` must not read as "no leaks".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: Failures kept per scenario; the rest are counted ("… and 12 more").
MAX_FAILURES = 25
#: Characters of what a server sent that one piece of evidence quotes.
QUOTED = 120


def quoted(text: str | bytes, limit: int = QUOTED) -> str:
    """What a server sent, for evidence: at most `limit` characters, in quotes, with every
    control character, quote and backslash escaped (`'\\x1b[31m'`), so that no body can
    draw on a terminal or forge a line; `…` when cut."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    body = "".join(_escaped(c) for c in text[:limit])
    return f"'{body}'" + ("…" if len(text) > limit else "")


def _escaped(c: str) -> str:
    if c == "'":
        return "\\'"
    if c == "\\" or not c.isprintable():
        return repr(c)[1:-1]  # \n, \x1b, \u2028, \\
    return c


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a secret
    FAIL = "fail"
    SKIP = "skip"


@dataclass(slots=True)
class ScenarioResult:
    """One scenario's verdict, its figures, and the lines that justify it."""

    name: str
    status: Status
    summary: str
    metrics: dict[str, object] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: A request got no byte for the idle bound while no other stream got one either.
    hung: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "hung": self.hung,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics,
            "evidence": self.evidence,
        }


class Checks:
    """Collects one scenario's checks: what failed, what could not be checked, notes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.checked = 0
        self.failures: list[str] = []
        #: How many of `failures`, from the front, name the real failure (see `fail`).
        self.primary = 0
        self.dropped = 0
        self.skipped: list[str] = []
        self.notes: list[str] = []
        #: Failures that are hangs (no byte for the idle bound, on any stream), and the first.
        self.hangs = 0
        self.first_hang = ""

    def __repr__(self) -> str:
        return (
            f"<Checks {self.name} checked={self.checked} failures={len(self.failures)} "
            f"skipped={len(self.skipped)}>"
        )

    def expect(self, ok: bool, failure: str, *, hang: bool = False, primary: bool = False) -> bool:
        """Count one check; record `failure` unless `ok`. Returns `ok`."""
        self.checked += 1
        if not ok:
            self.fail(failure, hang=hang, primary=primary)
        return ok

    def confirm(self) -> None:
        """Count one check that passed."""
        self.checked += 1

    def fail(self, failure: str, *, hang: bool = False, primary: bool = False) -> None:
        """Record a failure. A `primary` one names the real failure (two streams of a
        session at once, a lost last prompt, corrupted bytes) and goes before every
        secondary complaint, so the first evidence line is never a side effect."""
        if hang:
            self.hangs += 1
            self.first_hang = self.first_hang or failure
        if len(self.failures) >= MAX_FAILURES:
            if not primary or self.primary >= MAX_FAILURES:
                self.dropped += 1
                return
            self.failures.pop()
            self.dropped += 1
        if primary:
            self.failures.insert(self.primary, failure)
            self.primary += 1
        else:
            self.failures.append(failure)

    def skip(self, what: str) -> None:
        """A check that could not run; recorded once however often it is asked."""
        line = f"skipped: {what}"
        if line not in self.skipped:
            self.skipped.append(line)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def hung(self) -> bool:
        return self.hangs > 0

    def result(self, summary: str, metrics: dict[str, object]) -> ScenarioResult:
        """The verdict: FAIL on any failure, SKIP when nothing could be checked, else PASS."""
        evidence = list(self.failures)
        if self.dropped:
            evidence.append(f"… and {self.dropped} more failure(s)")
        evidence += self.skipped + self.notes
        if self.failures:
            status = Status.FAIL
            more = len(self.failures) + self.dropped - 1
            summary = self.failures[0].splitlines()[0] + (f" (+{more} more)" if more else "")
            if self.hung:
                summary = (
                    f"hang: {self.hangs} request(s) got no byte for the idle bound while the "
                    f"server sent nothing on any stream; {self.first_hang}"
                )
        elif self.checked == 0:
            status = Status.SKIP
            summary = self.skipped[0].removeprefix("skipped: ") if self.skipped else summary
        else:
            status = Status.PASS
            if self.skipped:
                summary += f" ({len(self.skipped)} check(s) skipped)"
        return ScenarioResult(self.name, status, summary, metrics, evidence, hung=self.hung)
