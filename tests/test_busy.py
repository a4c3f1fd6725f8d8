"""A busy session under each `on_busy` policy, in one process: `reject` answers a new
prompt with 409 and `Retry-After` and leaves the running answer alone; `queue` holds it,
first come first served and bounded, until the running answer has ended."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jarvis import ConfigError, EndReason, SessionBusy, StreamEnd, StreamGuard
from jarvis._busy import ENDED_KEPT, SessionQueue
from jarvis.eventlog import RecordingLog
from jarvis.vocabulary import Event

from .test_guard import HTTP, Client, data_lines, until

pytestmark = pytest.mark.timeout(10)


def make(**settings: Any) -> tuple[StreamGuard, RecordingLog]:
    log = RecordingLog()
    return StreamGuard(log=log, flush_ms=0, **settings), log  # type: ignore[arg-type]


async def gated(*items: str, gate: asyncio.Event) -> AsyncIterator[str]:
    """The first item at once, the rest once `gate` opens: a stream that stays busy."""
    for i, item in enumerate(items):
        if i:
            await gate.wait()
        await asyncio.sleep(0)
        yield item


def refused_count(guard: StreamGuard, code: str) -> float | None:
    """`jarvis_requests_refused_total{code=...}` as a scrape of /metrics would read it."""
    return guard.prometheus.get_sample_value("jarvis_requests_refused_total", {"code": code})


def text_of(body: bytes) -> str:
    chunks = [json.loads(c) for c in data_lines(body) if c != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


async def start_a(guard: StreamGuard, gate: asyncio.Event) -> tuple[Client, asyncio.Task[None]]:
    """A streams in session `s` and stays busy until `gate` opens."""
    a = Client()
    task = asyncio.create_task(
        guard.response("s", gated("a1", "a2", "a3", gate=gate))(HTTP, a.receive, a.send)
    )
    await until(a.first_body.is_set)
    return a, task


async def test_reject_answers_409_with_retry_after_and_leaves_the_running_answer_whole() -> None:
    """Under reject, B in a busy session gets a 409 at once (OpenAI error body,
    `Retry-After`), logged as request_rejected and never as a stream; A is not cancelled
    and delivers its whole text."""
    guard, log = make(on_busy="reject")
    gate = asyncio.Event()
    a, first = await start_a(guard, gate)
    b = Client()
    began = time.monotonic()
    await guard.response("s", gated("b1", gate=gate))(HTTP, b.receive, b.send)
    assert time.monotonic() - began < 0.2
    assert b.status == 409
    assert b.headers["retry-after"] == "1"
    error = json.loads(b.body)["error"]
    assert error["code"] == "session_busy"
    assert "s is still answering" in error["message"]
    (rejected,) = log.of(Event.REQUEST_REJECTED)
    assert (rejected["status"], rejected["code"], rejected["session"]) == (409, "session_busy", "s")
    assert rejected["trace"] == b.headers["x-trace-id"]
    assert refused_count(guard, "session_busy") == 1.0
    gate.set()
    await asyncio.wait_for(first, 2)
    assert text_of(a.body) == "a1a2a3"
    assert log.of(Event.STREAM_CANCELLED) == []
    assert [e["reason"] for e in log.of(Event.STREAM_END)] == ["completed"]
    assert len(log.of(Event.STREAM_START)) == 1
    assert guard.live_count() == 0


async def test_reject_lets_the_next_prompt_in_once_the_session_is_free() -> None:
    """A refusal is not sticky: the prompt after A's end streams."""
    guard, _ = make(on_busy="reject")
    gate = asyncio.Event()
    gate.set()
    a = Client()
    await guard.response("s", gated("a1", gate=gate))(HTTP, a.receive, a.send)
    b = Client()
    await guard.response("s", gated("b1", gate=gate))(HTTP, b.receive, b.send)
    assert (a.status, b.status) == (200, 200)
    assert text_of(b.body) == "b1"


async def test_reject_raises_session_busy_from_a_raw_stream_and_logs_it() -> None:
    """`guard.stream` under reject raises SessionBusy (409, Retry-After) on entry and
    logs request_rejected; the running stream goes on."""
    guard, log = make(on_busy="reject")
    parts: list[str] = []

    async def write(text: str) -> None:
        parts.append(text)

    async with guard.stream("s", write) as a:
        await a.send("a1")
        with pytest.raises(SessionBusy) as refused:
            async with guard.stream("s", write):
                pytest.fail("a busy session let a second stream in")
        assert not a.cancelled
        await a.send("a2")
    assert refused.value.status == 409
    assert refused.value.headers == {"Retry-After": "1"}
    assert parts == ["a1", "a2"]
    (rejected,) = log.of(Event.REQUEST_REJECTED)
    assert rejected["code"] == "session_busy"
    assert refused_count(guard, "session_busy") == 1.0


async def test_queue_starts_b_only_after_a_has_ended_and_logs_the_wait() -> None:
    """Under queue, B sends nothing while A streams; once A has ended B streams its whole
    answer. The log: stream_queued (waited_ms, naming A) before B's stream_start, which
    follows A's stream_end; nothing cancelled."""
    guard, log = make(on_busy="queue")
    gate = asyncio.Event()
    a, first = await start_a(guard, gate)
    b = Client()
    second = asyncio.create_task(
        guard.response("s", gated("b1", "b2", gate=gate))(HTTP, b.receive, b.send)
    )
    await asyncio.sleep(0.15)
    assert b.messages == []  # not even a response head while A streams
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 2)
    assert (a.status, b.status) == (200, 200)
    assert (text_of(a.body), text_of(b.body)) == ("a1a2a3", "b1b2")
    (queued,) = log.of(Event.STREAM_QUEUED)
    a_trace = log.of(Event.STREAM_START)[0]["trace"]
    assert queued["prev_trace"] == a_trace
    assert queued["waited_ms"] >= 100
    waits = guard.prometheus.get_sample_value("jarvis_queue_wait_seconds_count")
    assert waits == 1.0
    assert guard.prometheus.get_sample_value("jarvis_queue_wait_seconds_sum") >= 0.1
    names = [(e.value, f.get("trace")) for e, f in log.records]
    b_trace = b.headers["x-trace-id"]
    assert names.index(("stream_end", a_trace)) < names.index(("stream_queued", b_trace))
    assert names.index(("stream_queued", b_trace)) < names.index(("stream_start", b_trace))
    assert log.of(Event.STREAM_CANCELLED) == []
    assert [e["reason"] for e in log.of(Event.STREAM_END)] == ["completed", "completed"]


async def test_queue_past_its_wait_answers_409_queue_timeout_and_a_runs_on() -> None:
    """A queued prompt whose session stays busy for `queue_wait` is refused (409,
    `queue_timeout`, Retry-After) after that wait, not before; A is untouched."""
    guard, log = make(on_busy="queue", queue_wait=0.3)
    gate = asyncio.Event()
    a, first = await start_a(guard, gate)
    b = Client()
    began = time.monotonic()
    await guard.response("s", gated("b1", gate=gate))(HTTP, b.receive, b.send)
    waited = time.monotonic() - began
    assert 0.3 <= waited < 1.0
    assert b.status == 409
    assert b.headers["retry-after"] == "1"
    assert json.loads(b.body)["error"]["code"] == "queue_timeout"
    (rejected,) = log.of(Event.REQUEST_REJECTED)
    assert (rejected["status"], rejected["code"]) == (409, "queue_timeout")
    assert refused_count(guard, "queue_timeout") == 1.0
    assert log.of(Event.STREAM_QUEUED) == []
    gate.set()
    await asyncio.wait_for(first, 2)
    assert text_of(a.body) == "a1a2a3"


async def test_queued_prompts_start_first_come_first_served() -> None:
    """Three prompts queued behind A run one at a time, in the order they arrived, each
    after the one before it ended."""
    guard, log = make(on_busy="queue")
    order: list[str] = []
    gate = asyncio.Event()

    async def prompt(name: str) -> None:
        async def write(text: str) -> None:
            order.append(text)

        async with guard.stream("s", write, trace=name) as s:
            await s.send(f"{name}-start")
            if name == "A":
                await gate.wait()
            await asyncio.sleep(0.01)
            await s.send(f"{name}-end")

    tasks = [asyncio.create_task(prompt("A"))]
    await until(lambda: order == ["A-start"])
    for name in ("B", "C", "D"):
        tasks.append(asyncio.create_task(prompt(name)))
        await asyncio.sleep(0.02)  # arrival order B, C, D
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 3)
    assert order == [f"{n}-{p}" for n in "ABCD" for p in ("start", "end")]
    assert [r["trace"] for r in log.of(Event.STREAM_QUEUED)] == ["B", "C", "D"]
    assert [r["prev_trace"] for r in log.of(Event.STREAM_QUEUED)] == ["A", "A,B", "A,B,C"]


async def test_a_queued_prompt_whose_client_leaves_stops_waiting_and_the_next_moves_up() -> None:
    """B leaves while it waits: it ends `disconnected` at once without touching A, and C,
    queued behind it, still gets its turn once A ends."""
    guard, log = make(on_busy="queue")
    gate = asyncio.Event()
    a, first = await start_a(guard, gate)
    b, c = Client(), Client()
    second = asyncio.create_task(
        guard.response("s", gated("b1", gate=gate))(HTTP, b.receive, b.send)
    )
    await asyncio.sleep(0.02)
    third = asyncio.create_task(
        guard.response("s", gated("c1", gate=gate))(HTTP, c.receive, c.send)
    )
    await asyncio.sleep(0.02)
    b.gone.set()
    await asyncio.wait_for(second, 1)
    assert not first.done()
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, third), 2)
    assert text_of(a.body) == "a1a2a3"
    assert text_of(c.body) == "c1"
    ends = sorted(e["reason"] for e in log.of(Event.STREAM_END))
    assert ends == ["completed", "completed", "disconnected"]
    cancelled = log.of(Event.STREAM_CANCELLED)
    assert [r["reason"] for r in cancelled] == ["client_disconnected"]
    assert guard.live_count() == 0


async def test_shutdown_ends_a_queued_prompt_too() -> None:
    """The guard's shutdown stops prompts waiting in the queue as well as live streams:
    nothing waits out its queue wait."""
    guard, log = make(on_busy="queue", queue_wait=20)
    ends: list[StreamEnd] = []

    async def hold(name: str) -> None:
        async def end(e: StreamEnd) -> None:
            ends.append(e)

        async with guard.stream("s", lambda _: asyncio.sleep(0), end=end, trace=name) as s:
            while await s.send("x"):
                await asyncio.sleep(0.01)

    first = asyncio.create_task(hold("A"))
    await until(lambda: guard.live_count() == 1)
    second = asyncio.create_task(hold("B"))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    assert await guard.shutdown(2) == 0
    await asyncio.wait_for(asyncio.gather(first, second), 2)
    assert time.monotonic() - began < 1.5
    assert sorted(r["reason"] for r in log.of(Event.STREAM_END)) == ["shutdown", "shutdown"]
    assert ends and {e.reason for e in ends} == {EndReason.SHUTDOWN}


async def test_sessions_do_not_queue_behind_each_other() -> None:
    """The policy is per session: a busy session holds nobody else's prompt."""
    guard, _ = make(on_busy="queue")
    gate = asyncio.Event()
    _, first = await start_a(guard, gate)
    other = Client()
    await asyncio.wait_for(
        guard.response("t", gated("t1", gate=asyncio.Event()))(HTTP, other.receive, other.send),
        1,
    )
    assert text_of(other.body) == "t1"
    gate.set()
    await asyncio.wait_for(first, 2)


def test_a_bad_policy_is_a_config_error_naming_the_flag() -> None:
    """on_busy takes supersede, reject or queue; the queue wait must be positive."""
    with pytest.raises(ConfigError, match=r"on_busy \(--on-busy\) must be supersede, reject"):
        StreamGuard(on_busy="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"queue_wait \(--queue-wait\)"):
        StreamGuard(on_busy="queue", queue_wait=0)


async def test_a_line_remembers_only_the_newest_ended_streams() -> None:
    """A session that never stops queueing keeps a bounded list of the streams that ended
    meanwhile: a waiter's `prev_trace` names the newest ones, the memory stays flat."""
    line = SessionQueue()
    turn = line.join("s")
    mark = line.mark("s")
    for n in range(ENDED_KEPT + 10):
        line.ended("s", f"t{n}")
    since = line.ended_since("s", mark)
    assert since == [f"t{n}" for n in range(10, ENDED_KEPT + 10)]
    later = line.mark("s")
    line.ended("s", "last")
    assert line.ended_since("s", later) == ["last"]
    line.leave("s", turn)
    assert line.mark("s") == 0 and repr(line) == "<SessionQueue sessions=0 waiting=0>"
