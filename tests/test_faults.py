"""Each `--fault` really reproduces its bug: the failure shows on the wire and in the log."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from jarvis.synthetic import expected_text

from .streams import overlap, stream_chat

pytestmark = pytest.mark.e2e

LONG = "Long essay about quantum computing"
SHORT = "What is 2+2?"


def flushes_after(events: list[dict[str, str]], stream_id: str, marker_index: int) -> int:
    """Tokens flushed by `stream_id` after log position `marker_index` (its `flush` lines
    name its trace)."""
    trace = next(
        e["trace"] for e in events if e["event"] == "stream_start" and e["stream_id"] == stream_id
    )
    return sum(
        int(e["tokens"])
        for e in events[marker_index:]
        if e["event"] == "flush" and e["trace"] == trace
    )


async def test_healthy_server_never_emits_from_a_superseded_stream(server_factory) -> None:
    """Control for the faults below: no flush of A after B registers; A ends superseded."""
    server = server_factory("--token-rate", "100")
    a, b = await overlap(server.url, "ok")
    events = server.events()
    registered = next(
        i for i, e in enumerate(events)
        if e["event"] == "stream_registered" and e["stream_id"] == b.stream_id
    )  # fmt: skip
    assert flushes_after(events, a.stream_id, registered) == 0
    assert a.end_reason == "superseded"
    assert a.chunks[-1]["choices"][0]["finish_reason"] == "cancelled"


async def test_no_cancel_runs_two_streams_of_one_session_at_once(server_factory) -> None:
    """--fault no-cancel: no stream_cancelled; A keeps flushing tokens after B registered."""
    server = server_factory("--token-rate", "100", "--fault", "no-cancel")
    a, b = await overlap(server.url, "nc")
    events = server.events()
    assert not [e for e in events if e["event"] == "stream_cancelled"]
    registered = next(
        i for i, e in enumerate(events)
        if e["event"] == "stream_registered" and e["stream_id"] == b.stream_id
    )  # fmt: skip
    assert flushes_after(events, a.stream_id, registered) > 0
    assert a.end_reason == "completed"
    assert b.first_content_at() < a.events[-1][0], "A was still streaming while B streamed"


async def test_ignore_cancel_keeps_streaming_after_being_told_to_stop(server_factory) -> None:
    """--fault ignore-cancel: A is cancelled, B times out waiting, A streams on beside B."""
    server = server_factory("--token-rate", "100", "--fault", "ignore-cancel",
                            "--cancel-wait", "0.3")  # fmt: skip
    a, b = await overlap(server.url, "ic")
    events = server.events()
    names = [e["event"] for e in events]
    assert "stream_cancelled" in names
    assert "prev_stream_timeout_on_cancel" in names
    assert "stream_fenced" not in names, "the fault switches the fence off"
    registered = next(
        i for i, e in enumerate(events)
        if e["event"] == "stream_registered" and e["stream_id"] == b.stream_id
    )  # fmt: skip
    assert flushes_after(events, a.stream_id, registered) > 0
    assert a.text == expected_text(LONG, 120), "A ran to the end despite the cancel"


async def test_skip_cleanup_leaks_the_stream_and_stalls_the_session(server_factory) -> None:
    """--fault skip-cleanup: stream_end cleanup_done=False, /v1/streams keeps the stream,
    and the next prompt of the session times out waiting for it."""
    server = server_factory("--token-rate", "400", "--fault", "skip-cleanup",
                            "--cancel-wait", "0.3")  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        first = await stream_chat(client, server.url, SHORT, session="leak")
        assert first.done
        leaked = (await client.get(f"{server.url}/v1/streams")).json()
        assert leaked["active"] == 1
        assert leaked["sessions"]["leak"][0]["stream_id"] == first.stream_id
        second = await stream_chat(client, server.url, SHORT, session="leak")
    assert second.text == expected_text(SHORT)
    events = server.events()
    ends = [e for e in events if e["event"] == "stream_end"]
    assert {e["cleanup_done"] for e in ends} == {"False"}
    assert "event_buffers_cleaned" not in [e["event"] for e in events]
    timeout = server.wait_for_event("prev_stream_timeout_on_cancel", session="leak")
    assert int(timeout["waited_ms"]) >= 290


async def test_slow_cleanup_overruns_the_cancel_wait_and_is_fenced(server_factory) -> None:
    """--fault slow-cleanup: prev_stream_timeout_on_cancel, A fenced (no byte after B
    registered), A's stream_end comes well after the cancel bound."""
    server = server_factory("--token-rate", "100", "--fault", "slow-cleanup",
                            "--cancel-wait", "0.3")  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        registered = asyncio.Event()
        a_task = asyncio.create_task(
            stream_chat(client, server.url, LONG, session="sc", started=registered)
        )
        await asyncio.wait_for(registered.wait(), 5)
        await asyncio.sleep(0.3)
        b = await stream_chat(client, server.url, SHORT, session="sc")
        with contextlib.suppress(httpx.HTTPError):
            await asyncio.wait_for(a_task, 5)  # a fenced stream is cut without a terminator
    assert b.text == expected_text(SHORT)
    events = server.events()
    timeout = server.wait_for_event("prev_stream_timeout_on_cancel", session="sc")
    assert int(timeout["waited_ms"]) >= 290
    server.wait_for_event("stream_fenced", session="sc")
    a_end = server.wait_for_event("stream_end", session="sc", reason="superseded")
    assert int(a_end["duration_ms"]) >= 1150  # ~0.3 s streaming, then a ~0.95 s stalled cleanup
    registered = next(
        i for i, e in enumerate(events)
        if e["event"] == "stream_registered" and e["stream_id"] == b.stream_id
    )  # fmt: skip
    a_id = a_end["stream_id"]
    assert flushes_after(server.events(), a_id, registered) == 0, "fenced: nothing after B"


def test_blocking_flush_hangs_the_server_under_overlap(server_factory) -> None:
    """--fault blocking-flush: two streams flushing at once deadlock the loop; /healthz stops
    answering, and the watchdog logs loop_blocked with the stack inside the fault code."""
    server = server_factory("--token-rate", "200", "--fault", "blocking-flush",
                            "--watchdog-ms", "200")  # fmt: skip

    async def fire() -> None:
        async with httpx.AsyncClient(timeout=3) as client:
            tasks = [
                asyncio.create_task(stream_chat(client, server.url, LONG, session=s, deadline=3))
                for s in ("h1", "h2", "h1")
            ]
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(fire())
    start = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{server.url}/healthz", timeout=1.0)
    assert time.monotonic() - start < 2.0
    blocked = server.wait_for_event("loop_blocked", deadline_s=3.0)
    assert "blocking_flush" in blocked["stack"]
    assert "faults.py" in blocked["stack"]
    assert server.proc.poll() is None, "hung, not crashed: only a kill ends it"
