"""The SSE writer of one stream: bounded sends, the fence, and nothing after the end.

`SSEEmitter` writes an encoder's bytes to an ASGI `send`. Token writes from
the producer or a debounce task are bounded by the shared `SendWatch`; the
request task's own writes (the cleanup flush, the terminal event) keep
`asyncio.timeout`, so the watch never cancels the task running a `finally`.
Once the stream is fenced, or its client is gone, nothing more is written.
While the model is silent the request task may write a keepalive, an SSE comment
(`ping`), that every SSE reader skips.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ._encoders import Encoder, StreamEnd
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
    ) -> None:
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
        #: When the last write began (`time.monotonic`): the silence a keepalive breaks.
        self._last_sent = 0.0
        # A comment is SSE: an encoder of another wire format gets no keepalive.
        self._sse = encoder.media_type.startswith("text/event-stream")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self.started else "new"
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
        if not await self._bounded(start):
            return
        self._watch.add(self)
        head = self._encoder.head()
        if head:
            await self._write(head)

    async def token(self, text: str) -> bool:
        """One token from the producer task, token by token: the hot path.

        The producer is never the request task, so the send watch bounds it;
        the sender stays recorded between tokens (it is the same task).
        """
        if self.closed or self._handle.fenced:
            return False
        if self._sender is None:
            self._sender = asyncio.current_task()
        self._sending_since = self._last_sent = time.monotonic()
        try:
            await self._send(
                {
                    "type": "http.response.body",
                    "body": self._encoder.content(text),
                    "more_body": True,
                }
            )
        except OSError:
            self.closed = True
            return False
        finally:
            self._sending_since = None
        return True

    async def tokens(self, text: str, count: int) -> bool:
        if self.closed or self._handle.fenced:
            return False
        body = self._encoder.content(text)
        task = asyncio.current_task()
        if task is self._owner:
            return await self._write(body)
        # Producer or debounce task: bounded by the send watch, which cancels it if stuck.
        self._sender = task
        self._sending_since = self._last_sent = time.monotonic()
        try:
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
        except OSError:
            self.closed = True
            return False
        finally:
            self._sending_since = None
            self._sender = None
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

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last write began, or None when no keepalive may go now: not
        started, closed, fenced, a write under way, or not an event stream."""
        if not self.started or self.closed or self._handle.fenced or not self._sse:
            return None
        if self._sending_since is not None:
            return None
        return now - self._last_sent

    async def ping(self) -> bool:
        """A keepalive from the request task, bounded like its other writes."""
        if self.silent_for(time.monotonic()) is None:
            return False
        return await self._write(PING)

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
        if await self._write(self._encoder.end(end), more=False):
            self.closed = True

    async def _write(self, body: bytes, *, more: bool = True) -> bool:
        return await self._bounded({"type": "http.response.body", "body": body, "more_body": more})

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
            self.closed = True
            return False
        return True
