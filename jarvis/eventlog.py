"""The structured event log: one line per event, written off the event loop.

`emit()` formats the line on the caller's thread (cheap, no I/O) and hands it
to a writer thread through a queue, so the event loop never waits on a disk.
Lines are flushed as soon as the writer has drained the queue, so
`tail -f logs/system.log` and `jarvis diagnose --follow` see them at once.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal, Protocol

from .exceptions import ConfigError
from .logfmt import format_json, format_logfmt
from .vocabulary import EVENTS, Event

LogFormat = Literal["logfmt", "json"]
_STOP = object()


class EventSink(Protocol):
    """Anything that takes events: the file log, or a recorder in tests."""

    def emit(self, event: Event, /, **fields: object) -> None: ...


class _Timestamps:
    """ISO-8601 UTC timestamps with microseconds; the seconds part is cached."""

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._wall_clock = wall_clock
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        t = self._wall_clock()
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1_000_000):06d}Z"


class EventLog:
    """Formats events and appends them to a file (or stdout) from a writer thread."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        fmt: LogFormat = "logfmt",
        strict: bool = False,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if fmt not in ("logfmt", "json"):
            raise ConfigError(f"unknown log format {fmt!r}: use logfmt or json")
        self.path = None if path is None or str(path) == "-" else Path(path)
        self._format = format_logfmt if fmt == "logfmt" else format_json
        self._strict = strict
        self._stamps = _Timestamps(wall_clock)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._file: IO[str]
        if self.path is None:
            self._file = sys.stdout
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # backslashreplace: one unencodable value must never cost a batch of lines.
                self._file = self.path.open(
                    "a", encoding="utf-8", errors="backslashreplace", newline="\n"
                )
            except OSError as exc:
                raise ConfigError(f"cannot open log file {self.path}: {exc.strerror}") from exc
        self._writer = threading.Thread(target=self._drain, name="jarvis-log-writer", daemon=True)
        self._writer.start()
        self._closed = False

    def emit(self, event: Event, /, **fields: object) -> None:
        """Queue one event line; never blocks and never raises on the hot path."""
        spec = EVENTS[event]
        if self._strict and tuple(fields) != spec.fields:
            raise AssertionError(f"{event}: fields {tuple(fields)} != vocabulary {spec.fields}")
        self._queue.put(self._format(self._stamps.now(), spec.level, event.value, fields))

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[str] = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                else:
                    batch.append(item)  # type: ignore[arg-type]
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._file.write("\n".join(batch) + "\n")
                    self._file.flush()
                except (OSError, ValueError):
                    pass  # a full disk or closed stdout must not take the server down
            if stop:
                return

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued, then close the file (bounded by `timeout`)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout)
        if self.path is not None:
            self._file.close()


class RecordingLog:
    """An in-memory sink for tests: keeps `(event, fields)` and checks the vocabulary."""

    def __init__(self) -> None:
        self.records: list[tuple[Event, dict[str, object]]] = []

    def emit(self, event: Event, /, **fields: object) -> None:
        spec = EVENTS[event]
        if tuple(fields) != spec.fields:
            raise AssertionError(f"{event}: fields {tuple(fields)} != vocabulary {spec.fields}")
        self.records.append((event, fields))

    def names(self) -> list[str]:
        """Event names in the order they were emitted."""
        return [event.value for event, _ in self.records]

    def of(self, event: Event) -> list[dict[str, object]]:
        """The fields of every record of one event."""
        return [fields for name, fields in self.records if name is event]
