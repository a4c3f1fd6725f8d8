"""The resume reader: `GET /v1/streams/{id}` with `Last-Event-ID`, as an ASGI response.

It sends the stream's events after the client's last one (no gap, no duplicate),
then follows the stream live until its end marker; a stream that has ended is
replayed whole and the response ends. Any number of readers may follow one stream
(a reload, a second tab); while one does, a detached stream's grace is off. Only the
stream's own session finds it: any other, and an unknown id, get the same 404.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.responses import Response

from ._encoders import SSE_MEDIA_TYPE
from ._replay import Journal
from ._types import Receive, Scope, Send
from .eventlog import EventSink
from .exceptions import BadRequest
from .vocabulary import Event

#: What a stream id may be (a wire format's prefix and hex digits): anything else is unknown.
STREAM_ID = re.compile(r"[A-Za-z0-9.:\-]{1,96}")
#: A `Last-Event-ID`: an event's place in its stream.
LAST_EVENT_ID = re.compile(r"[0-9]{1,12}")
#: The answer for a stream that is not there, or not the asking session's: one answer for
#: both, so that a stream id tells another session nothing.
STREAM_NOT_FOUND = BadRequest(
    "no such stream in this session (unknown, expired, or another session's)",
    status=404,
    code="stream_not_found",
)
#: A reader re-checks its own connection at least this often while the stream is silent.
_WAIT_S = 5.0
_HEADERS = [
    (b"content-type", SSE_MEDIA_TYPE.encode("latin-1")),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def parse_last_event_id(value: str | int | None) -> int:
    """The client's last event id; 0 (from the start) when absent; `BadRequest` if garbled."""
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and LAST_EVENT_ID.fullmatch(value):
        return int(value)
    raise BadRequest(
        "Last-Event-ID must be the id of an event of this stream (digits), or absent",
        param="Last-Event-ID",
        code="invalid_last_event_id",
    )


class Tail(Protocol):
    """A stream's events from one point on, for one reader: local (`JournalTail`) or read
    from the fleet's store."""

    trace: str
    #: Events already stored after the reader's last one, when it started.
    backlog: int
    #: Whether the stream was still running when the reader started.
    live: bool

    async def next(self, stop: asyncio.Future[Any]) -> bytes | None:
        """The next events, as bytes to send; None at the end (or once `stop` is done)."""
        ...

    async def close(self) -> None:
        """The reader is done (the end, or its client left)."""
        ...


class JournalTail:
    """A reader of a journal of this process; it counts as a follower while the stream runs."""

    def __init__(self, journal: Journal, after: int) -> None:
        self.journal = journal
        self.trace = journal.trace
        self.cursor = min(after, journal.last_id) if journal.ended else after
        self.backlog = max(0, journal.last_id - after)
        self.live = not journal.ended
        self._followers = journal.followers
        if self._followers is not None:
            self._followers.join()

    async def next(self, stop: asyncio.Future[Any]) -> bytes | None:
        journal = self.journal
        while True:
            if journal.last_id > self.cursor:
                chunk = b"".join(journal.events[self.cursor :])
                self.cursor = journal.last_id
                return chunk
            if journal.ended or stop.done():
                return None
            await asyncio.wait(
                {journal.changed(), stop}, timeout=_WAIT_S, return_when=asyncio.FIRST_COMPLETED
            )

    async def close(self) -> None:
        followers, self._followers = self._followers, None
        if followers is not None:
            followers.leave()


#: Finds the tail of a stream for a session, after an event; None: not found.
FindTail = Callable[[str, str, int], Awaitable[Tail | None]]


class ResumeResponse(Response):
    """The response of one resume: the rest of the stream, then its end."""

    def __init__(
        self,
        find: FindTail,
        session: str,
        stream_id: str,
        after: int,
        *,
        log: EventSink,
        send_timeout: float,
        not_found: Callable[[], Response],
        ttl: float,
    ) -> None:
        self._find = find
        self.session = session
        self.stream_id = stream_id
        self.after = after
        self._log = log
        self._send_timeout = send_timeout
        self._not_found = not_found
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            *_HEADERS,
            (b"x-stream-id", stream_id.encode()),
            (b"x-session-id", session.encode()),
            (b"x-resume-ttl", f"{ttl:g}".encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tail: Tail | None = await self._find(self.session, self.stream_id, self.after)
        if tail is None:
            await self._not_found()(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[None] = loop.create_future()
        listener = loop.create_task(_watch_gone(receive, gone))
        try:
            self._log.emit(
                Event.STREAM_RESUMED,
                trace=tail.trace,
                session=self.session,
                stream_id=self.stream_id,
                last_event_id=self.after,
                replayed=tail.backlog,
                live=tail.live,
            )
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            if not await self._send(send, start):
                return
            while (chunk := await tail.next(gone)) is not None:
                body = {"type": "http.response.body", "body": chunk, "more_body": True}
                if not await self._send(send, body):
                    return
            await self._send(send, {"type": "http.response.body", "body": b""})
        finally:
            listener.cancel()
            await tail.close()

    async def _send(self, send: Send, message: dict[str, object]) -> bool:
        """One write, bounded by the guard's send timeout; False if the client is gone."""
        try:
            async with asyncio.timeout(self._send_timeout):
                await send(message)
        except (TimeoutError, OSError):
            return False
        return True


async def _watch_gone(receive: Receive, gone: asyncio.Future[None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not gone.done():
                gone.set_result(None)
            return
