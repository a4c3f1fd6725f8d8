"""The stream registry: one active stream per session, and the fence.

Registering B while A is active cancels A, waits for A's cleanup *outside*
any lock and bounded by `cancel_wait`, then makes B the session's active
stream. Waits only ever go from newer to older streams, so racing prompts
cannot deadlock: the newest wins, every other one ends superseded.

`Registry` is what the guard and the lifecycle hold: `StreamRegistry` (this
process) and `RedisRegistry` (a fleet, `jarvis._redis_registry`) implement it.
Under another `on_busy` policy than supersede (`jarvis._busy`), `admit` refuses or
queues a prompt whose session is busy before it registers, and registering then
never supersedes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ._busy import QUEUE, REJECT, SUPERSEDE, SessionQueue, busy, queue_timeout
from ._stream import StreamHandle, StreamState
from .eventlog import EventSink
from .exceptions import SessionBusy
from .settings import GuardSettings, OnBusy
from .vocabulary import CancelReason, Event

if TYPE_CHECKING:  # prometheus_client is imported when a guard is built, not by `import jarvis`
    from ._metrics import Metrics

#: Defaults are GuardSettings', so a registry built alone behaves as a guard's does.
_DEFAULTS = GuardSettings()


class Registry(Protocol):
    """Which stream of a session may emit: what a guard's streams register with.

    The guard calls `start` and `stop` around its lifespan and `shutdown` at its
    end; each stream `register`s (False: it lost its session's race), may be
    `cancel`led from anywhere, and is `release`d by its cleanup, always.
    """

    async def start(self) -> None:
        """Connect to whatever holds the shared state, if anything (else a no-op)."""
        ...

    async def stop(self) -> None:
        """Disconnect (bounded)."""
        ...

    def unavailable(self) -> bool:
        """Whether new streams must be refused now (a shared registry that is down)."""
        ...

    async def admit(self, handle: StreamHandle) -> SessionBusy | None:
        """Before `handle` becomes a stream: None if it may go on and register, or the
        refusal its busy session earns under the policy (`reject`; `queue` past its
        wait). Under `supersede` always None."""
        ...

    async def register(self, handle: StreamHandle) -> bool:
        """Make `handle` its session's active stream, superseding the older ones (a
        bounded wait); False if it lost the race (cancelled while it waited)."""
        ...

    def cancel(self, handle: StreamHandle, reason: CancelReason) -> bool:
        """Tell one stream to stop; True if that took effect (logged `stream_cancelled`)."""
        ...

    def release(self, handle: StreamHandle) -> None:
        """Forget `handle` (compare-and-delete: never a successor's entry)."""
        ...

    def active(self, session: str) -> StreamHandle | None:
        """The stream this process runs that may emit in `session`, if any."""
        ...

    def live_count(self) -> int:
        """This process's streams registered or waiting and not yet released (any thread)."""
        ...

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """This process's live streams by session."""
        ...

    async def shutdown(self, wait_s: float) -> int:
        """Cancel every live stream (`reason=shutdown`), wait (bounded); return how many
        remain."""
        ...

    async def stop_remote(self, session: str, stream_id: str) -> bool:
        """Stop `stream_id`, `session`'s registered stream, in the process that runs it;
        False if no other process does (one process: never)."""
        ...


@dataclass(slots=True)
class SessionStreams:
    """A session's live streams (registered or waiting) and its active one."""

    generation: int = 0
    live: list[StreamHandle] = field(default_factory=list)
    active: StreamHandle | None = None


class StreamRegistry:
    """The `Registry` of one process: owns which stream of a session may emit.

    `supersede` and `fence` are seams: `jarvis.faults` overrides them to reproduce
    the original server's bugs (no-cancel, ignore-cancel), so this class holds the fix alone.
    """

    def __init__(
        self,
        log: EventSink,
        *,
        cancel_wait: float = _DEFAULTS.cancel_wait,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_busy: OnBusy = SUPERSEDE,
        queue_wait: float = _DEFAULTS.queue_wait,
    ) -> None:
        self._log = log
        self._metrics = metrics
        self._cancel_wait = cancel_wait
        self._clock = clock
        self._on_busy = on_busy
        self._queue_wait = queue_wait
        self._sessions: dict[str, SessionStreams] = {}
        # Kept as a plain int so other threads (the watchdog) can read it safely.
        self._live = 0
        #: Prompts waiting for their session (`on_busy="queue"`), and their handles.
        self._queue = SessionQueue()
        self._queued: set[StreamHandle] = set()

    def __repr__(self) -> str:
        return f"<StreamRegistry sessions={len(self._sessions)} live={self.live_count()}>"

    async def register(self, handle: StreamHandle) -> bool:
        """Make `handle` its session's active stream; False if it lost the race.

        A stream loses when it is itself cancelled while it waits: a newer
        prompt arrived in its session, or its client went away.
        """
        session = self._sessions.setdefault(handle.session, SessionStreams())
        session.generation += 1
        handle.generation = session.generation
        # A fenced stream may write nothing more: waiting for it again would cost every
        # later prompt of the session a full cancel wait behind one stuck cleanup.
        previous = [p for p in session.live if not p.fenced]
        session.live.append(handle)
        self._live += 1
        handle.transition(StreamState.WAITING)

        # Under reject or queue, `admit` let this prompt in only when the session was
        # free; one still busy here was cancelled while it queued, and supersedes nobody.
        if previous and self._on_busy == SUPERSEDE:
            await self.supersede(handle, previous)

        if handle.cancel_requested:
            return False
        return self.activate(session, handle)

    def activate(self, session: SessionStreams, handle: StreamHandle) -> bool:
        """`handle` is its session's stream from now on: ACTIVE, and `stream_registered`
        says so (in one process, or once the shared registry gave it the session)."""
        session.active = handle
        handle.transition(StreamState.ACTIVE)
        self._log.emit(
            Event.STREAM_REGISTERED,
            trace=handle.trace,
            session=handle.session,
            stream_id=handle.stream_id,
            generation=handle.generation,
        )
        return True

    async def supersede(self, handle: StreamHandle, previous: list[StreamHandle]) -> None:
        """Cancel the session's older streams and wait (bounded) for their cleanup.

        A seam: `register` calls it whenever older streams are live; the no-cancel
        variant overrides it to go ahead without touching them.
        """
        for prev in previous:
            self.cancel(prev, CancelReason.REGISTRY_NEW_STREAM)
        await self._wait_for_previous(handle, previous)

    async def _wait_for_previous(self, handle: StreamHandle, previous: list[StreamHandle]) -> None:
        """Wait (bounded, never cancelling what it waits on) for older streams to end."""
        loop = asyncio.get_running_loop()
        started = self._clock()
        deadline = loop.time() + self._cancel_wait
        pending: set[asyncio.Future[Any]] = {p.done for p in previous if not p.done.done()}
        # asyncio.wait, not wait_for: a timeout must not cancel the old stream's
        # cleanup, and our own cancellation (a newer prompt) must end the wait.
        while pending and not handle.cancel_requested:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            finished, _ = await asyncio.wait(
                {*pending, handle.cancelled},
                timeout=remaining,
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending -= finished
        if handle.cancel_requested:
            return  # superseded while waiting: the newer stream reports the outcome
        waited_ms = int((self._clock() - started) * 1000)
        if self._metrics is not None:
            self._metrics.cancel_wait.observe(waited_ms / 1000)
        prev_traces = ",".join(p.trace for p in previous)
        if not pending:
            self._log.emit(
                Event.PREV_STREAM_FINISHED_CLEANLY,
                session=handle.session,
                trace=handle.trace,
                prev_trace=prev_traces,
                waited_ms=waited_ms,
            )
            return
        self._log.emit(
            Event.PREV_STREAM_TIMEOUT_ON_CANCEL,
            session=handle.session,
            trace=handle.trace,
            prev_trace=prev_traces,
            waited_ms=waited_ms,
        )
        if self._metrics is not None:
            self._metrics.cleanup_timeouts.inc()
        for prev in previous:
            if not prev.done.done() and not prev.fenced:
                self.fence(prev, by=handle)

    def fence(self, stream: StreamHandle, *, by: StreamHandle) -> None:
        """`stream` overran the cancel wait: nothing it still writes may reach the wire.

        A seam: the wait calls it for every older stream still running when it times
        out; the ignore-cancel variant overrides it to leave the laggard unfenced.
        """
        stream.fence()
        self._log.emit(
            Event.STREAM_FENCED,
            trace=stream.trace,
            session=stream.session,
            stream_id=stream.stream_id,
            by_trace=by.trace,
        )

    # -- a busy session, under reject or queue ------------------------------------------

    def running(self, session: str) -> list[StreamHandle]:
        """The session's streams of this process that a new prompt would have to wait for
        (a fenced one writes nothing more: it does not count)."""
        slot = self._sessions.get(session)
        return [] if slot is None else [h for h in slot.live if not h.fenced]

    async def admit(self, handle: StreamHandle) -> SessionBusy | None:
        """Under `reject`, refuse a prompt whose session streams; under `queue`, wait for
        its turn (first come, first served; at most `queue_wait`). No await separates a
        free session from the `register` that follows, so two prompts never both find it
        free. A prompt cancelled while it waits (its client left) goes on, to end as a
        cancelled stream; it supersedes nobody."""
        name = handle.session
        if self._on_busy == REJECT:
            return busy(name) if self.running(name) else None
        if self._on_busy != QUEUE or (not self.running(name) and not self._queue.waiting(name)):
            return None
        return await self._wait_turn(handle)

    async def _wait_turn(self, handle: StreamHandle) -> SessionBusy | None:
        name = handle.session
        loop = asyncio.get_running_loop()
        started = self._clock()
        deadline = loop.time() + self._queue_wait
        waited_for = dict.fromkeys(h.trace for h in self.running(name))
        turn = self._queue.join(name)
        mark = self._queue.mark(name)
        self._queued.add(handle)
        admitted = False
        try:
            while True:
                if self._queue.first(name, turn) and not self.running(name):
                    admitted = True
                    waited_for.update(dict.fromkeys(self._queue.ended_since(name, mark)))
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return queue_timeout(name, self._queue_wait)
                either: set[asyncio.Future[Any]] = {turn, handle.cancelled}
                await asyncio.wait(either, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if handle.cancel_requested:
                    return None
                if turn.done():
                    turn = self._queue.again(name, turn)
        finally:
            self._queued.discard(handle)
            self._queue.leave(name, turn)
            if not admitted and not self.running(name):
                self._queue.wake(name)  # the next in line may be first now
        self.queued(handle, list(waited_for), int((self._clock() - started) * 1000))
        return None

    def queued(self, handle: StreamHandle, waited_for: list[str], waited_ms: int) -> None:
        """`handle` waited its turn and goes on: `stream_queued`, before its `stream_start`."""
        self._log.emit(
            Event.STREAM_QUEUED,
            session=handle.session,
            trace=handle.trace,
            prev_trace=",".join(waited_for),
            waited_ms=waited_ms,
        )
        if self._metrics is not None:
            self._metrics.queue_wait.observe(waited_ms / 1000)

    async def start(self) -> None:
        """Nothing to connect to: a shared registry (`RedisRegistry`) connects here."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    def unavailable(self) -> bool:
        """Whether new streams must be refused; an in-process registry never is."""
        return False

    def cancel(self, handle: StreamHandle, reason: CancelReason) -> bool:
        """Signal one stream to stop, logging `stream_cancelled` if it took effect."""
        if not handle.cancel(reason):
            return False
        self._log.emit(
            Event.STREAM_CANCELLED,
            trace=handle.trace,
            session=handle.session,
            stream_id=handle.stream_id,
            reason=reason.value,
        )
        if self._metrics is not None:
            self._metrics.cancelled.labels(reason.value).inc()
        return True

    def release(self, handle: StreamHandle) -> None:
        """Forget `handle`: compare-and-delete, so a late `finally` never removes a successor."""
        session = self._sessions.get(handle.session)
        if session is None:
            return
        if handle in session.live:
            session.live.remove(handle)
            self._live -= 1
        if session.active is handle:
            session.active = None
        if not session.live and self._sessions.get(handle.session) is session:
            del self._sessions[handle.session]
        if self._queue.waiting(handle.session):
            self._queue.ended(handle.session, handle.trace)
            if not self.running(handle.session):
                self._queue.wake(handle.session)

    def active(self, session: str) -> StreamHandle | None:
        """The stream currently allowed to emit in `session`, if any."""
        slot = self._sessions.get(session)
        return None if slot is None else slot.active

    def live_count(self) -> int:
        """Streams registered or waiting and not yet released (safe from any thread)."""
        return self._live

    def snapshot(self) -> dict[str, list[dict[str, object]]]:
        """Live streams by session, for `GET /v1/streams` and leak checks."""
        return {
            name: [
                {
                    "stream_id": h.stream_id,
                    "trace": h.trace,
                    "state": h.state.name.lower(),
                    "generation": h.generation,
                    "active": slot.active is h,
                    "fenced": h.fenced,
                    "cancel_reason": h.cancel_reason.value if h.cancel_reason else None,
                    "age_ms": h.elapsed_ms(),
                }
                for h in slot.live
            ]
            for name, slot in self._sessions.items()
        }

    async def shutdown(self, wait_s: float) -> int:
        """Cancel every live stream (`reason=shutdown`), wait (bounded); return how many remain."""
        handles = [h for s in self._sessions.values() for h in s.live]
        for handle in [*handles, *self._queued]:  # a queued prompt stops waiting too
            self.cancel(handle, CancelReason.SHUTDOWN)
        pending = {h.done for h in handles if not h.done.done()}
        if pending:
            await asyncio.wait(pending, timeout=wait_s)
        return sum(1 for h in handles if not h.done.done())

    async def stop_remote(self, session: str, stream_id: str) -> bool:
        """One process: a stream is stopped where it runs, here, or is nowhere."""
        return False
