"""The stream lifecycle end to end, on a real `jarvis serve` subprocess.

These are the classic rapid-request test (docs/background.md) and the disconnect,
slow-reader, shutdown and upstream behaviours, proven by bytes on the wire and log lines.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import time

import httpx
import pytest

from jarvis.synthetic import expected_text

from .streams import chat_json, raw_request, stream_chat

pytestmark = pytest.mark.e2e

LONG = "Long essay about quantum computing"
SHORT = "What is 2+2?"


def lifecycle(events: list[dict[str, str]], stream_id: str, trace: str) -> list[str]:
    """The event names that belong to one stream, in log order."""
    return [
        e["event"]
        for e in events
        if e.get("stream_id") == stream_id or e.get("request_id") == stream_id
        or (e.get("trace") == trace and "request_id" not in e)
    ]  # fmt: skip


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(item == h for h in it) for item in needle)


async def test_rapid_requests_b_supersedes_a_five_rounds(server_factory) -> None:
    """A "Long essay", B "What is 2+2?" 50 ms later, same session, 5 rounds.

    Both responses end with [DONE]; A ends superseded; B's text is exactly the
    synthetic model's; the log holds the healthy supersede sequence for A then B.
    """
    server = server_factory("--token-rate", "100")
    async with httpx.AsyncClient(timeout=10) as client:
        for round_no in range(5):
            session = f"rapid-{round_no}"
            registered = asyncio.Event()
            a_task = asyncio.create_task(
                stream_chat(client, server.url, LONG, session=session, started=registered)
            )
            await asyncio.wait_for(registered.wait(), 5)  # A is registered: B comes 50 ms on
            await asyncio.sleep(0.05)
            b = await stream_chat(client, server.url, SHORT, session=session)
            a = await asyncio.wait_for(a_task, 5)
            assert a.done and b.done
            assert a.end_reason == "superseded"
            assert b.end_reason == "completed"
            assert b.text == expected_text(SHORT)
            assert expected_text(LONG).startswith(a.text), "A's partial text is a clean prefix"
            assert {c["id"] for c in b.chunks} == {b.stream_id}
            assert {c["id"] for c in a.chunks} == {a.stream_id}

    events = server.events()
    starts = [e for e in events if e["event"] == "stream_start"]
    assert len(starts) == 10
    for a_start, b_start in zip(starts[::2], starts[1::2], strict=True):
        a_id, b_id = a_start["stream_id"], b_start["stream_id"]
        names = [
            e["event"] + ("@A" if a_id in (e.get("stream_id"), e.get("request_id"))
                          or e.get("trace") == a_start["trace"] else "@B")
            for e in events
            if a_id in (e.get("stream_id"), e.get("request_id"))
            or b_id in (e.get("stream_id"), e.get("request_id"))
            or e.get("trace") in (a_start["trace"], b_start["trace"])
        ]  # fmt: skip
        expected = [
            "stream_start@A", "stream_registered@A",
            "stream_start@B", "stream_cancelled@A", "flush@A",
            "event_buffers_cleaned@A", "stream_end@A",
            "prev_stream_finished_cleanly@B", "flush@B",
            "event_buffers_cleaned@B", "stream_end@B",
        ]  # fmt: skip
        assert is_subsequence(expected, names), names
        # Nothing of A is flushed once B is registered.
        b_registered = names.index("stream_registered@B")
        assert not any(n.endswith("@A") and n.startswith("flush") for n in names[b_registered:])
    ends = [e for e in events if e["event"] == "stream_end"]
    assert all(e["cleanup_done"] == "True" for e in ends)
    assert sorted(e["reason"] for e in ends) == ["completed"] * 5 + ["superseded"] * 5
    streams = httpx.get(f"{server.url}/v1/streams", timeout=5).json()
    assert streams["active"] == 0


async def test_burst_of_prompts_in_one_session_leaves_exactly_one_survivor(
    server_factory,
) -> None:
    """Six prompts into one session within a few ms: one completes, five end superseded."""
    server = server_factory("--token-rate", "200")
    async with httpx.AsyncClient(timeout=10) as client:
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(
                stream_chat(client, server.url, f"Long essay {i}", session="burst", max_tokens=60)
            ))  # fmt: skip
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*tasks)
    reasons = [r.end_reason for r in results]
    assert reasons.count("completed") == 1, reasons
    assert reasons.count("superseded") == 5, reasons
    assert reasons[-1] == "completed"
    assert results[-1].text == expected_text("Long essay 5", 60)
    assert all(r.done for r in results)


async def test_other_sessions_are_not_disturbed_by_overlaps(server_factory) -> None:
    """Overlaps in session X never cancel session Y's stream, which completes intact."""
    server = server_factory("--token-rate", "200")
    async with httpx.AsyncClient(timeout=10) as client:
        y = asyncio.create_task(
            stream_chat(client, server.url, "Long essay y", session="Y", max_tokens=100)
        )
        for _ in range(3):
            asyncio.create_task(stream_chat(client, server.url, LONG, session="X"))  # noqa: RUF006
            await asyncio.sleep(0.03)
        y_result = await y
    assert y_result.end_reason == "completed"
    assert y_result.text == expected_text("Long essay y", 100)


@pytest.mark.parametrize("when", ["before_first_token", "mid_stream"])
@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_client_disconnect_cancels_and_cleans_up_within_one_second(
    server_factory, when: str, how: str
) -> None:
    """Disconnect (FIN or RST), before the first token or mid-stream: cleaned up within 1 s,
    and a new prompt in that same session then completes."""
    first_ms = "3000" if when == "before_first_token" else "10"
    server = server_factory("--first-token-ms", first_ms, "--token-rate", "50")
    sock = raw_request(server.port, chat_json(LONG), session="drop")
    received = sock.recv(65536)
    assert received.startswith(b"HTTP/1.1 200")
    if when == "mid_stream":
        deadline = time.monotonic() + 5
        while b"content" not in received and time.monotonic() < deadline:
            received += sock.recv(65536)
        assert b"content" in received
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dropped_at = time.monotonic()
    sock.close()
    end = server.wait_for_event("stream_end", deadline_s=1.0, session="drop")
    assert time.monotonic() - dropped_at < 1.0
    assert end["reason"] == "disconnected"
    assert end["cleanup_done"] == "True"
    assert httpx.get(f"{server.url}/v1/streams", timeout=5).json()["active"] == 0
    async with httpx.AsyncClient(timeout=10) as client:
        again = await stream_chat(client, server.url, SHORT, session="drop", deadline=8)
    assert again.text == expected_text(SHORT)


async def test_slow_reader_is_ended_by_send_timeout_without_slowing_others(
    server_factory,
) -> None:
    """A client that stops reading is ended with reason=send_timeout; another session streams
    on undisturbed meanwhile."""
    # Token-by-token chunks (~170 bytes per token) fill the loopback buffers within ~0.1 s.
    server = server_factory("--token-rate", "0", "--send-timeout", "1", "--flush-ms", "0")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    body = chat_json("Long essay that nobody reads", max_tokens=1_000_000)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"X-Session-Id: slow\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            other = await stream_chat(
                client, server.url, "Long essay other", session="fast", max_tokens=300
            )
        assert other.text == expected_text("Long essay other", 300)
        end = server.wait_for_event("stream_end", deadline_s=8.0, session="slow")
        assert end["reason"] == "send_timeout"
        assert end["cleanup_done"] == "True"
    finally:
        sock.close()


async def test_sigterm_ends_open_streams_with_a_terminal_event_and_exits_in_bound(
    server_factory,
) -> None:
    """Graceful shutdown: the open stream gets end_reason=shutdown and [DONE]; exit within
    the bound; the log has stream_end reason=shutdown and server_stop."""
    server = server_factory("--token-rate", "20", "--shutdown-timeout", "3")
    async with httpx.AsyncClient(timeout=10) as client:
        task = asyncio.create_task(stream_chat(client, server.url, LONG, session="bye"))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        result = await asyncio.wait_for(task, 5)
    code = await asyncio.to_thread(server.proc.wait, 6)
    assert time.monotonic() - started < 3 + 1.5
    # uvicorn re-raises the signal after a graceful shutdown, as a well-behaved daemon does.
    assert code in (0, -signal.SIGTERM)
    assert result.end_reason == "shutdown"
    assert result.done
    events = server.events()
    assert any(e["event"] == "stream_end" and e["reason"] == "shutdown" for e in events)
    assert events[-1]["event"] == "server_stop"


async def test_upstream_mode_proxies_and_cancelling_closes_the_upstream_request(
    server_factory,
) -> None:
    """--upstream to a second jarvis: text passes through; superseding the proxied stream
    closes its upstream request (the upstream logs reason=disconnected)."""
    upstream = server_factory("--token-rate", "50", name="upstream")
    proxy = server_factory("--upstream", upstream.url, "--flush-ms", "20", name="proxy")
    async with httpx.AsyncClient(timeout=10) as client:
        whole = await stream_chat(client, proxy.url, SHORT, session="p0")
        assert whole.text == expected_text(SHORT)
        a_task = asyncio.create_task(stream_chat(client, proxy.url, LONG, session="p1"))
        await asyncio.sleep(0.4)
        b = await stream_chat(client, proxy.url, SHORT, session="p1")
        a = await asyncio.wait_for(a_task, 5)
    assert a.end_reason == "superseded"
    assert b.text == expected_text(SHORT)
    ends = [
        e for e in upstream.events() if e["event"] == "stream_end" and e["reason"] == "disconnected"
    ]
    assert len(ends) == 1, "the superseded proxy stream must close its upstream request"


async def test_upstream_unreachable_ends_the_stream_with_an_error_event(server_factory) -> None:
    """A dead upstream: the client gets finish_reason=error and [DONE], never a hang."""
    from .conftest import free_port

    proxy = server_factory("--upstream", f"http://127.0.0.1:{free_port()}", name="proxy")
    async with httpx.AsyncClient(timeout=10) as client:
        result = await stream_chat(client, proxy.url, SHORT, session="e")
    assert result.end_reason == "error"
    assert result.done
    assert "upstream" in json.dumps(result.chunks[-1])
    assert proxy.wait_for_event("upstream_error")


async def test_non_streaming_request_returns_the_whole_completion(shared_server) -> None:
    """stream=false: one chat.completion JSON with the exact text and usage."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{shared_server.url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": SHORT}]},
        )
    body = response.json()
    assert response.headers["x-stream-id"] == body["id"]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == expected_text(SHORT)
    assert body["usage"]["completion_tokens"] == 8


async def test_json_log_format_writes_one_object_per_line_with_the_same_keys(
    server_factory,
) -> None:
    """--log-format json: every line is a JSON object with ts, level, event first."""
    server = server_factory("--log-format", "json", "--token-rate", "400")
    async with httpx.AsyncClient(timeout=10) as client:
        await stream_chat(client, server.url, SHORT, session="js")
    server.barrier()
    records = [json.loads(line) for line in server.log_path.read_text().splitlines()]
    assert all(list(r)[:3] == ["ts", "level", "event"] for r in records)
    end = next(r for r in records if r["event"] == "stream_end")
    assert end["cleanup_done"] is True
    assert end["session"] == "js"
