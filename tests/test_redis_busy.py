"""A busy session across processes, on a real redis-server: two guards stand for two
workers. Under reject a prompt on worker 2 is refused while worker 1 streams the
session; under queue it waits for worker 1's stream to end, then streams."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from jarvis import EndReason, SessionBusy, StreamEnd, StreamGuard
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import Event

from .redis_server import RedisServer

pytestmark = pytest.mark.timeout(20)


def make(url: str, **settings: Any) -> tuple[StreamGuard, RecordingLog]:
    log = RecordingLog()
    return StreamGuard(log=log, registry=url, flush_ms=0, **settings), log  # type: ignore[arg-type]


class Wire:
    """What one stream wrote, when, and its end."""

    def __init__(self) -> None:
        self.parts: list[tuple[float, str]] = []
        self.end: StreamEnd | None = None

    async def write(self, text: str) -> None:
        self.parts.append((time.monotonic(), text))

    async def on_end(self, end: StreamEnd) -> None:
        self.end = end

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.parts)


async def answer(guard: StreamGuard, session: str, wire: Wire, words: int, pace: float) -> None:
    async with guard.stream(session, wire.write, end=wire.on_end) as s:
        for i in range(words):
            if not await s.send(f"w{i} "):
                return
            await asyncio.sleep(pace)


async def until(condition: Any, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.002)


async def test_reject_refuses_a_prompt_on_another_worker_while_the_session_streams(
    redis_server: RedisServer,
) -> None:
    """A streams on worker 1; B for the same session on worker 2 is refused at once with
    SessionBusy (409) and logged there; A is never cancelled and delivers every word; once
    A has ended, the session's next prompt streams (on worker 1, whose release of the
    session it waits for: no stale refusal)."""
    one, log1 = make(redis_server.url, on_busy="reject")
    two, log2 = make(redis_server.url, on_busy="reject")
    async with one.lifespan(None), two.lifespan(None):
        a = Wire()
        first = asyncio.create_task(answer(one, "s", a, 30, 0.01))
        await until(lambda: len(a.parts) >= 3)
        began = time.monotonic()
        with pytest.raises(SessionBusy) as refused:
            async with two.stream("s", Wire().write):
                pytest.fail("worker 2 streamed a session worker 1 was streaming")
        assert time.monotonic() - began < 0.5
        assert not first.done()
        await asyncio.wait_for(first, 3)
        after = Wire()
        await answer(one, "s", after, 2, 0)
    assert refused.value.code == "session_busy"
    assert a.text == "".join(f"w{i} " for i in range(30))
    assert a.end is not None and a.end.reason is EndReason.COMPLETED
    assert log1.of(Event.STREAM_CANCELLED) == []
    (rejected,) = log2.of(Event.REQUEST_REJECTED)
    assert (rejected["status"], rejected["code"]) == (409, "session_busy")
    assert after.text == "w0 w1 "


async def test_queue_holds_a_prompt_on_another_worker_until_the_session_is_free(
    redis_server: RedisServer,
) -> None:
    """Under queue, B on worker 2 sends nothing while A streams on worker 1, then streams
    its whole answer after A's last word; worker 2 logs stream_queued naming A."""
    one, log1 = make(redis_server.url, on_busy="queue")
    two, log2 = make(redis_server.url, on_busy="queue")
    async with one.lifespan(None), two.lifespan(None):
        a, b = Wire(), Wire()
        first = asyncio.create_task(answer(one, "s", a, 30, 0.01))
        await until(lambda: len(a.parts) >= 3)
        await asyncio.wait_for(answer(two, "s", b, 3, 0), 5)
        await asyncio.wait_for(first, 3)
    assert a.text == "".join(f"w{i} " for i in range(30))
    assert b.text == "w0 w1 w2 "
    assert b.parts[0][0] >= a.parts[-1][0]
    (queued,) = log2.of(Event.STREAM_QUEUED)
    assert queued["prev_trace"] == log1.of(Event.STREAM_START)[0]["trace"]
    assert queued["waited_ms"] > 0
    assert log1.of(Event.STREAM_CANCELLED) == []


async def test_queue_past_its_wait_is_refused_across_workers(redis_server: RedisServer) -> None:
    """B on worker 2 waits its `queue_wait` for a session worker 1 keeps busy, then is
    refused (`queue_timeout`); A goes on."""
    one, _ = make(redis_server.url, on_busy="queue")
    two, log2 = make(redis_server.url, on_busy="queue", queue_wait=0.4)
    async with one.lifespan(None), two.lifespan(None):
        a = Wire()
        first = asyncio.create_task(answer(one, "s", a, 100, 0.01))
        await until(lambda: len(a.parts) >= 3)
        began = time.monotonic()
        with pytest.raises(SessionBusy) as refused:
            async with two.stream("s", Wire().write):
                pytest.fail("worker 2 streamed a session worker 1 was streaming")
        waited = time.monotonic() - began
        assert not first.done()
        await asyncio.wait_for(first, 5)
    assert 0.4 <= waited < 1.5
    assert refused.value.code == "queue_timeout"
    assert log2.of(Event.REQUEST_REJECTED)[0]["code"] == "queue_timeout"
    assert len(a.parts) == 100


async def test_racing_prompts_on_two_workers_under_reject_leave_exactly_one_stream(
    redis_server: RedisServer,
) -> None:
    """Ten prompts of one session at once, five per worker, into a free session: the
    claim is one script, so exactly one streams and nine are refused."""
    one, _ = make(redis_server.url, on_busy="reject")
    two, _ = make(redis_server.url, on_busy="reject")
    async with one.lifespan(None), two.lifespan(None):

        async def prompt(guard: StreamGuard) -> str:
            try:
                await answer(guard, "race", Wire(), 5, 0.01)
            except SessionBusy:
                return "refused"
            return "streamed"

        outcomes = await asyncio.wait_for(asyncio.gather(*(prompt(g) for g in (one, two) * 5)), 10)
    assert sorted(outcomes) == ["refused"] * 9 + ["streamed"]


async def test_one_workers_queued_prompts_go_first_come_first_served(
    redis_server: RedisServer,
) -> None:
    """A streams on worker 1; B, C and D queue on worker 2 in that order: once A ends
    they stream one after another, in the order they arrived, and each stream_queued
    names the prompts queued before it."""
    one, _ = make(redis_server.url, on_busy="queue")
    two, log2 = make(redis_server.url, on_busy="queue")
    async with one.lifespan(None), two.lifespan(None):
        a = Wire()
        first = asyncio.create_task(answer(one, "s", a, 20, 0.01))
        await until(lambda: len(a.parts) >= 3)
        wires = {name: Wire() for name in "BCD"}
        queued = []
        for wire in wires.values():
            queued.append(asyncio.create_task(answer(two, "s", wire, 3, 0.005)))
            await asyncio.sleep(0.03)  # arrival order B, C, D
        await asyncio.wait_for(asyncio.gather(first, *queued), 10)
    starts = sorted(wires, key=lambda name: wires[name].parts[0][0])
    assert starts == ["B", "C", "D"]
    for before, after in zip("BC", "CD", strict=True):
        assert wires[after].parts[0][0] >= wires[before].parts[-1][0]
    b, c, d = log2.of(Event.STREAM_QUEUED)
    # Each names what it waited for: A (worker 1's), then the ones queued before it here.
    assert str(d["prev_trace"]).split(",")[-2:] == [b["trace"], c["trace"]]
