"""`jarvis diagnose --follow`: live verdicts with `tail -F` semantics.

Files are followed by name: a rotation (new inode) drains the old file and
starts the new one at its beginning, a truncation starts over, a partial last
line is held until its newline arrives. Open streams stay "open" until
`--stale-after`; Ctrl-C prints the final report and exits by its verdict.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from rich.console import Group
from rich.live import Live
from rich.text import Text

from ..console import out
from ..exit_codes import ExitCode
from ..logs.analysis import Analyzer
from ..logs.findings import Finding, Severity
from ..logs.scan import Scanner, sniff, ts_resolver
from ..logs.sources import FileView, Source, Sources
from .report import build_report, render

READ_SIZE = 1 << 20


@dataclass(eq=False)
class _Followed:
    """One followed path: the file currently open under that name, and where we are."""

    path: str
    #: Its input number: a restart or a blocked loop in one file is that process's alone.
    number: int = 0
    source: Source | None = None
    inode: int | None = None
    pos: int = 0
    line: int = 1
    partial: bytes = b""
    dialect: str | None = None
    notes: list[str] = field(default_factory=list)


class Follower:
    """Reads what was appended to each path since the last `poll()`."""

    def __init__(self, paths: list[str], analyzer: Analyzer, sources: Sources) -> None:
        self.analyzer = analyzer
        self.sources = sources
        self.scanner = Scanner(analyzer)
        self.files = [_Followed(p, number) for number, p in enumerate(paths)]
        analyzer.input_of = sources.input_of

    def poll(self) -> int:
        """Read and scan all new complete lines; return how many bytes were consumed."""
        return sum(self._poll_one(f) for f in self.files)

    def _open(self, followed: _Followed, note: str | None) -> bool:
        try:
            fd = os.open(followed.path, os.O_RDONLY)
        except OSError:
            return False  # not there yet (or between rename and create): try next poll
        followed.source = self.sources.add(followed.path, FileView(fd), input=followed.number)
        followed.inode = os.fstat(fd).st_ino
        followed.pos, followed.line, followed.partial, followed.dialect = 0, 1, b"", None
        self.analyzer.coverage.sources.append(followed.path)
        if note:
            followed.notes.append(note)
        return True

    def _poll_one(self, followed: _Followed) -> int:
        if followed.source is None and not self._open(followed, None):
            return 0
        consumed = self._drain(followed)
        try:
            current = os.stat(followed.path)
        except OSError:
            return consumed  # rotated away, the new file not created yet
        if current.st_ino != followed.inode:
            consumed += self._drain(followed)  # finish the rotated-away file first
            if self._open(followed, f"{followed.path} rotated"):
                consumed += self._drain(followed)
        elif current.st_size < followed.pos and self._open(followed, f"{followed.path} truncated"):
            consumed += self._drain(followed)
        return consumed

    def _drain(self, followed: _Followed) -> int:
        source = followed.source
        assert source is not None
        assert isinstance(source.buffer, FileView)
        consumed = 0
        while True:
            data = os.pread(source.buffer.fd, READ_SIZE, followed.pos)
            if not data:
                return consumed
            followed.pos += len(data)
            consumed += len(data)
            data = followed.partial + data
            cut = data.rfind(b"\n") + 1
            followed.partial = data[cut:]
            if not cut:
                continue
            complete = data[:cut]
            at = followed.pos - len(data)
            if followed.dialect is None:
                followed.dialect = sniff(complete[: 1 << 16])
            started = time.perf_counter()
            self.scanner.scan_chunk(source, followed.dialect, complete, at)
            before = followed.line
            followed.line = self.scanner.checkpoints(source, complete, at, followed.line)
            lines = followed.line - before
            coverage = self.analyzer.coverage
            coverage.lines += lines
            coverage.bytes += len(complete)
            coverage.seconds += time.perf_counter() - started


def _provisional(analyzer: Analyzer, sources: Sources) -> list[Finding]:
    ts_of = ts_resolver(sources.items)
    return analyzer.judge_open(time.time(), ts_of) + analyzer.judge_totals()


def follow_logs(
    paths: list[str],
    *,
    stale_after_s: float,
    fail_on: Severity,
    session: str | None = None,
    trace: str | None = None,
    interval_s: float = 0.25,
    stop: Callable[[], bool] = lambda: False,
) -> ExitCode:
    """Follow until Ctrl-C (or `stop()`), then print the final report."""
    sources = Sources()
    analyzer = Analyzer(stale_after_s=stale_after_s)
    analyzer.ts_at = ts_resolver(sources.items)
    follower = Follower(paths, analyzer, sources)
    interrupted = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    pause = threading.Event()  # a wait that a signal interrupts; never set

    def view() -> Group:
        report = build_report(
            analyzer, fail_on=fail_on, session=session, trace=trace,
            extra=_provisional(analyzer, sources),
        )  # fmt: skip
        errors = sum(1 for f in report.findings if f.severity >= Severity.ERROR)
        notes = [n for f in follower.files for n in f.notes[-2:]]
        return Group(
            Text(f"following {', '.join(paths)} (Ctrl-C to stop)", style="bold"),
            Text(
                f"{analyzer.coverage.lines:,} lines, {analyzer.coverage.recognised:,} lifecycle "
                f"events, {len(analyzer.open_streams)} streams open, {errors} error(s)"
            ),
            *(Text(n, style="yellow") for n in notes),
            *(
                Text(
                    f"{f.severity.label}: {f.id.value}: {f.message}",
                    style="red" if f.severity >= Severity.ERROR else "yellow",
                )
                for f in report.findings[:8]
            ),
        )

    try:
        with Live(view(), console=out, refresh_per_second=4, transient=True) as live:
            while not stop():
                follower.poll()
                live.update(view())
                pause.wait(interval_s)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = build_report(
        analyzer, fail_on=fail_on, session=session, trace=trace,
        extra=_provisional(analyzer, sources),
    )  # fmt: skip
    sources.resolve_findings(report.findings)
    render(report, out)
    if interrupted:
        out.print("[dim]stopped[/]")
    sources.close()
    return report.exit_code()
