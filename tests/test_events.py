"""The token batcher: debounce, immediate flush, flush on end, and cleanup."""

from __future__ import annotations

import asyncio

import pytest

from jarvis._batcher import TokenBatcher
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import Event


class ManualSleep:
    """An injected sleep that returns only when the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self.gate.wait()


class Wire:
    """Records what a flush writes, as the SSE emitter would send it."""

    def __init__(self, *, accept: bool = True) -> None:
        self.chunks: list[tuple[str, int]] = []
        self.accept = accept

    async def __call__(self, text: str, count: int) -> bool:
        await asyncio.sleep(0)  # a real send may yield
        if self.accept:
            self.chunks.append((text, count))
        return self.accept


def triggers(batcher: TokenBatcher) -> dict[str, int]:
    """What started each flush after a stream's first token (`started`), as the
    jarvis_flushes_total metric counts it."""
    return {str(k): v for k, v in batcher.flush_counts.items() if v and k != "first"}


async def started(batcher: TokenBatcher, rid: str, wire: Wire, log: RecordingLog) -> None:
    """Past the leading edge: the stream's first token has gone, alone and at once; the
    wire and the log are cleared for what the test is about (the batching after it)."""
    await batcher.add(rid, "0")
    assert wire.chunks == [("0", 1)]
    wire.chunks.clear()
    log.records.clear()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_first_token_leaves_at_once_and_the_debounce_batches_the_rest() -> None:
    """Leading edge: a stream's first token is one chunk at once (trigger=first), with no
    timer: the debounce never adds to time to first token. The next token starts one."""
    log, sleep, wire = RecordingLog(), ManualSleep(), Wire()
    batcher = TokenBatcher(log, flush_ms=75, flush_bytes=1024, sleep=sleep)
    batcher.open("r1", wire, trace="t1")
    await batcher.add("r1", "Hello")
    assert wire.chunks == [("Hello", 1)]
    assert log.of(Event.FLUSH) == [{"trace": "t1", "tokens": 1}]
    assert sleep.delays == []
    assert {str(k): v for k, v in batcher.flush_counts.items() if v} == {"first": 1}
    await batcher.add("r1", " world")
    await settle()
    assert sleep.delays == [0.075]
    assert wire.chunks == [("Hello", 1)]


async def test_after_the_first_token_the_window_batches_tokens() -> None:
    """After the first, tokens inside the debounce window leave as one chunk, logged as
    one `flush` line naming the stream's trace, counted under trigger=debounce."""
    log, sleep, wire = RecordingLog(), ManualSleep(), Wire()
    batcher = TokenBatcher(log, flush_ms=75, flush_bytes=1024, sleep=sleep)
    batcher.open("r1", wire, trace="t1")
    await started(batcher, "r1", wire, log)
    for token in ["a", " b", " c"]:
        await batcher.add("r1", token)
    await settle()
    assert wire.chunks == []
    assert sleep.delays == [0.075]
    sleep.gate.set()
    await settle()
    assert wire.chunks == [("a b c", 3)]
    assert log.of(Event.FLUSH) == [{"trace": "t1", "tokens": 3}]
    assert log.names() == ["flush"]
    assert triggers(batcher) == {"debounce": 1}


async def test_buffer_over_flush_bytes_flushes_at_once_and_cancels_the_timer() -> None:
    """A buffer past flush_bytes flushes at once (trigger=immediate), one line; the
    pending timer is cancelled."""
    log, sleep, wire = RecordingLog(), ManualSleep(), Wire()
    batcher = TokenBatcher(log, flush_ms=75, flush_bytes=8, sleep=sleep)
    batcher.open("r1", wire)
    await started(batcher, "r1", wire, log)
    await batcher.add("r1", "1234")
    await batcher.add("r1", "56789")
    assert wire.chunks == [("123456789", 2)]
    assert log.of(Event.FLUSH) == [{"trace": "r1", "tokens": 2}]
    assert triggers(batcher) == {"immediate": 1}
    assert not batcher.has_pending_flush("r1")


async def test_flush_ms_zero_streams_token_by_token() -> None:
    """--flush-ms 0: every token is its own chunk and nothing is scheduled."""
    log, wire = RecordingLog(), Wire()
    batcher = TokenBatcher(log, flush_ms=0)
    batcher.open("r1", wire)
    for token in ["x", "y", "z"]:
        await batcher.add("r1", token)
    assert wire.chunks == [("x", 1), ("y", 1), ("z", 1)]
    assert log.names() == ["flush"] * 3
    assert triggers(batcher) == {"token": 3}


async def test_flush_on_end_sends_the_rest_before_the_stream_closes() -> None:
    """End of the source: the pending timer is cancelled and the rest flushed (trigger=end)."""
    log, sleep, wire = RecordingLog(), ManualSleep(), Wire()
    batcher = TokenBatcher(log, flush_ms=75, sleep=sleep)
    batcher.open("r1", wire)
    await started(batcher, "r1", wire, log)
    await batcher.add("r1", "tail")
    await batcher.flush_on_end("r1")
    assert wire.chunks == [("tail", 1)]
    assert log.names() == ["flush"]
    assert triggers(batcher) == {"end": 1}


async def test_cleanup_cancels_pending_flush_flushes_leftover_and_clears_the_buffer() -> None:
    """The cleanup sequence of the fix, in order, and the request's buffer is gone after."""
    log, sleep, wire = RecordingLog(), ManualSleep(), Wire()
    batcher = TokenBatcher(log, flush_ms=75, sleep=sleep)
    batcher.open("r1", wire)
    await started(batcher, "r1", wire, log)
    await batcher.add("r1", "left")
    await batcher.add("r1", "over")
    await batcher.cleanup_request_buffers("r1")
    assert wire.chunks == [("leftover", 2)]
    assert log.names() == ["flush"]  # the cancelled timer has no line of its own
    assert triggers(batcher) == {"cleanup": 1}
    assert batcher.buffered("r1") == ""
    assert "buffers=0" in repr(batcher)
    # The cancelled timer never fires a flush afterwards.
    sleep.gate.set()
    await settle()
    assert wire.chunks == [("leftover", 2)]


async def test_cleanup_waits_for_a_timer_flush_already_writing() -> None:
    """A timer flush mid-write finishes before cleanup returns: chunks keep their order."""
    log = RecordingLog()
    release = asyncio.Event()
    order: list[str] = []

    async def slow_wire(text: str, count: int) -> bool:
        order.append(f"start:{text}")
        if text != "0":  # the first token's own write (the leading edge) is quick
            await release.wait()
        order.append(f"end:{text}")
        return True

    async def no_wait(delay: float) -> None:
        return None

    batcher = TokenBatcher(log, flush_ms=75, sleep=no_wait)
    batcher.open("r1", slow_wire)
    await batcher.add("r1", "0")
    await batcher.add("r1", "next")
    await settle()  # the timer fired and is now blocked inside the write
    cleanup = asyncio.create_task(batcher.cleanup_request_buffers("r1"))
    await settle()
    assert not cleanup.done()
    release.set()
    await asyncio.wait_for(cleanup, 1.0)
    assert order == ["start:0", "end:0", "start:next", "end:next"]


async def test_refused_write_is_logged_as_zero_tokens_sent() -> None:
    """A fenced or disconnected stream: flush tokens=0, nothing claimed as sent."""
    log, wire = RecordingLog(), Wire(accept=False)
    batcher = TokenBatcher(log, flush_ms=0)
    batcher.open("r1", wire)
    await batcher.add("r1", "lost")
    assert log.of(Event.FLUSH) == [{"trace": "r1", "tokens": 0}]


async def test_requests_have_separate_buffers() -> None:
    """Two requests batch independently; cleanup of one leaves the other intact."""
    log, sleep = RecordingLog(), ManualSleep()
    a, b = Wire(), Wire()
    batcher = TokenBatcher(log, flush_ms=75, sleep=sleep)
    batcher.open("a", a)
    batcher.open("b", b)
    await started(batcher, "a", a, log)
    await started(batcher, "b", b, log)
    await batcher.add("a", "A")
    await batcher.add("b", "B")
    await batcher.cleanup_request_buffers("a")
    assert a.chunks == [("A", 1)]
    assert batcher.buffered("b") == "B"
    sleep.gate.set()
    await settle()
    assert b.chunks == [("B", 1)]


@pytest.mark.parametrize("size", [1, 1023, 1024, 5000])
async def test_every_token_arrives_once_and_in_order(size: int) -> None:
    """Whatever the flush size, the concatenated chunks equal the tokens added."""
    log, wire = RecordingLog(), Wire()

    async def quick(delay: float) -> None:
        await asyncio.sleep(0)

    batcher = TokenBatcher(log, flush_ms=75, flush_bytes=size, sleep=quick)
    batcher.open("r", wire)
    tokens = [f" t{i}" for i in range(300)]
    for token in tokens:
        await batcher.add("r", token)
        if len(wire.chunks) % 3 == 0:
            await asyncio.sleep(0)
    await batcher.flush_on_end("r")
    await batcher.cleanup_request_buffers("r")
    assert "".join(text for text, _ in wire.chunks) == "".join(tokens)
    assert sum(count for _, count in wire.chunks) == len(tokens)


async def test_a_flush_cancelled_before_its_write_puts_the_batch_back_in_order() -> None:
    """Producer cancelled while its flush waits on a paused transport: the batch is not lost
    and cleanup sends it first, so a cancelled stream's text has no gap."""
    log = RecordingLog()
    paused = asyncio.Event()
    wire: list[str] = []

    async def paused_then_ok(text: str, count: int) -> bool:
        if not paused.is_set():
            paused.set()
            await asyncio.Event().wait()  # a drain that never comes
        wire.append(text)
        return True

    batcher = TokenBatcher(log, flush_ms=0)
    batcher.open("r", paused_then_ok)
    producer = asyncio.create_task(batcher.add("r", "one "))
    await paused.wait()
    producer.cancel()
    await asyncio.gather(producer, return_exceptions=True)
    await batcher.add("r", "two")  # a later token (the flush path is free again)
    await batcher.cleanup_request_buffers("r")
    assert "".join(wire) == "one two"


async def test_a_write_under_way_is_in_flight_until_it_returns() -> None:
    """While a flush's write has not returned, `in_flight` names it (trace, size, since,
    on the batcher's clock): what the watchdog's thread reads to write flush_slow.
    A write cut short still gets its line, with nothing sent."""
    log, release = RecordingLog(), asyncio.Event()

    async def stuck(text: str, count: int) -> bool:
        await release.wait()
        return True

    batcher = TokenBatcher(log, flush_ms=0, clock=lambda: 42.0)
    batcher.open("r1", stuck, trace="t1")
    write = asyncio.create_task(batcher.add("r1", "tok"))
    await settle()
    assert [(f.trace, f.size, f.since) for f in batcher.in_flight()] == [("t1", 3, 42.0)]
    assert log.names() == []
    write.cancel()
    await asyncio.gather(write, return_exceptions=True)
    assert batcher.in_flight() == []
    assert log.of(Event.FLUSH) == [{"trace": "t1", "tokens": 0}]
