"""The target server's own log, read during a run: new lines since a mark, and evidence.

These are plain synchronous reads of a local file; callers on the event loop
run them with `asyncio.to_thread`. The full lifecycle reconstruction lives in
`cli/logs` (the `leaks` scenario uses it); this module only slices lines.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from jarvis.logfmt import parse_logfmt
from jarvis.vocabulary import Event

#: Evidence lines are cut to this many characters (a loop_blocked stack can be long).
MAX_LINE = 600
_EVENTS = frozenset(e.value for e in Event)


def size(path: Path) -> int:
    """Bytes in the log now (0 if it does not exist yet): a mark to read from later."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def lines_since(path: Path, offset: int) -> list[str]:
    """Every complete line written after byte `offset`."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]
    return complete.decode("utf-8", "replace").splitlines()


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line, parsed as logfmt or JSON; `fields` is empty when it is not a log event."""

    text: str
    fields: dict[str, str]

    @property
    def event(self) -> str | None:
        return self.fields.get("event")

    @property
    def parseable(self) -> bool:
        """Starts a line of its own (ts, level, event first) and names a known event."""
        return {"ts", "level", "event"} <= self.fields.keys() and self.event in _EVENTS


def parse(text: str) -> LogLine:
    """A jarvis log line in either format; anything else yields no fields."""
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return LogLine(text, {})
        if not isinstance(record, dict):
            return LogLine(text, {})
        return LogLine(text, {k: "" if v is None else str(v) for k, v in record.items()})
    if not text.startswith("ts="):
        return LogLine(text, {})
    return LogLine(text, parse_logfmt(text))


def event_lines(path: Path, event: Event, offset: int = 0) -> list[str]:
    """The lines of one event written after byte `offset`."""
    return [
        text
        for text in lines_since(path, offset)
        if event.value in text and parse(text).event == event.value
    ]


def clip(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + "…"
