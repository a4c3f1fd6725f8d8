"""Token batching: a non-blocking, per-request debounce (docs/background.md).

A stream's first token is sent at once (the debounce must not delay the
first token a user sees); after it, the first token of a batch schedules a
flush task that sleeps `flush_ms` with `await` (never `time.sleep`), so the
loop keeps serving. A buffer past
`flush_bytes` flushes at once. One flush becomes one SSE chunk. Cleanup
cancels a pending flush task, flushes what is left and drops the buffer.
No lock is held across the loop: a per-request `asyncio.Lock` only keeps the
order of chunks when a timer flush and an immediate flush meet.

A flush is one log line, `flush trace=… tokens=…`, written when its write returns:
most of a log is flushes, and three lines each (scheduled, start, done) were most
of its bytes. What started it (the debounce timer, a full buffer, the end, the
cleanup, token by token) is the `trigger` label of `jarvis_flushes_total`, not a
field: at ~8 tokens a flush each byte of the line costs an eighth of a byte a token.
A write that does not return is not lost to the log: while it runs, the buffer says
so (`in_flight`), and the loop watchdog's thread writes `flush_slow` for one that
takes too long, even while the loop is blocked inside it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .eventlog import EventSink
from .vocabulary import Event, FlushTrigger

if TYPE_CHECKING:  # prometheus_client is imported when a guard is built, not by `import jarvis`
    from ._metrics import Metrics

#: Writes one chunk (text, token count); returns False when nothing reached the wire.
Emit = Callable[[str, int], Awaitable[bool]]
#: Writes one token from the producer task (token by token); False if nothing was sent.
EmitToken = Callable[[str], Awaitable[bool]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InFlight:
    """A flush whose write has not returned: its stream's trace, its bytes, and since
    when (on the batcher's clock)."""

    trace: str
    size: int
    since: float


@dataclass(slots=True)
class _Buffer:
    emit: Emit
    emit_token: EmitToken
    #: How the request's lines name it: its trace.
    writing_name: str
    #: `flush trace=<trace> tokens=`, bound: called with the tokens sent.
    log_flush: Callable[..., None]
    parts: list[str] = field(default_factory=list)
    size: int = 0
    flush_task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The stream's first token has gone out (at once, before any debounce).
    started: bool = False
    #: The write under way, if any, as (size, since): read by the watchdog's thread,
    #: one attribute set and cleared whole, so it sees a flush in flight or none. (A
    #: tuple: this is set twice per flush, and a flush per token at `flush_ms=0`.)
    writing: tuple[int, float] | None = None

    def take(self) -> tuple[list[str], int]:
        parts, size = self.parts, self.size
        self.parts = []
        self.size = 0
        return parts, size

    def put_back(self, parts: list[str], size: int) -> None:
        """Return an unsent batch to the front, so cleanup flushes it in order."""
        self.parts[:0] = parts
        self.size += size


def _one_token(emit: Emit) -> EmitToken:
    async def emit_token(text: str) -> bool:
        return await emit(text, 1)

    return emit_token


class TokenBatcher:
    """Per-request token buffers with a debounced, cancellable flush.

    `sleep` is injected so tests decide when a debounce window ends.
    """

    def __init__(
        self,
        log: EventSink,
        *,
        flush_ms: float = 75.0,
        flush_bytes: int = 1024,
        metrics: Metrics | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock` stamps a write's start (`in_flight`): the watchdog's clock."""
        self._log = log
        self._clock = clock
        self._delay = flush_ms / 1000
        self._delay_ms = flush_ms
        self._flush_bytes = flush_bytes
        self._metrics = metrics
        self._sleep = sleep
        self._buffers: dict[str, _Buffer] = {}
        self._flush_counts: Counter[str] = metrics.flushes if metrics is not None else Counter()

    def __repr__(self) -> str:
        return f"<TokenBatcher flush_ms={self._delay_ms:g} buffers={len(self._buffers)}>"

    @property
    def flush_ms(self) -> float:
        """The debounce window (ms); 0: token by token."""
        return self._delay_ms

    @property
    def flush_bytes(self) -> int:
        """A buffer this large flushes at once."""
        return self._flush_bytes

    @property
    def flush_counts(self) -> Counter[str]:
        """Flushes so far, by what started them (`FlushTrigger`): `jarvis_flushes_total`."""
        return self._flush_counts

    def open(
        self,
        request_id: str,
        emit: Emit,
        emit_token: EmitToken | None = None,
        *,
        trace: str | None = None,
    ) -> None:
        """Start buffering for one request; `emit` writes a flushed batch, `emit_token`
        (default: `emit`) one token from the producer, token by token. `trace` is how
        the request's `flush` lines name it (default: the request id).

        A seam: every byte of the request reaches its stream through these two
        writers, so a variant that wraps them (the blocking-flush fault) changes how
        each batch is written without touching the batching.
        """
        name = trace or request_id
        self._buffers[request_id] = _Buffer(
            emit,
            emit_token or _one_token(emit),
            name,
            self._log.bind(Event.FLUSH, trace=name),
        )

    def in_flight(self) -> list[InFlight]:
        """Every flush whose write has not returned. Safe from another thread (the
        watchdog's): a copy of the buffers, and one attribute read of each."""
        return [
            InFlight(buffer.writing_name, *writing)
            for buffer in list(self._buffers.values())
            if (writing := buffer.writing) is not None
        ]

    def has_pending_flush(self, request_id: str) -> bool:
        buffer = self._buffers.get(request_id)
        return buffer is not None and buffer.flush_task is not None

    def buffered(self, request_id: str) -> str:
        buffer = self._buffers.get(request_id)
        return "" if buffer is None else "".join(buffer.parts)

    def adder(self, request_id: str) -> Callable[[str], Awaitable[None]]:
        """The producer's per-token call for an open request.

        Token by token, it writes the token straight away (`_write_one`): at one
        chunk per token, every call layer skipped is CPU saved per token.
        """
        if self._delay <= 0:
            return functools.partial(self._write_one, request_id, self._buffers[request_id])
        return functools.partial(self.add, request_id)

    async def add(self, request_id: str, token: str) -> None:
        """Buffer one token; flush now if over the size limit or in token-by-token mode."""
        buffer = self._buffers[request_id]
        if self._delay <= 0:
            await self._write_one(request_id, buffer, token)
            return
        buffer.parts.append(token)
        buffer.size += len(token.encode())
        if not buffer.started:
            # Leading edge: the first token goes now, and the debounce batches the rest.
            # Waiting `flush_ms` for company would add that much to every answer's TTFT.
            buffer.started = True
            await self._flush(request_id, buffer, FlushTrigger.FIRST)
        elif buffer.size >= self._flush_bytes:
            self._cancel_pending(buffer)
            await self._flush(request_id, buffer, FlushTrigger.IMMEDIATE)
        elif buffer.flush_task is None:
            buffer.flush_task = asyncio.create_task(self._flush_later(request_id, buffer))

    async def flush_on_end(self, request_id: str) -> None:
        """The token source ended or failed: flush what is left now."""
        buffer = self._buffers.get(request_id)
        if buffer is None:
            return
        self._cancel_pending(buffer)
        if buffer.parts:
            await self._flush(request_id, buffer, FlushTrigger.END)
        else:
            await self._settle(buffer)

    async def cleanup_request_buffers(self, request_id: str) -> None:
        """Cancel a pending flush, flush what is left, and drop the request's buffer."""
        buffer = self._buffers.get(request_id)
        if buffer is None:
            return
        self._cancel_pending(buffer)
        try:
            if buffer.parts:
                await self._flush(request_id, buffer, FlushTrigger.CLEANUP)
            else:
                await self._settle(buffer)
        finally:
            buffer.parts.clear()
            buffer.size = 0
            del self._buffers[request_id]

    @staticmethod
    async def _settle(buffer: _Buffer) -> None:
        """Wait for a timer flush already writing, so later chunks keep their order."""
        async with buffer.lock:
            pass

    @staticmethod
    def _cancel_pending(buffer: _Buffer) -> None:
        task, buffer.flush_task = buffer.flush_task, None
        if task is not None and not task.done():
            task.cancel()

    async def _flush_later(self, request_id: str, buffer: _Buffer) -> None:
        await self._sleep(self._delay)
        # Past the sleep the task detaches itself: from here on it is flushing,
        # and cancelling it would lose a chunk half-way through its write.
        if buffer.flush_task is asyncio.current_task():
            buffer.flush_task = None
        await self._flush(request_id, buffer, FlushTrigger.DEBOUNCE)

    async def _flush(self, request_id: str, buffer: _Buffer, trigger: str) -> None:
        async with buffer.lock:
            await self._write(request_id, buffer, trigger)

    async def _write_one(self, request_id: str, buffer: _Buffer, token: str) -> None:
        """Token-by-token mode: one token, one chunk (the same log lines as a flush)."""
        if buffer.parts:  # a batch was put back: keep the order
            buffer.parts.append(token)
            buffer.size += len(token.encode())
            await self._write(request_id, buffer, FlushTrigger.TOKEN)
            return
        size = len(token.encode())
        buffer.writing = (size, self._clock())
        try:
            sent = await buffer.emit_token(token)
        except asyncio.CancelledError:
            buffer.put_back([token], size)
            buffer.log_flush(0)
            raise
        finally:
            buffer.writing = None
        buffer.log_flush(1 if sent else 0)
        self._flush_counts[FlushTrigger.TOKEN] += 1

    async def _write(self, request_id: str, buffer: _Buffer, trigger: str) -> None:
        """Send what is buffered as one chunk (callers hold the lock where it matters)."""
        if not buffer.parts:
            return
        parts, size = buffer.take()
        text, tokens = "".join(parts), len(parts)
        buffer.writing = (size, self._clock())
        try:
            sent = await buffer.emit(text, tokens)
        except asyncio.CancelledError:
            # Cancelled while waiting to write (a paused transport): nothing reached
            # the wire, so the batch goes back and cleanup sends it, in order. The
            # flush ended all the same, with nothing sent: its line says so.
            buffer.put_back(parts, size)
            buffer.log_flush(0)
            raise
        finally:
            buffer.writing = None
        buffer.log_flush(tokens if sent else 0)
        self._flush_counts[trigger] += 1
