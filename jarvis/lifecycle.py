"""One stream's life: register, produce, and a `finally` that always cleans up.

This is the heart of the fix. The producer runs as its own task and checks
cancellation every iteration; the stream waits for *either* the producer or
its cancel signal, so a cancel takes effect even while the token source is
slow. Cleanup order is fixed: buffers (flushing what is left), the terminal
chunk, then the registry entry, so a successor's first byte always follows
this stream's last one.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from . import faults
from .chat import ChatRequest
from .context import ServerContext
from .exceptions import UpstreamError
from .faults import Fault
from .sse import finish_reason_for
from .stream import StreamHandle, StreamState
from .types import Emitter
from .vocabulary import EndReason, Event

#: How long a cancelled producer task may take to unwind (it should take ~0).
PRODUCER_STOP_S = 1.0


class StreamRun:
    """Runs one stream from `stream_start` to `stream_end`."""

    def __init__(
        self,
        ctx: ServerContext,
        handle: StreamHandle,
        request: ChatRequest,
        emitter: Emitter,
    ) -> None:
        self.ctx = ctx
        self.handle = handle
        self.request = request
        self.emitter = emitter
        self.error: str | None = None
        self._ignore_cancel = ctx.config.has(Fault.IGNORE_CANCEL)

    def __repr__(self) -> str:
        return f"<StreamRun {self.handle!r}>"

    async def run(self) -> EndReason:
        h, ctx = self.handle, self.ctx
        ctx.log.emit(
            Event.STREAM_START,
            trace=h.trace,
            session=h.session,
            stream_id=h.stream_id,
            model=self.request.model,
            prompt_chars=len(self.request.prompt),
        )
        ctx.metrics.started.inc()
        ctx.metrics.active_streams.inc()
        reason = EndReason.ERROR
        try:
            if await ctx.registry.register(h):
                await self.emitter.start()
                ctx.batcher.open(h.stream_id, self.emitter.tokens, self.emitter.token)
                reason = await self._produce()
            else:
                reason = self._cancelled_reason()
        except asyncio.CancelledError:
            reason = EndReason.SHUTDOWN  # the server is force-closing its tasks
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            reason = EndReason.ERROR
        finally:
            await self._finish(reason)
        return reason

    def _cancelled_reason(self) -> EndReason:
        cancel = self.handle.cancel_reason
        return EndReason.SUPERSEDED if cancel is None else cancel.end_reason

    async def _produce(self) -> EndReason:
        h = self.handle
        producer = asyncio.create_task(self._pump(), name=f"producer:{h.stream_id}")
        try:
            if self._ignore_cancel:
                await asyncio.wait({producer})
            else:
                either: set[asyncio.Future[Any]] = {producer, h.cancelled}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not producer.done():
                producer.cancel()
                await asyncio.wait({producer}, timeout=PRODUCER_STOP_S)
        if not self._ignore_cancel and h.cancel_requested:
            return self._cancelled_reason()
        if h.fenced:
            return EndReason.SUPERSEDED
        exc = None if producer.cancelled() else producer.exception()
        await self.ctx.batcher.flush_on_end(h.stream_id)
        if exc is None:
            return EndReason.COMPLETED
        self.error = str(exc) if isinstance(exc, UpstreamError) else f"{type(exc).__name__}: {exc}"
        self.ctx.log.emit(
            Event.UPSTREAM_ERROR,
            trace=h.trace,
            status=getattr(exc, "status", None) or 0,
            message=self.error,
        )
        return EndReason.ERROR

    async def _pump(self) -> None:
        h, add = self.handle, self.ctx.batcher.adder(self.handle.stream_id)
        check_cancel = not self._ignore_cancel
        async with contextlib.aclosing(self.ctx.source.stream(self.request)) as tokens:
            async for token in tokens:
                if (check_cancel and h.cancel_reason is not None) or h.fenced:
                    return
                h.tokens += 1
                await add(token)

    async def _finish(self, reason: EndReason) -> None:
        """The `finally`: flush and drop buffers, terminal chunk, registry pop, `stream_end`."""
        h, ctx = self.handle, self.ctx
        if h.state < StreamState.STOPPING:
            h.transition(StreamState.STOPPING)
        max_tokens = self.request.max_tokens
        finish_reason = finish_reason_for(
            reason, hit_max_tokens=max_tokens is not None and h.tokens >= max_tokens
        )
        usage = (self.request.prompt_tokens, h.tokens)
        cleanup_done = False
        try:
            if ctx.config.has(Fault.SLOW_CLEANUP):
                await asyncio.sleep(faults.slow_cleanup_delay(ctx.config.cancel_wait))
            if ctx.config.has(Fault.SKIP_CLEANUP):
                await self.emitter.finish(reason, finish_reason, usage, self.error)
                return
            try:
                await ctx.batcher.cleanup_request_buffers(h.stream_id)
                ctx.log.emit(Event.EVENT_BUFFERS_CLEANED, trace=h.trace, request_id=h.stream_id)
                await self.emitter.finish(reason, finish_reason, usage, self.error)
            finally:
                ctx.registry.release(h)
                h.finish()
                cleanup_done = True
        finally:
            ctx.log.emit(
                Event.STREAM_END,
                trace=h.trace,
                session=h.session,
                stream_id=h.stream_id,
                duration_ms=h.elapsed_ms(),
                reason=reason.value,
                tokens=h.tokens,
                cleanup_done=cleanup_done,
            )
            ctx.metrics.active_streams.dec()
            ctx.metrics.ended.labels(reason.value).inc()
