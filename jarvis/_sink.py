"""Where log lines wait for the writer thread: one buffer, appended from the loop.

`new_sink()` returns the C sink (`jarvis/_linesink.c`) when it was built and
the wall clock is the real one, else `LineSink`, the same thing in Python.
Both write the same bytes (tests/test_linesink.py holds them to it); the C
one costs about a tenth of the CPU per line, which matters token by token
(`--flush-ms 0`), where the log vocabulary has two lines per token.

A bound line (`bind`) is an event whose leading fields are fixed: its text is
`ts=<stamp>` + segments[0] + value0 + segments[1] + ... + segments[-1], the
values being integers.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

#: Set (to anything but 0) to run the server's log on the Python sink even where C is built.
PURE_ENV = "JARVIS_SERVER_PURE"


class Sink(Protocol):
    """What the event log appends to and its writer thread drains."""

    def stamp(self) -> str: ...

    def write(self, line: str, /) -> None: ...

    def bind(self, segments: tuple[str, ...], /) -> Callable[..., None]: ...

    def take(self) -> bytes: ...

    def __len__(self) -> int:
        """Non-zero while something waits to be taken."""
        ...


class Timestamps:
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
        return "%s.%06dZ" % (self._prefix, (t - second) * 1_000_000)  # noqa: UP031 - faster


class LineSink:
    """The Python sink: lines in a deque (append and popleft are atomic, no lock)."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._lines: deque[str] = deque()
        self._stamps = Timestamps(wall_clock)

    def stamp(self) -> str:
        return self._stamps.now()

    def write(self, line: str, /) -> None:
        self._lines.append(line)

    def bind(self, segments: tuple[str, ...], /) -> Callable[..., None]:
        if not segments:
            raise TypeError("bind() takes a non-empty tuple of str segments")
        template = "%d".join(segment.replace("%", "%%") for segment in segments)
        append, now = self._lines.append, self._stamps.now

        def emit(*values: int) -> None:
            append("ts=" + now() + template % values)

        return emit

    def take(self) -> bytes:
        lines, batch = self._lines, []
        while lines:
            batch.append(lines.popleft())
        if not batch:
            return b""
        # backslashreplace: one unencodable value must never cost a batch of lines.
        return ("\n".join(batch) + "\n").encode("utf-8", "backslashreplace")

    def __len__(self) -> int:
        return len(self._lines)


def new_sink(wall_clock: Callable[[], float] = time.time) -> Sink:
    """The C sink where built (and the clock is the real one), else the Python one."""
    if wall_clock is time.time and os.environ.get(PURE_ENV, "") in ("", "0"):
        try:
            from ._linesink import Sink as CSink
        except ImportError:
            pass
        else:
            sink: Sink = CSink()
            return sink
    return LineSink(wall_clock)
