"""Server-Sent Events read as the spec says, from bytes, for clients that are not httpx.

The httpx clients read SSE through httpx-sse; the locust user reads raw bytes
from geventhttpclient and needs the same parse. Both are held to one set of
test vectors (tests/test_sse_vectors.py). Per the WHATWG spec: a line ends at
CR, LF or CRLF (nothing else: U+2028 is text); `data:` lines of one event are
joined with LF; `event:` and `id:` set the event's type and id; a line
starting with `:` is a comment; a blank line dispatches the event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

#: The only line ends SSE knows.
_EOL = re.compile(rb"\r\n|\r|\n")


class Event(Protocol):
    """What a dialect reads of an event: ours (`SSEEvent`) or httpx-sse's, as it comes."""

    @property
    def event(self) -> str: ...

    @property
    def data(self) -> str: ...

    @property
    def id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (`message` unless named), data and last id."""

    event: str
    data: str
    id: str = ""


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the events they complete."""

    def __init__(self) -> None:
        self._pending = b""
        self._trailing_cr = False
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in self._lines(chunk):
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """The end of the body: an unterminated last line is processed; an event not
        followed by a blank line is dropped, as the spec says."""
        if self._pending:
            self._line(self._pending.decode("utf-8", "replace"))
            self._pending = b""
        return []

    def _lines(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []  # an empty read must not forget a CR still waiting for its LF
        if self._trailing_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across two reads
        data = self._pending + chunk
        self._trailing_cr = data.endswith(b"\r")
        parts = _EOL.split(data)
        self._pending = parts.pop()
        return [part.decode("utf-8", "replace") for part in parts]

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        # The spec dispatches only events with data; a named event with none (`event:
        # done` alone) is dispatched too, as httpx-sse does, because servers end streams so.
        if not data and not event:
            return None
        return SSEEvent(event or "message", "\n".join(data), self._last_id)
