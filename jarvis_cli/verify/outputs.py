"""What a run leaves besides its verdict, as its options ask: the JSON report, the JUnit
XML and the timeline page of the server's log. The command and the pytest plugin write
them alike."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jarvis.exceptions import ConfigError

from ..console import err
from . import serverlog
from .options import Prepared
from .report import Report, write_junit
from .runner import RunResult


def log_mark(prepared: Prepared) -> serverlog.Mark | None:
    """Where the log stood before the run: the page draws what the run wrote, not what an
    earlier run (or another client) left in a --log-file."""
    log_file = prepared.spec.log_file
    return serverlog.size(log_file) if log_file is not None else None


def write(report: Report, prepared: Prepared, mark: serverlog.Mark | None) -> None:
    """JUnit, JSON (a file, or stdout for '-') and the page, each if asked for."""
    options = prepared.options
    if options.junit is not None:
        write_junit(report, Path(options.junit))
    if options.json_path is not None:
        document = json.dumps(report.to_json(), indent=2) + "\n"
        if options.json_path == "-":
            sys.stdout.write(document)
        else:
            _write(Path(options.json_path), document)
    if options.html is not None:
        _draw(report.run, Path(options.html), mark)


def _draw(result: RunResult, path: Path, mark: serverlog.Mark | None) -> None:
    """The server-side timeline of the run: what its log gained during the run (from
    `mark`, the sizes noted before it). Drawn after the report is out: the page is an
    extra, and no failure of it changes the run's verdict or exit code."""
    from ..timeline.draw import draw_logs

    log_path = result.target.log_path
    if log_path is None:
        err.print("no timeline: the server's log is unknown", highlight=False)
        return
    names = [str(file) for file in serverlog.files(log_path)]
    offsets = {str(file): at for file, at in mark.offsets.items()} if mark is not None else {}
    try:
        _, size = draw_logs(
            names, path, title=f"jarvis verify-hang: {result.target.base_url}", offsets=offsets
        )
    except Exception as exc:  # an extra: reported, never the run's verdict
        err.print(f"no timeline: {exc}", highlight=False, soft_wrap=True)
        return
    err.print(f"timeline: {path} ({size / 1e6:.2f} MB)", highlight=False, soft_wrap=True)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write --json {path}: {exc.strerror}") from exc
