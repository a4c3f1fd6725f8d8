"""The SSE writer of one stream: bounded sends, the fence, and nothing after the end.

`SSEEmitter` writes an encoder's bytes to an ASGI `send`. Token writes from
the producer or a debounce task are bounded by the shared `SendWatch`; the
request task's own writes (the cleanup flush, the terminal event) keep
`asyncio.timeout`, so the watch never cancels the task running a `finally`.
Once the stream is fenced, or its client is gone, nothing more is written.

Every event gets `id: N`, its place in the stream (`jarvis._replay`). With resume
on, the stream has a journal: each write's events go to it once settled, and a
client that is gone *detaches* the stream instead of closing it: nothing more is
sent to that connection, but the events still go to the journal for a resume.

While the model is silent the request task may write a keepalive, an SSE comment
(`ping`), that every SSE reader skips. It has no id and is never journaled: it is not an event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ._encoders import Encoder, StreamEnd
from ._replay import Journal, number_events
from ._sendwatch import SendWatch
from ._stream import StreamHandle
from ._types import Send

_SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
#: The keepalive: an SSE comment line, which no reader dispatches as an event.
PING = b": ping\n\n"


class SSEEmitter:
    """Writes one stream's response; every write is bounded by `send_timeout`."""

    def __init__(
        self,
        send: Send,
        handle: StreamHandle,
        encoder: Encoder,
        *,
        send_timeout: float,
        on_send_timeout: Callable[[], object],
        headers: list[tuple[bytes, bytes]],
        watch: SendWatch,
        journal: Journal | None = None,
        on_detach: Callable[[], object] | None = None,
    ) -> None:
        """With a `journal` (resume on), a client that is gone detaches the stream
        (`on_detach`, once) instead of closing it."""
        self._send = send
        self._handle = handle
        self._encoder = encoder
        self._send_timeout = send_timeout
        self._on_send_timeout = on_send_timeout
        self._headers = headers
        self.started = False
        self.closed = False
        self._owner: asyncio.Task[object] | None = None
        self._watch = watch
        self._sending_since: float | None = None
        self._sender: asyncio.Task[object] | None = None
        self._journal = journal
        self._on_detach = on_detach
        #: The id of the stream's next event.
        self.next_id = 1
        #: Numbered, not yet settled: the events of the write under way.
        self._unsettled: list[bytes] = []
        #: The client is gone and the stream runs on for its journal (resume on).
        self.detached = False
        #: When the last write began (`time.monotonic`): the silence a keepalive breaks.
        self._last_sent = 0.0
        # A comment is SSE: an encoder of another wire format gets no keepalive.
        self._sse = encoder.media_type.startswith("text/event-stream")

    def __repr__(self) -> str:
        state = (
            "closed"
            if self.closed
            else "detached"
            if self.detached
            else "open"
            if self.started
            else "new"
        )
        return f"<SSEEmitter {self._handle.stream_id} {state}>"

    async def start(self) -> None:
        self.started = True
        self._owner = asyncio.current_task()
        content_type = (b"content-type", self._encoder.media_type.encode("latin-1"))
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [content_type, *_SSE_HEADERS, *self._headers],
        }
        # A client gone before the start (resume on) still gets its head journaled.
        if not self.detached and not await self._bounded(start) and not self.detached:
            return
        self._watch.add(self)
        head = self._encoder.head()
        if head:
            await self._write(self._frame(head))

    async def token(self, text: str) -> bool:
        """One token from the producer task, token by token: the hot path.

        The producer is never the request task, so the send watch bounds it;
        the sender stays recorded between tokens (it is the same task).
        """
        if self.closed or self._handle.fenced:
            return False
        body = self._frame(self._encoder.content(text))
        if self.detached:
            self._settle()
            return False
        if self._sender is None:
            self._sender = asyncio.current_task()
        self._sending_since = self._last_sent = time.monotonic()
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            self._gone()
            return False
        except asyncio.CancelledError:
            self._unframe()
            raise
        finally:
            self._sending_since = None
        self._settle()
        return True

    async def tokens(self, text: str, count: int) -> bool:
        if self.closed or self._handle.fenced:
            return False
        body = self._frame(self._encoder.content(text))
        if self.detached:
            self._settle()
            return False
        task = asyncio.current_task()
        if task is self._owner:
            return await self._write(body)
        # Producer or debounce task: bounded by the send watch, which cancels it if stuck.
        self._sender = task
        self._sending_since = self._last_sent = time.monotonic()
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            self._gone()
            return False
        except asyncio.CancelledError:
            self._unframe()
            raise
        finally:
            self._sending_since = None
            self._sender = None
        self._settle()
        return True

    def check_send(self, now: float) -> None:
        """Called by the `SendWatch`: end a token write stuck past the send timeout."""
        since = self._sending_since
        if self.closed or since is None or now - since < self._send_timeout:
            return
        self.closed = True
        self._on_send_timeout()
        if self._sender is not None:
            self._sender.cancel()

    def detach(self) -> None:
        """The client went away (resume on): send nothing more to it, keep journaling."""
        if self.detached or self.closed:
            return
        self.detached = True
        if self._on_detach is not None:
            self._on_detach()

    def _gone(self) -> None:
        """A write found the client gone: detach (resume on) or close."""
        if self._journal is None:
            self.closed = True
            return
        self._settle()
        self.detach()

    def _frame(self, body: bytes) -> bytes:
        """`body` with its events numbered; with a journal, held until settled."""
        first = self.next_id
        framed, events = number_events(body, first)
        self.next_id = first + len(events)
        self._unsettled = events
        return framed

    def _settle(self) -> None:
        """The events of the last write reached the wire, or the wire is gone: journal them."""
        events, self._unsettled = self._unsettled, []
        if events and self._journal is not None:
            self._journal.append(events)

    def _unframe(self) -> None:
        """A write cut short sent nothing: its ids go back, for the batch sent again."""
        self.next_id -= len(self._unsettled)
        self._unsettled = []

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last write began, or None when no keepalive may go now: not
        started, closed, fenced, a write under way, or not an event stream."""
        if not self.started or self.closed or self.detached or self._handle.fenced:
            return None
        if not self._sse:
            return None
        if self._sending_since is not None:
            return None
        return now - self._last_sent

    async def ping(self) -> bool:
        """A keepalive from the request task, bounded like its other writes."""
        if self.silent_for(time.monotonic()) is None:
            return False
        # Straight to the wire, not through `_write`: a comment takes no id and no place
        # in the journal.
        return await self._bounded({"type": "http.response.body", "body": PING, "more_body": True})

    def stop(self) -> None:
        """The stream is over: leave the send watch, drop task references."""
        self._watch.discard(self)
        self._owner = self._sender = None

    async def finish(self, end: StreamEnd) -> None:
        """The encoder's last bytes and the end of the body; nothing once fenced or broken."""
        if self.closed:
            return
        if not self.started:
            await self.start()  # may fail (and close): then nothing more is sent
        if self.closed or self._handle.fenced:
            self.closed = True
            return  # fenced: not one more byte, the connection is dropped without a terminator
        if await self._write(self._frame(self._encoder.end(end)), more=False):
            self.closed = True

    async def _write(self, body: bytes, *, more: bool = True) -> bool:
        """A framed write from the request task; its events settle whatever the wire did."""
        if self.detached:
            self._settle()
            return False
        try:
            sent = await self._bounded(
                {"type": "http.response.body", "body": body, "more_body": more}
            )
        except asyncio.CancelledError:
            self._unframe()
            raise
        self._settle()
        return sent

    async def _bounded(self, message: dict[str, object]) -> bool:
        """One send from the request task, bounded by `send_timeout`; False if it failed."""
        self._last_sent = time.monotonic()
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._send(message)
        except TimeoutError:
            self.closed = True
            self._on_send_timeout()
            return False
        except OSError:
            self._gone()
            return False
        return True
