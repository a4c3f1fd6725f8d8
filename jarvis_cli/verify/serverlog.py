"""The target server's own log, read during a run: new lines since a mark, and evidence.

These are plain synchronous reads of a local file; callers on the event loop
run them with `asyncio.to_thread`. This module reads no line itself: `parse` is
`jarvis diagnose`'s line reader (`jarvis_cli/logs/dialects.py`), so a server that
logs with stdlib `logging`, loguru, structlog or a JSON formatter is read as well as
jarvis, and both tools agree on every line (tests/test_log_formats.py). The full
lifecycle reconstruction lives in `jarvis_cli/logs` (the `leaks` scenario uses it);
this module only slices lines, links a session's streams and quotes evidence.

A log path also names the files of a fleet: `jarvis serve --workers N --log-file
system.log` writes `system.w1.log` ... `system.wN.log` and no `system.log`. Every
reader here reads all of them (`files`), their lines merged by time, and a mark
(`size`) says where each file stood.
"""

from __future__ import annotations

import heapq
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from jarvis.vocabulary import Event

from ..logs.dialects import LogLine, parse_line
from ..logs.dialects import read_line as parse

if TYPE_CHECKING:
    from ..logs.analysis import Analyzer

__all__ = [
    "LINK_FIELDS",
    "MAX_LINE",
    "LogLine",
    "Mark",
    "clip",
    "event_lines",
    "files",
    "lines_since",
    "loop_blocked_stacks",
    "parse",
    "session_ended",
    "session_starts",
    "size",
    "worker_files",
]

#: Evidence lines are cut to this many characters (a loop_blocked stack can be long).
MAX_LINE = 600
#: The fields a stream_end may name its stream by (a stream_start's trace, ids).
LINK_FIELDS = ("trace", "stream_id", "request_id")


def worker_files(path: Path) -> list[Path]:
    """The files a fleet's workers write for the log `path` (`system.w2.log` for
    `system.log`: jarvis.server.fleet.worker_log_path), in worker order."""
    pattern = re.compile(rf"{re.escape(path.stem)}\.w([0-9]+){re.escape(path.suffix)}")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    found = [(int(m[1]), name) for name in names if (m := pattern.fullmatch(name))]
    return [path.parent / name for _, name in sorted(found)]


def files(path: Path) -> list[Path]:
    """The files of the log `path`: itself, and every worker's file when a fleet wrote
    it (then `path` itself counts only if it exists: a fleet's parent writes none)."""
    workers = worker_files(path)
    if not workers:
        return [path]
    return [path, *workers] if path.exists() else workers


class Mark(int):
    """Where a log stood (`size`): as an int, its bytes, so it reads as before; per file
    in `offsets`, so lines written since are read from each file of a fleet's log, and
    from the start of a worker's file that appeared after the mark."""

    offsets: dict[Path, int]

    def __new__(cls, offsets: dict[Path, int]) -> Mark:
        mark = super().__new__(cls, sum(offsets.values()))
        mark.offsets = offsets
        return mark

    def __repr__(self) -> str:
        where = ", ".join(f"{path.name}:{offset}" for path, offset in self.offsets.items())
        return f"<Mark {int(self)} {where}>"


def size(path: Path) -> Mark:
    """Bytes in the log now (0 if it does not exist yet): a mark to read from later."""
    offsets: dict[Path, int] = {}
    for file in files(path):
        try:
            offsets[file] = os.stat(file).st_size
        except FileNotFoundError:
            offsets[file] = 0
    return Mark(offsets)


def lines_since(path: Path, offset: int) -> list[str]:
    """Every complete line that starts at or after the mark `offset` (a `Mark` from `size`,
    or a byte offset in `path` itself), in every file of the log. Several files (a
    fleet's) are merged by each line's time; a line without one stays after the line
    before it in its file."""
    parts = [(file, _offset_in(file, path, offset)) for file in files(path)]
    if len(parts) == 1:
        return _file_lines_since(*parts[0])
    return _merged([_file_lines_since(file, start) for file, start in parts])


def _offset_in(file: Path, path: Path, offset: int) -> int:
    if isinstance(offset, Mark):
        return offset.offsets.get(file, 0)
    return offset if file == path else 0


def _merged(per_file: list[list[str]]) -> list[str]:
    """Each file's lines are in time order already: merge them, stable per file."""
    if sum(1 for lines in per_file if lines) < 2:
        return [text for lines in per_file for text in lines]

    def keyed(number: int, lines: list[str]) -> list[tuple[float, int, int, str]]:
        last = -math.inf
        out: list[tuple[float, int, int, str]] = []
        for index, text in enumerate(lines):
            record = parse_line(text) if text else None
            if record is not None and record.ts is not None:
                last = record.ts
            out.append((last, number, index, text))
        return out

    streams = [keyed(number, lines) for number, lines in enumerate(per_file)]
    return [text for *_, text in heapq.merge(*streams)]


def _file_lines_since(path: Path, offset: int) -> list[str]:
    """Every complete line of one file that starts at or after byte `offset`.

    A mark taken while the server was writing can fall inside a line: that line belongs
    before the mark, and its tail is no line of its own (it would read as a split one)."""
    start = max(offset - 1, 0)
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return []
    if offset > 0 and not data.startswith(b"\n"):
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    elif offset > 0:
        data = data[1:]
    end = data.rfind(b"\n")
    if end < 0:
        return []
    # Split at LF only: str.splitlines() would also cut a line at U+2028, U+0085 or a
    # form feed inside a logged value, and judge one line as two.
    text = data[:end].decode("utf-8", "replace")
    return [line.removesuffix("\r") for line in text.split("\n")]


def event_lines(path: Path, event: Event, offset: int = 0) -> list[str]:
    """The lines of one event written since the mark `offset` (see `lines_since`)."""
    return [
        text
        for text in lines_since(path, offset)
        if event.value in text and parse(text).event == event.value
    ]


def session_starts(path: Path, mark: int, session: str) -> list[dict[str, str]]:
    """The fields of `session`'s stream_start lines written since `mark`, in log order
    (by time across a fleet's files)."""
    starts: list[dict[str, str]] = []
    for text in lines_since(path, mark):
        if Event.STREAM_START in text:
            line = parse(text)
            if line.event == Event.STREAM_START and line.fields.get("session") == session:
                starts.append(line.fields)
    return starts


def session_ended(path: Path, mark: int, session: str) -> bool:
    """Whether a stream of `session` started since `mark` has logged its stream_end.

    A stream_end belongs to it by the ids its stream_start carried (trace, stream_id,
    request_id: many servers log the session only at the start), or by its own session
    field when there are no ids on one side to link by. Nothing only jarvis writes
    (cleanup_done) is needed.
    """
    ids: set[str] = set()
    started = False
    for text in lines_since(path, mark):
        if "stream_" not in text:
            continue
        line = parse(text)
        fields = line.fields
        if line.event == Event.STREAM_START and fields.get("session") == session:
            started = True
            ids.update(fields[k] for k in LINK_FIELDS if fields.get(k))
        elif line.event == Event.STREAM_END and started:
            named = [fields[k] for k in LINK_FIELDS if fields.get(k)]
            if any(value in ids for value in named):
                return True
            if fields.get("session") == session and not (named and ids):
                return True  # nothing to link by but the session itself
    return False


#: loop_blocked lines quoted with their stacks, at most.
MAX_STACKS = 5


def loop_blocked_stacks(path: Path, since: float | None = None) -> list[str]:
    """Where the server's loop was stuck, from its own log: the watchdog's loop_blocked
    lines written since the wall-clock time `since` (every file of a fleet's log), each
    with its stack one frame a line, innermost first. For a server that is not this
    run's process, whose stack no signal can ask for. Read with diagnose's analysis
    (the same reader, the window found by bisection), so a long log costs little."""
    from ..logs.rules import blocked_frame
    from ..logs.run import Window, analyze
    from ..logs.streams import Handler

    found: list[tuple[int, dict[str, str]]] = []

    def attach(analyzer: Analyzer) -> None:
        handlers: dict[str, Handler] = analyzer.handlers
        theirs = handlers.get(Event.LOOP_BLOCKED.value)

        def keep(fields: dict[str, str], ref: int, ts: float | None) -> None:
            if theirs is not None:
                theirs(fields, ref, ts)
            found.append((ref, fields))

        handlers[Event.LOOP_BLOCKED.value] = keep

    paths = [str(file) for file in files(path) if file.exists()]
    if not paths:
        return [f"stacks: not captured (no server log at {path})"]
    _, sources = analyze(paths, window=Window(since=since), attach=attach)
    try:
        quoted = [(sources.resolve(ref), fields) for ref, fields in found[:MAX_STACKS]]
    finally:
        sources.close()
    if not quoted:
        return [
            "stacks: not captured (the server is not this run's own process, and its log "
            "has no loop_blocked line since the run began: is its watchdog running?)"
        ]
    lines = [f"stacks: from the server's log, {len(found)} loop_blocked line(s) of its watchdog:"]
    for evidence, fields in quoted:
        frames = (fields.get("stack") or "").split(" <- ")
        lines.append(
            f"  {Path(evidence.file).name}:{evidence.line}: the event loop did not answer for "
            f"{fields.get('lag_ms', '?')} ms; stuck in {blocked_frame(fields)}"
        )
        lines += [f"    {'<- ' if n else ''}{frame}" for n, frame in enumerate(frames) if frame]
    return lines


def clip(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + "…"
