"""The shared registry on a real redis-server: two guards stand for two processes (each
its own connection, subscription and registry); one stream per session holds across them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jarvis import EndReason, RegistryUnavailable, StreamEnd, StreamGuard
from jarvis._redis_registry import RedisRegistry
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import Event

from .redis_server import RedisServer

pytestmark = pytest.mark.timeout(20)


async def until(condition: Any, within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.002)


def make(url: str, **settings: Any) -> tuple[StreamGuard, RecordingLog]:
    log = RecordingLog()
    return StreamGuard(log=log, registry=url, flush_ms=0, **settings), log  # type: ignore[arg-type]


class Wire:
    """What one stream wrote, and its end."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.end: StreamEnd | None = None

    async def write(self, text: str) -> None:
        self.parts.append(text)

    async def on_end(self, end: StreamEnd) -> None:
        self.end = end


async def status_of_a_prompt(guard: StreamGuard, session: str) -> int:
    """The status `guard.response` answers a one-token prompt with (over raw ASGI)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def tokens() -> AsyncIterator[str]:
        yield "x"

    await guard.response(session, tokens())({"type": "http"}, receive, send)
    return int(sent[0]["status"])


async def stream_until_cancelled(guard: StreamGuard, session: str, wire: Wire) -> None:
    async with guard.stream(session, wire.write, end=wire.on_end) as s:
        while await s.send("a"):
            await asyncio.sleep(0.005)


async def test_a_prompt_on_another_process_supersedes_the_sessions_stream(
    redis_server: RedisServer,
) -> None:
    """A streams on guard 1; B for the same session arrives on guard 2: A is cancelled
    across processes, B waits for A's release (done), then streams; the logs say so."""
    one, log1 = make(redis_server.url)
    two, log2 = make(redis_server.url)
    async with one.lifespan(None), two.lifespan(None):
        a = Wire()
        first = asyncio.create_task(stream_until_cancelled(one, "s", a))
        await until(lambda: len(a.parts) >= 3)
        b = Wire()
        async with two.stream("s", b.write, end=b.on_end) as s:
            assert await s.send("b")
        await asyncio.wait_for(first, 3)
    assert a.end is not None and a.end.reason is EndReason.SUPERSEDED
    assert b.parts == ["b"] and b.end is not None and b.end.reason is EndReason.COMPLETED
    (cancel,) = log1.of(Event.STREAM_CANCELLED)
    assert cancel["reason"] == "registry_new_stream"
    (clean,) = log2.of(Event.PREV_STREAM_FINISHED_CLEANLY)
    assert clean["prev_trace"] == log1.of(Event.STREAM_START)[0]["trace"]
    generations = [r["generation"] for r in log1.of(Event.STREAM_REGISTERED)]
    generations += [r["generation"] for r in log2.of(Event.STREAM_REGISTERED)]
    assert generations == sorted(generations) and len(set(generations)) == 2


async def test_racing_prompts_across_processes_leave_exactly_one_stream(
    redis_server: RedisServer,
) -> None:
    """Six prompts of one session at once over two processes: exactly one completes,
    every other ends superseded, and nothing deadlocks."""
    one, _ = make(redis_server.url)
    two, _ = make(redis_server.url)
    async with one.lifespan(None), two.lifespan(None):
        wires = [Wire() for _ in range(6)]

        async def prompt(guard: StreamGuard, wire: Wire) -> None:
            async with guard.stream("race", wire.write, end=wire.on_end) as s:
                for _ in range(20):
                    if not await s.send("x"):
                        return
                    await asyncio.sleep(0.005)

        await asyncio.wait_for(
            asyncio.gather(*(prompt((one, two)[i % 2], w) for i, w in enumerate(wires))), 10
        )
    reasons = sorted(w.end.reason.value for w in wires if w.end is not None)
    assert reasons.count("completed") == 1, reasons
    assert reasons.count("superseded") == 5, reasons


async def test_a_stream_that_overruns_on_another_process_is_fenced_there(
    redis_server: RedisServer,
) -> None:
    """A ignores its cancel (its code never checks): past cancel_wait, B goes ahead and
    A's own process fences it, so nothing more of A is written."""
    one, log1 = make(redis_server.url, cancel_wait=0.2)
    two, log2 = make(redis_server.url, cancel_wait=0.2)
    async with one.lifespan(None), two.lifespan(None):
        a = Wire()
        release = asyncio.Event()

        async def stubborn() -> None:
            async with one.stream("f", a.write, end=a.on_end) as s:
                await s.send("a")
                await release.wait()  # does not look at s.cancelled: the bug
                await s.send("late")

        first = asyncio.create_task(stubborn())
        await until(lambda: a.parts == ["a"])
        b = Wire()
        async with two.stream("f", b.write, end=b.on_end) as s:
            await s.send("b")
        # The fence travels from two's process to one's through Redis: A overruns until it
        # lands (on a loaded machine, later than B's short answer ends).
        await until(lambda: log1.of(Event.STREAM_FENCED))
        release.set()
        await asyncio.wait_for(first, 3)
    assert a.parts == ["a"], "nothing of a fenced stream after its successor registered"
    assert len(log2.of(Event.PREV_STREAM_TIMEOUT_ON_CANCEL)) == 1
    (fenced,) = log1.of(Event.STREAM_FENCED)
    assert fenced["by_trace"] == log2.of(Event.STREAM_START)[0]["trace"]


async def test_a_session_left_by_a_dead_process_is_usable_within_the_cancel_wait(
    redis_server: RedisServer,
) -> None:
    """A process dies holding a session (its owner key stays, nobody answers the cancel):
    the next prompt waits at most cancel_wait, then takes the session."""
    dead, _ = make(redis_server.url)
    live, log = make(redis_server.url, cancel_wait=0.3)
    await dead.parts.registry.start()
    handle_wire = Wire()
    stream = dead.stream("orphan", handle_wire.write)
    await stream.__aenter__()
    await dead.parts.registry.stop()  # gone without releasing: no done will ever come
    async with live.lifespan(None):
        started = asyncio.get_running_loop().time()
        b = Wire()
        async with live.stream("orphan", b.write, end=b.on_end) as s:
            assert await s.send("b")
        assert asyncio.get_running_loop().time() - started < 0.3 + 0.5
    assert b.end is not None and b.end.reason is EndReason.COMPLETED
    assert len(log.of(Event.PREV_STREAM_TIMEOUT_ON_CANCEL)) == 1


async def test_redis_down_refuses_new_prompts_with_503_and_recovers(
    redis_server: RedisServer,
) -> None:
    """Redis goes away: the next prompt fails (registry_unavailable), prompts after it get
    a clean 503 without a stream; Redis back: registry_recovered, and prompts stream."""
    guard, log = make(redis_server.url)
    async with guard.lifespan(None):
        redis_server.stop()
        with pytest.raises(RegistryUnavailable):
            async with guard.stream("down", Wire().write):
                pass
        await until(guard.parts.registry.unavailable)
        assert await status_of_a_prompt(guard, "down") == 503
        redis_server.start()
        await until(lambda: not guard.parts.registry.unavailable(), within=5)
        wire = Wire()
        async with guard.stream("down", wire.write, end=wire.on_end) as s:
            assert await s.send("back")
    assert wire.parts == ["back"]
    assert log.of(Event.REGISTRY_UNAVAILABLE)
    (recovered,) = log.of(Event.REGISTRY_RECOVERED)
    assert recovered["down_ms"] >= 0


async def test_an_unreachable_registry_at_start_is_a_clear_error() -> None:
    """Nothing listens at the URL: entering the lifespan raises RegistryUnavailable
    naming the URL, instead of serving prompts that would all fail."""
    from .conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    guard, _ = make(url)
    with pytest.raises(RegistryUnavailable, match=url.replace("/", ".")):
        async with guard.lifespan(None):
            pass
    assert isinstance(guard.parts.registry, RedisRegistry)


async def test_a_registry_told_to_ride_out_an_outage_starts_down_and_recovers(
    redis_server: RedisServer,
) -> None:
    """`start_down_ok` (a fleet worker's registry): Redis away at the start, the lifespan
    starts anyway, refuses prompts with a 503 and logs `registry_unavailable op=start`;
    Redis back on its port, the registry notices by itself and prompts stream."""
    redis_server.stop()
    guard, log = make(redis_server.url)
    registry = guard.parts.registry
    assert isinstance(registry, RedisRegistry)
    registry.start_down_ok = True
    async with guard.lifespan(None):
        assert registry.unavailable()
        (down,) = log.of(Event.REGISTRY_UNAVAILABLE)
        assert down["op"] == "start" and "ConnectionError" in down["message"]
        assert await status_of_a_prompt(guard, "s") == 503
        redis_server.start()
        await until(lambda: not registry.unavailable(), within=5)
        wire = Wire()
        async with guard.stream("s", wire.write, end=wire.on_end) as s:
            assert await s.send("back")
    assert wire.parts == ["back"]
    assert len(log.of(Event.REGISTRY_RECOVERED)) == 1


@pytest.mark.parametrize("start_down_ok", [False, True])
async def test_a_subscription_refused_at_start_raises_or_is_retried(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, start_down_ok: bool
) -> None:
    """Redis answers the ping but the subscription fails (Redis going away mid-start).
    By default the start raises, leaving no listener behind; with `start_down_ok` it
    starts down (`op=start`), and the listener, retrying, subscribes once it can: a
    cancel from another process reaches this one again."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    guard, log = make(redis_server.url)
    registry = guard.parts.registry
    assert isinstance(registry, RedisRegistry)
    registry.start_down_ok = start_down_ok
    refusing = [True]
    real = registry._redis.pubsub

    def pubsub(**kwargs: Any) -> Any:
        channel = real(**kwargs)
        if refusing[0]:

            async def refuse(*_: Any) -> None:
                raise RedisConnectionError("subscription refused")

            channel.subscribe = refuse
        return channel

    monkeypatch.setattr(registry._redis, "pubsub", pubsub)
    if not start_down_ok:
        with pytest.raises(RegistryUnavailable, match="cannot subscribe"):
            await registry.start()
        return
    other, _ = make(redis_server.url)
    async with guard.lifespan(None), other.lifespan(None):
        (down,) = log.of(Event.REGISTRY_UNAVAILABLE)
        assert down["op"] == "start"
        refusing[0] = False
        await until(lambda: log.of(Event.REGISTRY_RECOVERED) != [], within=5)
        a = Wire()
        first = asyncio.create_task(stream_until_cancelled(guard, "s", a))
        await until(lambda: len(a.parts) >= 2)
        # The other process's prompt supersedes A only if this one hears its signal.
        end = asyncio.get_running_loop().time() + 5
        b = Wire()
        while True:
            async with other.stream("s", b.write, end=b.on_end) as s:
                await s.send("b")
            if first.done() or asyncio.get_running_loop().time() > end:
                break
            await asyncio.sleep(0.2)  # the listener's retry may not have subscribed yet
        await asyncio.wait_for(first, 3)
    assert a.end is not None and a.end.reason is EndReason.SUPERSEDED


async def test_a_burst_beyond_the_connection_pool_waits_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    """300 prompts at once into one process (more than its pool of connections): they
    wait for a connection, all stream, and the registry is never taken for down."""
    guard, log = make(redis_server.url)
    async with guard.lifespan(None):
        wires = [Wire() for _ in range(300)]

        async def prompt(n: int) -> None:
            async with guard.stream(f"burst-{n}", wires[n].write, end=wires[n].on_end) as s:
                await s.send("x")

        await asyncio.wait_for(asyncio.gather(*(prompt(n) for n in range(300))), 15)
    assert all(w.end is not None and w.end.reason is EndReason.COMPLETED for w in wires)
    assert log.of(Event.REGISTRY_UNAVAILABLE) == []


async def test_a_failed_operation_recovers_without_a_dropped_subscription(
    redis_server: RedisServer,
) -> None:
    """A register that fails while the subscription stays up (here: a pause longer than
    the operation timeout) marks the registry down; the heartbeat sees Redis answer again
    and clears it, so the process does not refuse prompts for good."""
    guard, log = make(redis_server.url)
    async with guard.lifespan(None):
        registry = guard.parts.registry
        assert isinstance(registry, RedisRegistry)
        registry._went_down("register", "s", TimeoutError("slow"))
        assert registry.unavailable()
        await until(lambda: not registry.unavailable(), within=3)
        wire = Wire()
        async with guard.stream("s", wire.write, end=wire.on_end) as s:
            assert await s.send("ok")
    assert len(log.of(Event.REGISTRY_RECOVERED)) == 1


async def test_registrations_leave_no_waiters_behind(redis_server: RedisServer) -> None:
    """Each prompt arms a waiter for its session's `done`; whether or not one came, none is
    left once the prompt is registered (a session used once must not cost memory for good)."""
    guard, _ = make(redis_server.url)
    async with guard.lifespan(None):
        for n in range(50):
            async with guard.stream(f"once-{n}", Wire().write) as s:
                await s.send("x")
        registry = guard.parts.registry
        assert isinstance(registry, RedisRegistry)
        assert registry._waiters == {}
