"""Locust's CSV reports read back into figures, and the gate: which thresholds held.

The names below are the request names the locustfile fires its metrics under
(`loadtests/locustfile.py`); a test checks that both spell them the same.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from jarvis.exceptions import ToolError

from ..exit_codes import ExitCode

SSE = "SSE"
STREAM = "stream"
TTFT = "ttft"
#: Per stream: the mean gap between content chunks, and the per-token ITL, from the
#: server's token count or (`-estimated`) from the text (jarvis_cli/swarm/itl.py).
CHUNK_GAP = "chunk-gap"
ITL = "itl"
ITL_ESTIMATED = "itl-estimated"
FULL_STREAM = "full-stream"
INTERRUPT_TTFT = "interrupt-ttft"
#: One per stream whose text was checked (a deterministic model's only).
TEXT_CHECKED = "text-checked"
#: One per reload (`--reload-rate`): from the reconnect to the first resumed event; its
#: failures are the resume's (a gap across the cut, a server that cannot resume, ...).
RESUME = "resume"
#: One per stream with text, its tokens as the content size: counted by the server, or
#: estimated from the text.
TOKENS_REPORTED = "tokens-reported"
TOKENS_ESTIMATED = "tokens-estimated"
#: The locustfile's failure kinds (its exception classes), in report order; the last two
#: are a resume's only.
KINDS = ("Hang", "StaleChunk", "WrongText", "HTTPError", "BrokenStream", "ResumeGap", "NoResume")
#: The SSE entries whose failures are verdicts: a stream's, and a reload's resume.
JUDGED = (STREAM, RESUME)
_KIND = re.compile(r"^(\w+)\(")


class ReportMissing(ToolError):  # noqa: N818 - named for the condition
    """Locust wrote no stats CSV where it was told to."""

    exit_code = ExitCode.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Row:
    """One line of locust's `*_stats.csv` (times in ms)."""

    type: str
    name: str
    requests: int
    failures: int
    median: float
    average: float
    max: float
    rps: float
    #: Locust's "Average Content Size" (bytes; tokens for the tokens rows).
    average_size: float
    percentiles: dict[str, float]

    def pct(self, label: str) -> float:
        """A percentile column: `pct("99%")`; NaN when locust wrote N/A."""
        return self.percentiles.get(label, math.nan)


def _float(text: str | None) -> float:
    try:
        return float(text or "nan")
    except ValueError:
        return math.nan


def read_stats(path: Path) -> dict[tuple[str, str], Row]:
    """Every row of a `*_stats.csv`, by (type, name); the total row is ("", "Aggregated")."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise ReportMissing(f"no locust stats at {path}: {exc.strerror}") from exc
    rows: dict[tuple[str, str], Row] = {}
    with handle:
        for record in csv.DictReader(handle):
            percentiles = {k: _float(v) for k, v in record.items() if k and k.endswith("%")}
            row = Row(
                type=record.get("Type") or "",
                name=record.get("Name") or "",
                requests=int(_float(record.get("Request Count")) or 0),
                failures=int(_float(record.get("Failure Count")) or 0),
                median=_float(record.get("Median Response Time")),
                average=_float(record.get("Average Response Time")),
                max=_float(record.get("Max Response Time")),
                rps=_float(record.get("Requests/s")),
                average_size=_float(record.get("Average Content Size")),
                percentiles=percentiles,
            )
            rows[(row.type, row.name)] = row
    return rows


def read_failures(path: Path) -> tuple[dict[str, dict[str, int]], int]:
    """From `*_failures.csv`: the failures of streams and of resumes, each by kind (the
    locustfile's exception class; `other` for an error it did not name), and the failed
    HTTP requests, which are neither: a chat POST (or resume GET) that failed is also its
    stream's (resume's) failure, so counting it among the kinds would count it twice."""
    kinds: dict[str, dict[str, int]] = {name: {} for name in JUDGED}
    requests = 0
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError:
        return kinds, requests
    with handle:
        for record in csv.DictReader(handle):
            occurrences = int(_float(record.get("Occurrences")) or 0)
            name = record.get("Name") or ""
            if record.get("Method") != SSE or name not in kinds:
                requests += occurrences
                continue
            match = _KIND.match(record.get("Error") or "")
            kind = match.group(1) if match else "other"
            kinds[name][kind] = kinds[name].get(kind, 0) + occurrences
    return kinds, requests


@dataclass(slots=True)
class Figures:
    """What a swarm measured, from locust's CSV reports (`<prefix>_stats.csv` and friends)."""

    rows: dict[tuple[str, str], Row]
    #: Stream failures by kind; they add up to `stream_failures` (see `load`).
    failures: dict[str, int] = field(default_factory=dict)
    #: Failed HTTP requests (not streams: each failed chat POST is also a stream's HTTPError).
    request_failures: int = 0
    #: Resume failures by kind (reloads only); they add up to `resume_failures`.
    resume_kinds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, prefix: Path) -> Figures:
        stats = prefix.with_name(prefix.name + "_stats.csv")
        if not stats.is_file():
            raise ReportMissing(f"locust wrote no {stats.name} in {stats.parent}")
        kinds, requests = read_failures(prefix.with_name(prefix.name + "_failures.csv"))
        figures = cls(read_stats(stats), kinds[STREAM], requests, kinds[RESUME])
        # Locust's failures CSV keeps one row per distinct message; should a message be
        # missing from it, the shortfall shows as `other`, so the kinds always add up.
        for counted, total in (
            (figures.failures, figures.stream_failures),
            (figures.resume_kinds, figures.resume_failures),
        ):
            missing = total - sum(counted.values())
            if missing > 0:
                counted["other"] = counted.get("other", 0) + missing
        return figures

    def sse(self, name: str) -> Row | None:
        return self.rows.get((SSE, name))

    @property
    def streams(self) -> int:
        row = self.sse(STREAM)
        return row.requests if row else 0

    @property
    def stream_failures(self) -> int:
        row = self.sse(STREAM)
        return row.failures if row else 0

    @property
    def resumes(self) -> int:
        """Reloads that asked for the rest of their answer (0 without --reload-rate)."""
        row = self.sse(RESUME)
        return row.requests if row else 0

    @property
    def resume_failures(self) -> int:
        row = self.sse(RESUME)
        return row.failures if row else 0

    @property
    def fail_ratio(self) -> float:
        """Failed reads over reads: a resume is a read of its own (the rest of an answer),
        so a resume that failed counts as a stream that failed does."""
        reads = self.streams + self.resumes
        return (self.stream_failures + self.resume_failures) / reads if reads else math.nan

    @property
    def text_checked(self) -> int:
        """Streams whose text was checked against the model: 0 when it is not
        deterministic, and then WrongText was not judged at all."""
        row = self.sse(TEXT_CHECKED)
        return row.requests if row else 0

    @property
    def completed(self) -> int:
        row = self.sse(FULL_STREAM)
        return row.requests if row else 0

    def _tokens(self, name: str) -> tuple[int, int]:
        row = self.sse(name)
        if row is None or not row.requests or math.isnan(row.average_size):
            return 0, 0
        return row.requests, round(row.average_size * row.requests)

    @property
    def tokens_reported(self) -> tuple[int, int]:
        """(streams, tokens) whose tokens the server counted (its usage)."""
        return self._tokens(TOKENS_REPORTED)

    @property
    def tokens_estimated(self) -> tuple[int, int]:
        """(streams, tokens) whose tokens were estimated from the text."""
        return self._tokens(TOKENS_ESTIMATED)

    @property
    def tokens(self) -> int:
        """Tokens the clients read, counted by the server where it said, else estimated."""
        return self.tokens_reported[1] + self.tokens_estimated[1]

    @property
    def requests(self) -> int:
        """HTTP requests sent (the chat POSTs and the model probe), not the SSE metrics."""
        return sum(r.requests for (kind, _), r in self.rows.items() if kind not in ("", SSE))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The gate: a swarm passes when every one holds."""

    max_p99_ttft_ms: float
    max_p99_interrupt_ms: float
    max_fail_ratio: float
    max_p99_resume_ms: float
    min_streams: int = 1


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold, judged: its name (the flag), the limit, the measured value."""

    name: str
    limit: str
    value: str
    held: bool


def _ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    # Below a millisecond the digits are the point (a limit of 0.5 is not "0 ms").
    return f"{value:,.0f} ms" if value == 0 or abs(value) >= 1 else f"{value:.2g} ms"


def _ratio(figures: Figures) -> str:
    if math.isnan(figures.fail_ratio):
        return "n/a"
    if not figures.resumes:
        return (f"{figures.fail_ratio:.2%} ({figures.stream_failures:,} of "
                f"{figures.streams:,} streams)")  # fmt: skip
    failed = figures.stream_failures + figures.resume_failures
    return (f"{figures.fail_ratio:.2%} ({failed:,} of {figures.streams:,} streams and "
            f"{figures.resumes:,} resumes)")  # fmt: skip


def judge(figures: Figures, limits: Thresholds) -> list[Check]:
    """Every threshold against the figures. A metric nothing measured crosses its threshold:
    a swarm that read no stream proves nothing and must never pass."""
    checks = [
        Check(
            "streams",
            f">= {limits.min_streams}",
            f"{figures.streams:,}",
            figures.streams >= limits.min_streams,
        ),
        Check(
            "--max-fail-ratio",
            f"{limits.max_fail_ratio:.2%}",
            _ratio(figures),
            not math.isnan(figures.fail_ratio) and figures.fail_ratio <= limits.max_fail_ratio,
        ),
    ]
    ttft = figures.sse(TTFT)
    p99 = ttft.pct("99%") if ttft else math.nan
    checks.append(
        Check(
            "--max-p99-ttft-ms",
            _ms(limits.max_p99_ttft_ms),
            _ms(p99),
            not math.isnan(p99) and p99 <= limits.max_p99_ttft_ms,
        )
    )
    interrupt = figures.sse(INTERRUPT_TTFT)
    if interrupt is not None:  # a run without interruptions has nothing to judge here
        p99 = interrupt.pct("99%")
        checks.append(
            Check(
                "--max-p99-interrupt-ms",
                _ms(limits.max_p99_interrupt_ms),
                _ms(p99),
                not math.isnan(p99) and p99 <= limits.max_p99_interrupt_ms,
            )
        )
    resume = figures.sse(RESUME)
    if resume is not None:  # nor without reloads
        p99 = resume.pct("99%")
        checks.append(
            Check(
                "--max-p99-resume-ms",
                _ms(limits.max_p99_resume_ms),
                _ms(p99),
                not math.isnan(p99) and p99 <= limits.max_p99_resume_ms,
            )
        )
    return checks
