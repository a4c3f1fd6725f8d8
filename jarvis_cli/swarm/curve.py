"""The curve `--find-max` measured: one row per level (users to p99 TTFT, p99 interrupt,
p99 resume when users reloaded, failures, throughput, per-token ITL), shown as a table
and kept as JSON and markdown."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .itl import CHARS_PER_TOKEN
from .report import SwarmReport
from .thresholds import (
    CHUNK_GAP,
    INTERRUPT_TTFT,
    ITL,
    ITL_ESTIMATED,
    RESUME,
    TTFT,
    Figures,
    Thresholds,
)

JSON_NAME = "find-max.json"
MARKDOWN_NAME = "find-max.md"


def _p(figures: Figures, name: str, label: str) -> float:
    row = figures.sse(name)
    return row.pct(label) if row is not None else math.nan


@dataclass(frozen=True, slots=True)
class Level:
    """One swarm of the search, as measured (times in ms, NaN when nothing was measured)."""

    users: int
    passed: bool
    #: The thresholds it crossed (their flags, `streams`, `diagnose`).
    crossed: tuple[str, ...]
    p99_ttft_ms: float
    p99_interrupt_ms: float
    fail_ratio: float
    streams: int
    streams_per_s: float
    tokens_per_s: float
    #: Median per stream: the per-token ITL (server-counted tokens, else the text
    #: estimate, as `itl_source` says) and the gap between chunks.
    p50_itl_ms: float
    p50_chunk_gap_ms: float
    itl_source: str
    #: Locust's CPU may have limited this level.
    generator_bound: bool
    report_dir: str
    #: Reloads (--reload-rate): how many resumed, their p99 to the first resumed event,
    #: and how many of them failed (0 and NaN without reloads).
    resumes: int = 0
    p99_resume_ms: float = math.nan
    resume_failures: int = 0

    @classmethod
    def of(cls, report: SwarmReport) -> Level:
        figures, seconds = report.figures, report.plan.run_time_s
        counted = figures.sse(ITL)
        itl_name, source = (ITL, "server") if counted is not None else (ITL_ESTIMATED, "estimate")
        if figures.sse(itl_name) is None:
            source = "none"
        return cls(
            users=report.plan.users,
            passed=not report.crossed,
            crossed=tuple(report.crossed),
            p99_ttft_ms=_p(figures, TTFT, "99%"),
            p99_interrupt_ms=_p(figures, INTERRUPT_TTFT, "99%"),
            fail_ratio=figures.fail_ratio,
            streams=figures.streams,
            streams_per_s=figures.streams / seconds,
            tokens_per_s=figures.tokens / seconds,
            p50_itl_ms=_p(figures, itl_name, "50%"),
            p50_chunk_gap_ms=_p(figures, CHUNK_GAP, "50%"),
            itl_source=source,
            generator_bound=report.run.generator_bound,
            report_dir=str(report.plan.report_dir),
            resumes=figures.resumes,
            p99_resume_ms=_p(figures, RESUME, "99%"),
            resume_failures=figures.resume_failures,
        )

    def summary(self) -> str:
        """One line of progress."""
        verdict = "PASS" if self.passed else "FAIL " + ", ".join(self.crossed)
        saturated = " (load generator saturated)" if self.generator_bound else ""
        resume = f", p99 resume {_ms(self.p99_resume_ms)}" if self.resumes else ""
        return (f"{self.users} users: p99 TTFT {_ms(self.p99_ttft_ms)}, p99 interrupt "
                f"{_ms(self.p99_interrupt_ms)}{resume}, failed {_share(self.fail_ratio)}, "
                f"{self.streams_per_s:,.1f} streams/s, {self.tokens_per_s:,.0f} tokens/s"
                f"{saturated}: {verdict}")  # fmt: skip


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.0f} ms"


def _itl(level: Level) -> str:
    """The per-token ITL, marked when its tokens were estimated from the text."""
    if level.itl_source == "estimate":
        return _ms(level.p50_itl_ms) + " est."
    return _ms(level.p50_itl_ms)


def _share(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2%}"


@dataclass(frozen=True, slots=True)
class Curve:
    """Every level of a search and what it found."""

    levels: list[Level]
    limits: Thresholds
    start: int
    ceiling: int
    level_time_s: float
    target: str

    @property
    def best(self) -> Level | None:
        """The largest level that met every threshold."""
        held = [level for level in self.levels if level.passed]
        return max(held, key=lambda level: level.users) if held else None

    @property
    def first_failure(self) -> Level | None:
        """The smallest level that crossed a threshold."""
        crossed = [level for level in self.levels if not level.passed]
        return min(crossed, key=lambda level: level.users) if crossed else None

    def verdict(self) -> str:
        best, failed = self.best, self.first_failure
        if best is None:
            assert failed is not None
            return (f"no level met the thresholds: even {failed.users} users crossed "
                    f"{', '.join(failed.crossed)}; lower --start-users or loosen the "
                    "thresholds")  # fmt: skip
        if failed is None:
            return (f"max users meeting the thresholds: at least {best.users}, the search's "
                    "ceiling (--max-users); every level held")  # fmt: skip
        return (f"max users meeting the thresholds: {best.users} "
                f"({failed.users} crossed {', '.join(failed.crossed)})")  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        best = self.best
        return {
            "target": self.target,
            "thresholds": asdict(self.limits),
            "start_users": self.start,
            "max_users": self.ceiling,
            "level_time_s": self.level_time_s,
            "max_users_meeting_thresholds": best.users if best else None,
            "hit_ceiling": best is not None and self.first_failure is None,
            "itl_note": "per-token ITL: (last chunk - first chunk) / tokens after the first "
            "chunk, tokens from the server's usage where it reported them, else estimated "
            f"at ~{CHARS_PER_TOKEN} chars/token; chunk gap: mean time between chunks",
            "verdict": self.verdict(),
            "levels": [
                {
                    k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in asdict(level).items()
                }
                for level in self.ordered()
            ],
        }

    def ordered(self) -> list[Level]:
        return sorted(self.levels, key=lambda level: level.users)

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        data, table = folder / JSON_NAME, folder / MARKDOWN_NAME
        data.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        table.write_text(self.markdown(), encoding="utf-8")
        return data, table

    @property
    def reloads(self) -> bool:
        """Users reloaded at some level: the curve then has a p99 resume column."""
        return any(level.resumes for level in self.levels)

    def _rows(self) -> list[list[str]]:
        rows = [
            [f"{level.users:,}", "✔" if level.passed else "✘", _ms(level.p99_ttft_ms),
             _ms(level.p99_interrupt_ms), _share(level.fail_ratio), f"{level.streams_per_s:,.1f}",
             f"{level.tokens_per_s:,.0f}", _itl(level), _ms(level.p50_chunk_gap_ms),
             ", ".join(level.crossed) + (" (generator saturated)" if level.generator_bound else "")]
            for level in self.ordered()
        ]  # fmt: skip
        if self.reloads:
            for row, level in zip(rows, self.ordered(), strict=True):
                row.insert(4, _ms(level.p99_resume_ms))
        return rows

    _HEADER = ("users", "held", "p99 TTFT", "p99 interrupt", "failed", "streams/s",
               "tokens/s", "ITL/token p50", "chunk gap p50", "crossed")  # fmt: skip

    @property
    def header(self) -> tuple[str, ...]:
        if not self.reloads:
            return self._HEADER
        return (*self._HEADER[:4], "p99 resume", *self._HEADER[4:])

    def markdown(self) -> str:
        limits, header = self.limits, self.header
        resume = f"p99 resume <= {limits.max_p99_resume_ms:g} ms, " if self.reloads else ""
        lines = [
            f"# jarvis swarm --find-max: {self.target}",
            "",
            f"Thresholds: p99 TTFT <= {limits.max_p99_ttft_ms:g} ms, p99 interrupt <= "
            f"{limits.max_p99_interrupt_ms:g} ms, {resume}failed streams <= "
            f"{limits.max_fail_ratio:.2%}. Levels of {self.level_time_s:g} s from "
            f"{self.start} users, at most {self.ceiling}.",
            "",
            f"**{self.verdict()}**",
            "",
            "| " + " | ".join(header) + " |",
            "| " + " | ".join(["---:"] * (len(header) - 1) + ["---"]) + " |",
            *("| " + " | ".join(row) + " |" for row in self._rows()),
            "",
            "ITL/token: per stream, the time from its first chunk to its last over the "
            "tokens after the first chunk, tokens as the server counted them (its usage), "
            f"or `est.`: estimated at ~{CHARS_PER_TOKEN} chars/token. Chunk gap: per stream, "
            "the mean time between chunks (one gap per chunk, however many tokens it "
            "carries). Both are medians over streams. Each level's locust reports are in "
            "its own folder.",
            "",
        ]
        return "\n".join(lines)

    def table(self) -> Table:
        table = Table(title="find-max: the curve", title_justify="left", pad_edge=False)
        header = self.header
        for i, label in enumerate(header):
            table.add_column(label, justify="left" if i == len(header) - 1 else "right")
        for level, row in zip(self.ordered(), self._rows(), strict=True):
            table.add_row(*row, style=None if level.passed else "red")
        return table

    def render(self, console: Console) -> None:
        console.print(self.table())
        style = "bold green" if self.best is not None else "bold red"
        console.print(Text(self.verdict(), style=style))
