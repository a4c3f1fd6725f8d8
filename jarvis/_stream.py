"""One stream's identity and state machine.

A `StreamHandle` is created when a prompt arrives and lives until its
`finally` has run. The states only move forward; an illegal move raises, so a
lifecycle bug shows up as an exception in tests rather than a silent hang.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from collections.abc import Callable

from .vocabulary import CancelReason


class StreamState(enum.IntEnum):
    """Where a stream is in its life; values only ever increase."""

    CREATED = 0  # the prompt arrived; not yet registered in its session
    WAITING = 1  # waiting (bounded) for the session's previous streams to finish
    ACTIVE = 2  # the session's registered stream: it may emit tokens
    STOPPING = 3  # its `finally` is running: flush, terminal chunk, cleanup
    ENDED = 4  # cleanup finished (or was skipped by a fault); `done` is resolved


_ALLOWED: dict[StreamState, frozenset[StreamState]] = {
    StreamState.CREATED: frozenset({StreamState.WAITING, StreamState.STOPPING}),
    StreamState.WAITING: frozenset({StreamState.ACTIVE, StreamState.STOPPING}),
    StreamState.ACTIVE: frozenset({StreamState.STOPPING}),
    StreamState.STOPPING: frozenset({StreamState.ENDED}),
    StreamState.ENDED: frozenset(),
}


class IllegalTransitionError(RuntimeError):
    """A lifecycle bug: a stream was asked to move to a state it cannot reach."""


def new_stream_id(prefix: str = "") -> str:
    """A stream id: `prefix` (the wire format's, `chatcmpl-` for OpenAI chunks) and 24
    hex digits; it doubles as the batcher's request id."""
    return prefix + secrets.token_hex(12)


def new_trace_id() -> str:
    """A 16-hex-digit trace id, returned to the client as `X-Trace-Id`."""
    return secrets.token_hex(8)


class StreamHandle:
    """Identity, state and cancellation of one stream.

    Cancellation is a one-shot signal with a reason (the first reason wins).
    `fenced` is the guarantee beyond the original fix: once set, nothing this stream
    still tries to write reaches the wire.
    """

    __slots__ = (
        "_clock",
        "cancel_reason",
        "cancelled",
        "done",
        "fenced",
        "generation",
        "session",
        "started_at",
        "state",
        "stream_id",
        "tokens",
        "trace",
    )

    def __init__(
        self,
        *,
        session: str,
        stream_id: str | None = None,
        trace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.session = session
        self.stream_id = stream_id or new_stream_id()
        self.trace = trace or new_trace_id()
        self.state = StreamState.CREATED
        self.generation = 0
        self.tokens = 0
        self.fenced = False
        self.cancel_reason: CancelReason | None = None
        #: Resolved with the reason when the stream is told to stop.
        self.cancelled: asyncio.Future[CancelReason] = loop.create_future()
        #: Resolved when the stream's cleanup has finished.
        self.done: asyncio.Future[None] = loop.create_future()
        self._clock = clock
        self.started_at = clock()

    def __repr__(self) -> str:
        flags = " fenced" if self.fenced else ""
        cancel = f" cancel={self.cancel_reason.value}" if self.cancel_reason else ""
        return (
            f"<StreamHandle {self.stream_id} session={self.session!r} "
            f"state={self.state.name}{cancel}{flags}>"
        )

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_reason is not None

    def elapsed_ms(self) -> int:
        return int((self._clock() - self.started_at) * 1000)

    def transition(self, new: StreamState) -> None:
        """Move to `new`, or raise `IllegalTransitionError`."""
        if new not in _ALLOWED[self.state]:
            raise IllegalTransitionError(f"{self!r}: {self.state.name} -> {new.name}")
        self.state = new

    def cancel(self, reason: CancelReason) -> bool:
        """Tell the stream to stop; True only for the call that took effect.

        A stream already in its `finally` is ending anyway, so a late cancel
        (for example the disconnect that follows a completed response) is a no-op.
        """
        if self.cancel_reason is not None or self.state >= StreamState.STOPPING:
            return False
        self.cancel_reason = reason
        self.cancelled.set_result(reason)
        return True

    def fence(self) -> None:
        """From now on nothing this stream writes reaches the wire."""
        self.fenced = True

    def finish(self) -> None:
        """Mark cleanup finished and wake whoever waits for this stream."""
        self.transition(StreamState.ENDED)
        if not self.done.done():
            self.done.set_result(None)
