"""One stream's life: register, produce, and a `finally` that always cleans up.

This is the heart of the fix. The producer runs as its own task and checks
cancellation every iteration; the stream waits for *either* the producer or
its cancel signal, so a cancel takes effect even while the token source is
slow. Cleanup order is fixed: buffers (flushing what is left), the terminal
event, then the registry entry, so a successor's first byte always follows
this stream's last one. The token source's own cleanup (the `finally` of the
caller's generator, run in the producer) is part of the stream's: the entry
is released, and `done` resolved, only once it has finished.

Three methods are seams, public and documented as such: `stop_requested`,
`await_producer` and `cleanup`. `jarvis.faults` overrides them to reproduce
the original server's bugs; this module holds the fix alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._batcher import TokenBatcher
from ._encoders import StreamEnd
from ._registry import Registry
from ._stream import StreamHandle, StreamState
from ._types import Emitter
from .eventlog import EventSink
from .exceptions import UpstreamError
from .vocabulary import CancelReason, EndReason, Event

if TYPE_CHECKING:  # prometheus_client is imported when a guard is built, not by `import jarvis`
    from ._metrics import Metrics

#: Producers still running their token source's cleanup after their stream's `stream_end`:
#: held here so that the loop, which keeps tasks only weakly, cannot drop one.
_LINGERING: set[asyncio.Task[None]] = set()


@dataclass(slots=True)
class StreamParts:
    """What every stream of one guard shares: the log, the registry, the batcher.

    A seam: `StreamGuard.parts` is this object, and a variant of the registry or the
    batcher (`jarvis.faults`) replaces the field before the guard serves.
    """

    log: EventSink
    metrics: Metrics
    registry: Registry
    batcher: TokenBatcher
    cancel_wait: float
    #: Seconds of silence after which a stream writes a keepalive; 0: never.
    ping: float = 0.0


class StreamRun:
    """Runs one stream from `stream_start` to `stream_end`.

    `run(tokens)` is the whole life for a response; `open` and `close` are its
    two halves for a caller that sends tokens itself (`StreamGuard.stream`).
    """

    def __init__(
        self,
        parts: StreamParts,
        handle: StreamHandle,
        emitter: Emitter,
        *,
        model: str = "",
        prompt_chars: int = 0,
    ) -> None:
        self.parts = parts
        self.handle = handle
        self.emitter = emitter
        self.error: str | None = None
        self._model = model
        self._prompt_chars = prompt_chars
        self._producer: asyncio.Task[None] | None = None
        # When (ms into the stream) the producer was cancelled: a late cleanup's start.
        self._stopped_at_ms = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.handle!r}>"

    async def run(self, tokens: AsyncIterator[str]) -> EndReason:
        reason = EndReason.ERROR
        produced = False
        try:
            if await self.open():
                produced = True
                reason = await self._produce(tokens)
            else:
                reason = self.cancelled_reason()
        except asyncio.CancelledError:
            reason = self.abandoned()
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            reason = EndReason.ERROR
        finally:
            try:
                if not produced:
                    await _close_tokens(tokens)  # never started: close it, or it warns
            finally:
                await self.close(reason)
        return reason

    async def open(self) -> bool:
        """`stream_start`, then register; False if the stream lost its session's race."""
        h, parts = self.handle, self.parts
        start: dict[str, object] = {"trace": h.trace, "session": h.session}
        start["stream_id"] = h.stream_id
        if self._model:  # a stream that names no model says nothing of one, not `model=""`
            start["model"] = self._model
        start["prompt_chars"] = self._prompt_chars
        parts.log.emit(Event.STREAM_START, **start)
        parts.metrics.started.inc()
        parts.metrics.active_streams.inc()
        if not await parts.registry.register(h):
            return False
        await self.emitter.start()
        parts.batcher.open(h.stream_id, self.emitter.tokens, self.emitter.token, trace=h.trace)
        return True

    def abandoned(self) -> EndReason:
        """The end reason of a stream whose task was cancelled from outside the guard.

        The guard's own shutdown tells every stream to stop (`reason=shutdown`) before
        any task is cancelled, so a stream cancelled without having been told anything
        was given up by its caller: the client went away (a WebSocket handler cancelling
        its answer when the socket closes, a middleware cancelling on disconnect). That
        is a `client_disconnected` cancel, logged as one, and the stream ends
        `disconnected`; a stream already told why it stops keeps that reason.
        """
        self.parts.registry.cancel(self.handle, CancelReason.CLIENT_DISCONNECTED)
        return self.cancelled_reason()

    def cancelled_reason(self) -> EndReason:
        """The end reason of a stream that was told to stop (or lost its race)."""
        cancel = self.handle.cancel_reason
        return EndReason.SUPERSEDED if cancel is None else cancel.end_reason

    async def _produce(self, tokens: AsyncIterator[str]) -> EndReason:
        h = self.handle
        producer = asyncio.create_task(self._pump(tokens), name=f"producer:{h.stream_id}")
        self._producer = producer
        try:
            await self.await_producer(producer)
        finally:
            if not producer.done():
                self._stopped_at_ms = h.elapsed_ms()
                producer.cancel()
                # The source's `finally` runs in the producer: give it what a newer prompt
                # gives this stream, `cancel_wait`. Past it the stream ends anyway, says its
                # cleanup is not done, and `_release_once_stopped` waits on (never cancels
                # again) what is still running.
                await asyncio.wait({producer}, timeout=self.parts.cancel_wait)
        if self.stop_requested():
            return self.cancelled_reason()
        if h.fenced:
            return EndReason.SUPERSEDED
        exc = None if producer.cancelled() else producer.exception()
        await self.parts.batcher.flush_on_end(h.stream_id)
        if exc is None:
            return EndReason.COMPLETED
        self.error = str(exc) if isinstance(exc, UpstreamError) else f"{type(exc).__name__}: {exc}"
        self.parts.log.emit(
            Event.UPSTREAM_ERROR,
            trace=h.trace,
            status=getattr(exc, "status", None) or 0,
            message=self.error,
        )
        return EndReason.ERROR

    async def _pump(self, tokens: AsyncIterator[str]) -> None:
        h, add, cancelled = (
            self.handle,
            self.parts.batcher.adder(self.handle.stream_id),
            self.stop_requested,
        )
        async with contextlib.AsyncExitStack() as stack:
            if hasattr(tokens, "aclose"):
                stack.push_async_callback(tokens.aclose)
            if cancelled() or h.fenced:
                return  # told to stop before the first token: never start the source
            async for token in tokens:
                if cancelled() or h.fenced:
                    return
                h.tokens += 1
                await add(token)

    def stop_requested(self) -> bool:
        """Whether the stream was told to stop (checked before every token).

        A seam: the ignore-cancel variant never sees the signal.
        """
        return self.handle.cancel_reason is not None

    async def await_producer(self, producer: asyncio.Task[None]) -> None:
        """Wait for the producer to finish or the stream to be told to stop.

        A seam: the ignore-cancel variant waits for the producer alone.

        With a `ping` interval, the wait also breaks the stream's silence: whenever
        nothing has been written for `ping` seconds (a slow first token, a tool call),
        this task writes a keepalive, bounded like its other writes. While tokens flow it
        never fires, and it ends with the wait.
        """
        either: set[asyncio.Future[Any]] = {producer, self.handle.cancelled}
        ping = self.parts.ping
        if not ping:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            return
        while True:
            silent = self.emitter.silent_for(time.monotonic())
            if silent is not None and silent >= ping:
                await self.emitter.ping()
                continue
            wait = ping if silent is None else ping - silent
            done, _ = await asyncio.wait(either, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if done:
                return

    async def close(self, reason: EndReason) -> bool:
        """The `finally`: flush and drop buffers, the last bytes, registry pop, `stream_end`."""
        h, parts = self.handle, self.parts
        if h.state < StreamState.STOPPING:
            h.transition(StreamState.STOPPING)
        try:
            await self.cleanup(StreamEnd(reason, h.tokens, self.error))
        finally:
            # Done means the registry entry is gone and `done` resolved (ENDED), even if
            # the emitter's last write raised; a variant that skips cleanup stays STOPPING,
            # and so does a stream whose token source is still cleaning up (a
            # `stream_cleanup_finished` line follows when it has).
            cleanup_done = h.state is StreamState.ENDED
            parts.log.emit(
                Event.STREAM_END,
                trace=h.trace,
                session=h.session,
                stream_id=h.stream_id,
                duration_ms=h.elapsed_ms(),
                reason=reason.value,
                tokens=h.tokens,
                cleanup_done=cleanup_done,
            )
            parts.metrics.active_streams.dec()
            parts.metrics.ended.labels(reason.value).inc()
        return cleanup_done

    async def cleanup(self, end: StreamEnd) -> None:
        """Buffers, the emitter's end, then the registry entry (always, even if one raised),
        once the token source has stopped.

        A seam: `close` runs it in the `finally`; the skip-cleanup and slow-cleanup
        variants override it.
        """
        h, parts = self.handle, self.parts
        try:
            await parts.batcher.cleanup_request_buffers(h.stream_id)
            parts.log.emit(Event.EVENT_BUFFERS_CLEANED, trace=h.trace, request_id=h.stream_id)
            await self.emitter.finish(end)
        finally:
            self._release_once_stopped()

    def _release_once_stopped(self) -> None:
        """Release the registry entry and resolve `done`: now, or when the producer ends.

        A producer that outlived `cancel_wait` is still running the caller's code (its
        generator's `finally`): until it ends, the stream is not cleaned up, whatever
        `stream_end` had to say in the meantime. It stays live in the registry (fenced if
        a newer prompt went ahead), so a later prompt waits for it and nobody is told
        it finished.
        """
        producer = self._producer
        if producer is None or producer.done():
            self.parts.registry.release(self.handle)
            self.handle.finish()
            return
        _LINGERING.add(producer)
        producer.add_done_callback(self._finished_late)

    def _finished_late(self, producer: asyncio.Task[None]) -> None:
        _LINGERING.discard(producer)
        if not producer.cancelled():
            producer.exception()  # retrieved: the stream has ended, there is no one to tell
        h, parts = self.handle, self.parts
        parts.registry.release(h)
        h.finish()
        now_ms = h.elapsed_ms()
        parts.log.emit(
            Event.STREAM_CLEANUP_FINISHED,
            trace=h.trace,
            session=h.session,
            stream_id=h.stream_id,
            duration_ms=now_ms,
            cleanup_ms=now_ms - self._stopped_at_ms,
        )


async def _close_tokens(tokens: AsyncIterator[str]) -> None:
    aclose = getattr(tokens, "aclose", None)
    if aclose is not None:
        await aclose()
