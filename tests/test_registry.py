"""The stream registry: one active stream per session, bounded waits, the fence."""

from __future__ import annotations

import asyncio

from jarvis import StreamGuard, faults
from jarvis._registry import StreamRegistry
from jarvis._stream import StreamHandle, StreamState
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import CancelReason, Event


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def end(registry: StreamRegistry, handle: StreamHandle) -> None:
    """What a stream's finally does last: release, then resolve `done`."""
    handle.transition(StreamState.STOPPING)
    registry.release(handle)
    handle.finish()


async def test_first_stream_of_a_session_registers_without_waiting() -> None:
    """No previous stream: register at once and log stream_registered, nothing cancelled."""
    log = RecordingLog()
    registry = StreamRegistry(log, cancel_wait=1.0)
    a = StreamHandle(session="s1")
    assert await registry.register(a) is True
    assert a.state is StreamState.ACTIVE
    assert registry.active("s1") is a
    assert log.names() == ["stream_registered"]


async def test_new_prompt_cancels_previous_stream_and_waits_for_its_cleanup() -> None:
    """B cancels A (reason=registry_new_stream), waits for A's end, then registers."""
    log = RecordingLog()
    clock = FakeClock()
    registry = StreamRegistry(log, cancel_wait=2.0, clock=clock)
    a = StreamHandle(session="s1")
    await registry.register(a)
    b = StreamHandle(session="s1")
    registering = asyncio.create_task(registry.register(b))
    await asyncio.sleep(0)
    assert a.cancel_reason is CancelReason.REGISTRY_NEW_STREAM
    assert not registering.done(), "B must wait for A's cleanup"
    assert registry.active("s1") is a
    clock.now += 0.040
    end(registry, a)
    assert await asyncio.wait_for(registering, 1.0) is True
    assert registry.active("s1") is b
    assert log.names() == [
        "stream_registered",
        "stream_cancelled",
        "prev_stream_finished_cleanly",
        "stream_registered",
    ]
    (cancelled,) = log.of(Event.STREAM_CANCELLED)
    assert cancelled["trace"] == a.trace
    assert cancelled["reason"] == "registry_new_stream"
    (clean,) = log.of(Event.PREV_STREAM_FINISHED_CLEANLY)
    assert clean == {"session": "s1", "trace": b.trace, "prev_trace": a.trace, "waited_ms": 40}


async def test_wait_is_bounded_and_an_overrunning_stream_is_fenced() -> None:
    """A that never cleans up: B times out after cancel_wait, A is fenced, B goes ahead."""
    log = RecordingLog()
    registry = StreamRegistry(log, cancel_wait=0.05)
    a = StreamHandle(session="s1")
    await registry.register(a)
    b = StreamHandle(session="s1")
    assert await asyncio.wait_for(registry.register(b), 2.0) is True
    assert a.fenced is True
    assert not a.done.done(), "the timeout must not cancel A's cleanup"
    assert registry.active("s1") is b
    assert log.names()[-3:] == [
        "prev_stream_timeout_on_cancel",
        "stream_fenced",
        "stream_registered",
    ]
    (timeout,) = log.of(Event.PREV_STREAM_TIMEOUT_ON_CANCEL)
    assert int(str(timeout["waited_ms"])) >= 40


async def test_late_finally_of_a_fenced_stream_never_unregisters_its_successor() -> None:
    """Compare-and-delete: A's release after B registered leaves B active."""
    registry = StreamRegistry(RecordingLog(), cancel_wait=0.02)
    a = StreamHandle(session="s1")
    await registry.register(a)
    b = StreamHandle(session="s1")
    await registry.register(b)
    end(registry, a)
    assert registry.active("s1") is b
    assert registry.live_count() == 1
    end(registry, b)
    assert registry.active("s1") is None
    assert registry.snapshot() == {}


async def test_racing_prompts_only_the_newest_survives_and_nothing_deadlocks() -> None:
    """Five prompts into one session at once: every older one is cancelled, the last wins."""
    log = RecordingLog()
    registry = StreamRegistry(log, cancel_wait=1.0)
    handles = [StreamHandle(session="s1") for _ in range(5)]
    tasks = [asyncio.create_task(registry.register(h)) for h in handles]
    async with asyncio.timeout(1):  # until the last one has cancelled every older one
        while handles[-1].state is not StreamState.WAITING:
            await asyncio.sleep(0)
    assert all(h.cancel_reason is CancelReason.REGISTRY_NEW_STREAM for h in handles[:-1])
    assert handles[-1].cancel_reason is None
    for handle in handles[:-1]:  # each loser's finally runs
        end(registry, handle)
    results = [await asyncio.wait_for(t, 1.0) for t in tasks]
    # The first registered at once (nothing to wait for); 1-3 lost while waiting.
    assert results == [True, False, False, False, True]
    assert registry.active("s1") is handles[-1]
    assert registry.live_count() == 1
    assert "prev_stream_timeout_on_cancel" not in log.names()


async def test_a_stream_superseded_while_waiting_loses_its_registration() -> None:
    """B waits on A; C arrives; B's registration returns False and only C registers."""
    registry = StreamRegistry(RecordingLog(), cancel_wait=1.0)
    a, b, c = (StreamHandle(session="s1") for _ in range(3))
    await registry.register(a)
    b_task = asyncio.create_task(registry.register(b))
    await asyncio.sleep(0)
    c_task = asyncio.create_task(registry.register(c))
    assert await asyncio.wait_for(b_task, 1.0) is False
    assert b.cancel_reason is CancelReason.REGISTRY_NEW_STREAM
    end(registry, b)
    end(registry, a)
    assert await asyncio.wait_for(c_task, 1.0) is True
    assert registry.active("s1") is c


async def test_sessions_are_independent() -> None:
    """A prompt in session Y never cancels session X's stream."""
    registry = StreamRegistry(RecordingLog(), cancel_wait=1.0)
    x = StreamHandle(session="x")
    y = StreamHandle(session="y")
    await registry.register(x)
    await registry.register(y)
    assert not x.cancel_requested and not y.cancel_requested
    assert registry.live_count() == 2


async def test_no_cancel_fault_registers_beside_the_old_stream() -> None:
    """The registry `faults.inject` swaps in for no-cancel: two active streams, nobody
    told to stop (the correct registry above cancels A)."""
    log = RecordingLog()
    guard = faults.inject(StreamGuard(log=log, cancel_wait=1.0), {faults.Fault.NO_CANCEL})  # type: ignore[arg-type]
    registry = guard.parts.registry
    assert type(registry) is not StreamRegistry
    a, b = StreamHandle(session="s1"), StreamHandle(session="s1")
    await registry.register(a)
    await registry.register(b)
    assert not a.cancel_requested
    assert a.state is StreamState.ACTIVE and b.state is StreamState.ACTIVE
    assert "stream_cancelled" not in log.names()


async def test_shutdown_cancels_every_stream_and_reports_what_remains() -> None:
    """shutdown() cancels with reason=shutdown and returns the streams still open."""
    registry = StreamRegistry(RecordingLog(), cancel_wait=1.0)
    a, b = StreamHandle(session="a"), StreamHandle(session="b")
    await registry.register(a)
    await registry.register(b)
    end(registry, a)
    remaining = await registry.shutdown(0.05)
    assert b.cancel_reason is CancelReason.SHUTDOWN
    assert remaining == 1


async def test_handle_state_machine_rejects_illegal_moves_and_repr_shows_state() -> None:
    """ENDED is final, cancel after STOPPING is a no-op, and repr tells the state."""
    import pytest

    from jarvis._stream import IllegalTransitionError

    h = StreamHandle(session="s", stream_id="chatcmpl-x")
    assert "state=CREATED" in repr(h)
    with pytest.raises(IllegalTransitionError):
        h.transition(StreamState.ACTIVE)
    h.transition(StreamState.STOPPING)
    assert h.cancel(CancelReason.CLIENT_DISCONNECTED) is False
    h.finish()
    assert h.done.done()
    assert "state=ENDED" in repr(h)
    with pytest.raises(IllegalTransitionError):
        h.transition(StreamState.STOPPING)


async def test_a_fenced_stream_is_not_waited_for_again() -> None:
    """A stream stuck in its cleanup is fenced once; the session's next prompts register
    at once instead of each waiting out the cancel wait behind it."""
    log = RecordingLog()
    registry = StreamRegistry(log, cancel_wait=0.05)
    stuck = StreamHandle(session="s")
    await registry.register(stuck)  # never ends: its cleanup is stuck
    second = StreamHandle(session="s")
    await asyncio.wait_for(registry.register(second), 1)
    assert stuck.fenced
    end(registry, second)
    third = StreamHandle(session="s")
    assert await asyncio.wait_for(registry.register(third), 0.04)  # under one cancel wait
    assert len(log.of(Event.PREV_STREAM_TIMEOUT_ON_CANCEL)) == 1
