"""The lifecycle alone: a fake emitter, an injected clock, and the order of every step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jarvis import StreamGuard, faults
from jarvis._batcher import TokenBatcher
from jarvis._encoders import StreamEnd
from jarvis._lifecycle import StreamParts, StreamRun
from jarvis._metrics import Metrics
from jarvis._registry import StreamRegistry
from jarvis._stream import StreamHandle, StreamState
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import CancelReason, EndReason, Event

pytestmark = pytest.mark.timeout(10)


class Clock:
    """Monotonic time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class FakeEmitter:
    """Records what the lifecycle asks of its emitter, and when the registry still held it."""

    def __init__(self, registry: StreamRegistry) -> None:
        self.calls: list[tuple[object, ...]] = []
        self._registry = registry

    async def start(self) -> None:
        self.calls.append(("start",))

    async def token(self, text: str) -> bool:
        self.calls.append(("token", text))
        return True

    async def tokens(self, text: str, count: int) -> bool:
        self.calls.append(("tokens", text, count))
        return True

    async def finish(self, end: StreamEnd) -> None:
        self.calls.append(("finish", end, self._registry.live_count()))


def make(log: RecordingLog, clock: Clock) -> tuple[StreamParts, StreamHandle, FakeEmitter]:
    registry = StreamRegistry(log, cancel_wait=1.0, clock=clock)
    parts = StreamParts(log, Metrics(), registry, TokenBatcher(log, flush_ms=0), 1.0)
    handle = StreamHandle(session="s", clock=clock)
    return parts, handle, FakeEmitter(registry)


async def test_a_completed_stream_emits_each_token_then_cleans_up_in_order() -> None:
    """Tokens go out one by one; the end is told to the emitter while the registry still
    holds the stream (so no successor can write first); `stream_end` is last and its
    duration comes from the injected clock."""
    log, clock = RecordingLog(), Clock()
    parts, handle, emitter = make(log, clock)

    async def tokens() -> AsyncIterator[str]:
        for text in ("a", "b"):
            clock.now += 0.25
            yield text

    reason = await StreamRun(parts, handle, emitter, model="m", prompt_chars=5).run(tokens())
    assert reason is EndReason.COMPLETED
    assert emitter.calls == [
        ("start",),
        ("token", "a"),
        ("token", "b"),
        ("finish", StreamEnd(EndReason.COMPLETED, 2), 1),
    ]
    names = log.names()
    assert names[:2] == ["stream_start", "stream_registered"]
    assert names[-3:] == ["flush", "event_buffers_cleaned", "stream_end"]
    (end,) = log.of(Event.STREAM_END)
    assert (end["duration_ms"], end["tokens"], end["cleanup_done"]) == (500, 2, True)
    assert handle.state is StreamState.ENDED and handle.done.done()
    assert parts.registry.live_count() == 0


async def test_a_cancel_while_the_source_is_silent_ends_the_stream_at_once() -> None:
    """The stream waits on its producer *or* its cancel: a cancel lands even while the
    token source never yields again, and the stream ends superseded with cleanup done."""
    log, clock = RecordingLog(), Clock()
    parts, handle, emitter = make(log, clock)
    silent = asyncio.Event()

    async def tokens() -> AsyncIterator[str]:
        yield "a"
        await silent.wait()  # never set: only the cancel can end this stream
        yield "never"

    run = asyncio.create_task(StreamRun(parts, handle, emitter).run(tokens()))
    async with asyncio.timeout(2):
        while ("token", "a") not in emitter.calls:
            await asyncio.sleep(0.001)
    parts.registry.cancel(handle, CancelReason.REGISTRY_NEW_STREAM)
    assert await asyncio.wait_for(run, 2) is EndReason.SUPERSEDED
    assert emitter.calls[-1] == ("finish", StreamEnd(EndReason.SUPERSEDED, 1), 1)
    (end,) = log.of(Event.STREAM_END)
    assert (end["reason"], end["cleanup_done"]) == ("superseded", True)


async def test_a_stream_that_loses_its_race_never_starts_its_source() -> None:
    """Cancelled while it waited to register: no `start`, the source closed unstarted,
    and the whole cleanup still runs."""
    log, clock = RecordingLog(), Clock()
    parts, handle, emitter = make(log, clock)
    older = StreamHandle(session="s", clock=clock)
    await parts.registry.register(older)  # holds the session and never ends
    started = False

    async def tokens() -> AsyncIterator[str]:
        nonlocal started
        started = True
        yield "x"

    run = asyncio.create_task(StreamRun(parts, handle, emitter).run(tokens()))
    async with asyncio.timeout(2):
        while handle.state is not StreamState.WAITING:
            await asyncio.sleep(0.001)
    parts.registry.cancel(handle, CancelReason.CLIENT_DISCONNECTED)
    assert await asyncio.wait_for(run, 2) is EndReason.DISCONNECTED
    assert not started
    assert [c[0] for c in emitter.calls] == ["finish"]


async def test_the_ignore_cancel_variant_runs_past_its_cancel() -> None:
    """`faults.inject` swaps the lifecycle for ignore-cancel: told to stop, the stream
    still emits every token and ends `completed` (the correct one ends superseded)."""
    log = RecordingLog()
    guard = faults.inject(StreamGuard(log=log, flush_ms=0), {faults.Fault.IGNORE_CANCEL})  # type: ignore[arg-type]
    parts, clock = guard.parts, Clock()
    handle = StreamHandle(session="s", clock=clock)
    emitter = FakeEmitter(parts.registry)
    gate = asyncio.Event()

    async def tokens() -> AsyncIterator[str]:
        yield "a"
        await gate.wait()
        yield "b"

    run = asyncio.create_task(guard.run_class(parts, handle, emitter).run(tokens()))
    async with asyncio.timeout(2):
        while ("token", "a") not in emitter.calls:
            await asyncio.sleep(0.001)
    parts.registry.cancel(handle, CancelReason.REGISTRY_NEW_STREAM)
    gate.set()
    assert await asyncio.wait_for(run, 2) is EndReason.COMPLETED
    assert ("token", "b") in emitter.calls


async def test_slow_and_skipped_cleanup_compose_as_in_a_real_finally() -> None:
    """Both faults on: the `finally` first stalls past the cancel wait, then skips the
    cleanup (the stream leaks), as the two bugs would compose in one `finally`."""
    log = RecordingLog()
    chosen = {faults.Fault.SLOW_CLEANUP, faults.Fault.SKIP_CLEANUP}
    guard = faults.inject(StreamGuard(log=log, flush_ms=0, cancel_wait=0.01), chosen)  # type: ignore[arg-type]
    parts = guard.parts
    handle = StreamHandle(session="s")
    emitter = FakeEmitter(parts.registry)

    async def tokens() -> AsyncIterator[str]:
        yield "a"

    started = asyncio.get_running_loop().time()
    await guard.run_class(parts, handle, emitter).run(tokens())
    assert asyncio.get_running_loop().time() - started >= faults.slow_cleanup_delay(0.01)
    (end,) = log.of(Event.STREAM_END)
    assert end["cleanup_done"] is False
    assert parts.registry.live_count() == 1  # leaked, as skip-cleanup does
