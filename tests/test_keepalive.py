"""The keepalive, in one process: a silent stream writes `: ping` comments every `ping`
seconds, never while tokens flow, never after its end, and no reader takes them for text."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jarvis import StreamEnd, StreamGuard
from jarvis._emitter import PING
from jarvis.eventlog import RecordingLog
from jarvis.synthetic import expected_text

from .idle_proxy import IdleCuttingProxy
from .test_guard import HTTP, Client, data_lines

pytestmark = pytest.mark.timeout(10)  # the e2e test below says its own


def make(**settings: Any) -> StreamGuard:
    return StreamGuard(log=RecordingLog(), flush_ms=0, **settings)  # type: ignore[arg-type]


async def paced(first_after: float, *items: str, every: float = 0.0) -> AsyncIterator[str]:
    """The first item after `first_after` seconds of silence, the rest `every` apart."""
    await asyncio.sleep(first_after)
    for i, item in enumerate(items):
        if i:
            await asyncio.sleep(every)
        yield item


def bodies(client: Client) -> list[bytes]:
    return [m.get("body", b"") for m in client.messages[1:]]


async def test_a_slow_first_token_is_preceded_by_pings_every_interval() -> None:
    """A first token 0.55 s late with ping 0.2 s: two pings, each its own write, before
    the first chunk, none after; the text is whole."""
    guard = make(ping=0.2)
    client = Client()
    await guard.response("s", paced(0.55, "a", "b"))(HTTP, client.receive, client.send)
    sent = bodies(client)
    first_data = next(i for i, b in enumerate(sent) if b"data:" in b)
    assert sent[:first_data] == [PING, PING]
    assert PING not in sent[first_data:]
    assert "".join(data_lines(client.body)[:-1]).count('"content"') == 2
    assert client.messages[-1]["more_body"] is False


async def test_no_ping_while_tokens_flow() -> None:
    """Tokens 50 ms apart for 0.6 s with ping 0.2 s: the silence never reaches the
    interval, so not one ping."""
    guard = make(ping=0.2)
    client = Client()
    tokens = paced(0.0, *[f"t{i}" for i in range(12)], every=0.05)
    await guard.response("s", tokens)(HTTP, client.receive, client.send)
    assert PING not in bodies(client)
    assert len(data_lines(client.body)) == 12 + 2  # the tokens, the terminal chunk, [DONE]


async def test_ping_zero_never_pings() -> None:
    """`ping=0` switches the keepalive off: a silent stream stays silent."""
    guard = make(ping=0)
    client = Client()
    await guard.response("s", paced(0.3, "a"))(HTTP, client.receive, client.send)
    assert PING not in bodies(client)


async def test_pings_stop_with_the_stream() -> None:
    """Once the response has ended nothing more is written, ping included, and a stream
    superseded while silent stops pinging at its end."""
    guard = make(ping=0.05)
    a, b = Client(), Client()
    first = asyncio.create_task(guard.response("s", paced(5.0, "never"))(HTTP, a.receive, a.send))
    await asyncio.sleep(0.2)
    assert bodies(a).count(PING) >= 2
    await guard.response("s", paced(0.0, "b"))(HTTP, b.receive, b.send)
    await asyncio.wait_for(first, 2)
    ended = len(a.messages)
    assert a.messages[-1]["more_body"] is False
    await asyncio.sleep(0.2)
    assert len(a.messages) == ended


async def test_a_stream_that_is_not_sse_gets_no_ping() -> None:
    """A comment is SSE: an encoder of another media type is never given one."""

    class Ndjson:
        media_type = "application/x-ndjson"

        def head(self) -> bytes:
            return b""

        def content(self, text: str) -> bytes:
            return text.encode() + b"\n"

        def end(self, end: StreamEnd) -> bytes:
            return b""

    guard = make(ping=0.05)
    client = Client()
    ndjson = guard.response("s", paced(0.3, "a"), encode=lambda _: Ndjson())
    await ndjson(HTTP, client.receive, client.send)
    assert client.headers["content-type"] == "application/x-ndjson"
    assert PING not in bodies(client)


async def test_the_ping_write_is_bounded_like_the_other_writes() -> None:
    """A client that stops reading mid-ping: the ping's write is cut at `send_timeout`,
    the stream ends `send_timeout`, and the loop never blocks meanwhile."""
    guard = make(ping=0.05, send_timeout=0.3)
    stuck = asyncio.Event()
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message.get("body") == PING:
            stuck.set()
            await asyncio.sleep(30)  # a full socket buffer

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    began = time.monotonic()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(ticker())
    await asyncio.wait_for(guard.response("s", paced(5.0, "x"))(HTTP, receive, send), 3)
    beat.cancel()
    assert stuck.is_set()
    assert time.monotonic() - began < 2.0
    assert ticks > 20  # the loop ran while the ping was stuck
    assert guard.live_count() == 0


# -- through a proxy that cuts idle connections (a real server) -----------------------

PROMPT = "What is 2+2?"


async def through(url: str) -> tuple[str, bool, int, str]:
    """One streamed answer through `url`: its text, whether [DONE] came, how many ping
    comments came, and how the read ended ("" or the transport error)."""
    text, done, pings, error = "", False, 0, ""
    body = {"messages": [{"role": "user", "content": PROMPT}], "stream": True, "max_tokens": 8}
    async with httpx.AsyncClient(timeout=10) as client:
        try:
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith(":"):
                        pings += 1
                    elif line == "data: [DONE]":
                        done = True
                    elif line.startswith("data: "):
                        chunk = json.loads(line[6:])
                        text += chunk["choices"][0]["delta"].get("content") or ""
        except httpx.HTTPError as exc:
            error = type(exc).__name__
    return text, done, pings, error


@pytest.mark.e2e
@pytest.mark.timeout(30)
async def test_pings_keep_a_slow_first_token_alive_through_a_proxy_that_cuts_idle_ones(
    server_factory: Any,
) -> None:
    """A proxy cuts connections idle for 0.5 s; the model's first token takes 1.5 s.
    With `--ping 0.2` the answer arrives whole through the proxy (pings and all, none
    read as text); with `--ping 0` the proxy cuts it before the first token."""
    pinged = server_factory("--first-token-ms", "1500", "--ping", "0.2", name="pinged")
    silent = server_factory("--first-token-ms", "1500", "--ping", "0", name="silent")
    expected = expected_text(PROMPT, 8)
    for server, whole in ((pinged, True), (silent, False)):
        proxy = IdleCuttingProxy(("127.0.0.1", server.port), idle_s=0.5)
        async with proxy.running():
            text, done, pings, error = await through(proxy.url)
        if whole:
            assert (text, done, error) == (expected, True, "")
            assert pings >= 5  # one every 0.2 s of the 1.5 s wait
            assert proxy.cuts == 0
        else:
            assert (text, done, pings) == ("", False, 0)
            assert error  # the proxy closed the connection mid-body
            assert proxy.cuts == 1


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_verify_hang_reads_through_pings_between_every_event(
    server_factory: Any, tmp_path: Path
) -> None:
    """A server pinging every 20 ms writes a comment before the first token and between
    flushes; verify-hang's readers (the streamed client, the raw sockets of disconnect)
    skip them: the text is whole and every scenario passes."""
    server = server_factory("--ping", "0.02", "--first-token-ms", "200", "--token-rate", "200")
    report = tmp_path / "report.json"
    argv = [sys.executable, "-m", "jarvis_cli", "verify-hang", "--url", server.url,
            "--scenario", "baseline", "--scenario", "overlap", "--scenario", "burst",
            "--scenario", "disconnect", "--rounds", "2", "--json", str(report)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr[-1500:]
    scenarios = json.loads(report.read_text(encoding="utf-8"))["scenarios"]
    assert {s["status"] for s in scenarios} == {"pass"}
    raw = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": PROMPT}], "stream": True},
        timeout=10,
    )
    assert raw.text.startswith(": ping\n\n")  # the pings were there to skip


async def test_with_resume_on_a_ping_takes_no_id_and_no_place_in_the_replay() -> None:
    """A ping is a comment, not an event: with resume on, the stream's own connection gets
    its pings, the events around them are numbered 1, 2, 3 ... with no hole, and a resume
    from the start replays the events alone, byte for byte, without one ping."""
    guard = make(ping=0.2, resume_ttl=5.0)
    client = Client()
    await guard.response("s", paced(0.55, "a", "b"))(HTTP, client.receive, client.send)
    assert bodies(client)[:2] == [PING, PING]
    events_only = client.body.replace(PING, b"")
    ids = [int(line[4:]) for line in events_only.split(b"\n") if line.startswith(b"id: ")]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 4  # 2 tokens, end, [DONE]
    reader = Client()
    stream_id = dict(client.messages[0]["headers"])[b"x-stream-id"].decode()
    await guard.resume("s", stream_id, "0")(HTTP, reader.receive, reader.send)
    assert reader.body == events_only
