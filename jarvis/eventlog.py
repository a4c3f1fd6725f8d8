"""The structured event log: one line per event, written off the event loop.

`emit()` formats the line on the caller's thread (cheap, no I/O) and appends
it to a sink (`jarvis._sink`: C where built); a writer thread wakes every
`flush_interval` (20 ms) and writes everything pending in one system call.
Waking the writer per line cost a thread switch and a `write(2)` per event,
which at token-by-token rates was most of the server's CPU; 20 ms is still
immediate for `tail -f logs/system.log` and `jarvis diagnose --follow`.
The file itself (rotation by size, reopen on SIGHUP) is `jarvis.logfile`'s.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal, Protocol

from ._sink import new_sink
from .exceptions import ConfigError
from .logfile import RotatingFile
from .logfmt import bound, format_json, format_logfmt, format_value
from .vocabulary import EVENTS, Event

LogFormat = Literal["logfmt", "json"]
# (level, name) per event, looked up once: Enum attribute access is slow on a hot path.
_HEADS = {event: (spec.level, event.value) for event, spec in EVENTS.items()}


class EventSink(Protocol):
    """Anything that takes events: the file log, or a recorder in tests."""

    def emit(self, event: Event, /, **fields: object) -> None: ...

    def bind(self, event: Event, /, **fixed: object) -> Callable[..., None]:
        """An emitter for `event` whose leading fields are fixed; the call passes the
        remaining fields positionally, in vocabulary order."""
        ...


def _bound_generic(sink: EventSink, event: Event, fixed: dict[str, object]) -> Callable[..., None]:
    rest = EVENTS[event].fields[len(fixed) :]

    def emit(*values: object) -> None:
        sink.emit(event, **fixed, **dict(zip(rest, values, strict=True)))

    return emit


class _TextOut:
    """A text stream with no binary buffer (a test's captured stdout), taking bytes."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode("utf-8", "backslashreplace"))

    def flush(self) -> None:
        self._stream.flush()


class EventLog:
    """Formats events and appends them to a file (or stdout) from a writer thread."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        fmt: LogFormat = "logfmt",
        strict: bool = False,
        wall_clock: Callable[[], float] = time.time,
        flush_interval: float = 0.02,
        max_bytes: int | None = None,
        backups: int = 5,
    ) -> None:
        """`max_bytes` (None or 0: never) rotates the file by size, keeping `backups`
        old ones (`system.log.1` newest … `system.log.<backups>`); the writer thread
        rotates, between batches, so a line never spans two files."""
        if fmt not in ("logfmt", "json"):
            raise ConfigError(f"unknown log format {fmt!r}: use logfmt or json")
        self.path = None if path is None or str(path) == "-" else Path(path)
        self._format = format_logfmt if fmt == "logfmt" else format_json
        self._strict = strict
        # Appends and takes run under the GIL: no lock, and no wake-up per line.
        self._sink = new_sink(wall_clock)
        self._interval = flush_interval
        self._stop = threading.Event()
        # Exactly one of the two: the file we opened (and so close), or stdout.
        self._file: RotatingFile | None = None
        self._stdout: IO[bytes] | _TextOut | None = None
        if self.path is None:
            if max_bytes:
                raise ConfigError("log rotation needs a log file, not stdout")
            self._stdout = getattr(sys.stdout, "buffer", None) or _TextOut(sys.stdout)
        else:
            self._file = RotatingFile(self.path, max_bytes=max_bytes, backups=backups)
        self._writer = threading.Thread(target=self._drain, name="jarvis-log-writer", daemon=True)
        self._writer.start()
        self._closed = False

    def emit(self, event: Event, /, **fields: object) -> None:
        """Queue one event line; never blocks and never raises on the hot path."""
        if self._strict:
            spec = EVENTS[event]
            if not spec.allows(tuple(fields)):
                raise AssertionError(f"{event}: {tuple(fields)} != vocabulary {spec.fields}")
        level, name = _HEADS[event]
        self._sink.write(self._format(self._sink.stamp(), level, name, fields))

    def bind(self, event: Event, /, **fixed: object) -> Callable[..., None]:
        """The hot path (two lines per flush): render the fixed part of the line once.

        Only integer fields may follow the fixed ones; the line is byte for byte what
        `emit` writes (a test compares them).
        """
        spec = EVENTS[event]
        if self._format is not format_logfmt or tuple(fixed) != spec.fields[: len(fixed)]:
            return _bound_generic(self, event, fixed)
        level, name = _HEADS[event]
        head = f" level={level} event={name}"
        if fixed:
            head += " " + " ".join(f"{k}={format_value(bound(k, v))}" for k, v in fixed.items())
        rest = spec.fields[len(fixed) :]
        if not rest:
            return self._sink.bind((head,))
        keys = [f" {key}=" for key in rest]
        return self._sink.bind((head + keys[0], *keys[1:], ""))

    def reopen(self) -> None:
        """Close and reopen the log file at the writer's next wake-up (logrotate moved it).

        Only sets a flag: safe from a signal handler and any thread. No-op on stdout.
        """
        if self._file is not None:
            self._file.request_reopen()

    def _drain(self) -> None:
        while not self._stop.wait(self._interval):
            self._write_pending()
        self._write_pending()

    def _write_pending(self) -> None:
        data = self._sink.take()
        try:
            if self._file is not None:
                self._file.write(data)  # even empty: a requested reopen happens now
            elif data and self._stdout is not None:
                self._stdout.write(data)
                self._stdout.flush()
        except (OSError, ValueError):
            pass  # a full disk or closed stdout must not take the server down

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued, then close the file (bounded by `timeout`)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._writer.join(timeout)
        if self._file is not None:
            self._file.close()


class RecordingLog:
    """An in-memory sink for tests: keeps `(event, fields)` and checks the vocabulary."""

    def __init__(self) -> None:
        self.records: list[tuple[Event, dict[str, object]]] = []

    def emit(self, event: Event, /, **fields: object) -> None:
        spec = EVENTS[event]
        if not spec.allows(tuple(fields)):
            raise AssertionError(f"{event}: fields {tuple(fields)} != vocabulary {spec.fields}")
        self.records.append((event, fields))

    def bind(self, event: Event, /, **fixed: object) -> Callable[..., None]:
        return _bound_generic(self, event, fixed)

    def names(self) -> list[str]:
        """Event names in the order they were emitted."""
        return [event.value for event, _ in self.records]

    def of(self, event: Event) -> list[dict[str, object]]:
        """The fields of every record of one event."""
        return [fields for name, fields in self.records if name is event]
