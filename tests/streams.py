"""Async SSE client helpers for the end-to-end tests (httpx, every read bounded)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class StreamResult:
    """What one streamed request received, with the arrival time of each event."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[tuple[float, object]] = field(default_factory=list)
    done: bool = False
    ended_at: float = 0.0

    @property
    def stream_id(self) -> str:
        return self.headers.get("x-stream-id", "")

    @property
    def chunks(self) -> list[dict[str, object]]:
        return [e for _, e in self.events if isinstance(e, dict)]

    @property
    def text(self) -> str:
        parts = []
        for chunk in self.chunks:
            for choice in chunk.get("choices", []):  # type: ignore[attr-defined]
                parts.append(choice.get("delta", {}).get("content") or "")
        return "".join(parts)

    @property
    def end_reason(self) -> str | None:
        for chunk in reversed(self.chunks):
            jarvis = chunk.get("jarvis")
            if isinstance(jarvis, dict):
                return str(jarvis.get("end_reason"))
        return None

    def first_content_at(self) -> float | None:
        for at, event in self.events:
            if isinstance(event, dict) and any(
                c.get("delta", {}).get("content") for c in event.get("choices", [])
            ):
                return at
        return None


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    prompt: str,
    *,
    session: str | None = None,
    deadline: float = 15.0,
    started: asyncio.Event | None = None,
    **extra: object,
) -> StreamResult:
    """POST a streaming chat request and read it to the end, within `deadline` seconds.

    `started` is set when the response headers arrive: jarvis sends them once the
    stream is registered, so a test can time an overlapping prompt from there
    rather than from the send (which a loaded machine may deliver late).
    """
    headers = {"X-Session-Id": session} if session else {}
    body = {"messages": [{"role": "user", "content": prompt}], "stream": True, **extra}
    result = StreamResult()
    async with asyncio.timeout(deadline):
        async with client.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=headers
        ) as response:
            result.status = response.status_code
            result.headers = dict(response.headers)
            if started is not None:
                started.set()
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                now = time.monotonic()
                if data == "[DONE]":
                    result.done = True
                    result.events.append((now, data))
                else:
                    result.events.append((now, json.loads(data)))
    result.ended_at = time.monotonic()
    return result


def raw_request(port: int, body: bytes, *, session: str | None = None) -> socket.socket:
    """Send a streaming chat request over a plain socket and return the socket unread."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    if session:
        head += f"X-Session-Id: {session}\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


async def overlap(url: str, session: str, *, gap: float = 0.3, deadline: float = 10.0):
    """A (long) then B (short) in one session, `gap` seconds apart; both read to the end."""
    async with httpx.AsyncClient(timeout=deadline) as client:
        a_task = asyncio.create_task(
            stream_chat(
                client,
                url,
                "Long essay about quantum computing",
                session=session,
                deadline=deadline,
                max_tokens=120,
            )
        )
        await asyncio.sleep(gap)
        b = await stream_chat(client, url, "What is 2+2?", session=session, deadline=deadline)
        a = await asyncio.wait_for(a_task, deadline)
    return a, b


def chat_json(prompt: str, **extra: object) -> bytes:
    return json.dumps(
        {"messages": [{"role": "user", "content": prompt}], "stream": True, **extra}
    ).encode()


@dataclass
class RawResponse:
    """A response read off a plain socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def raw_exchange(port: int, request: bytes, deadline_s: float = 5.0) -> RawResponse | None:
    """Send request bytes as they are; the response, or None if the server closed silently."""
    data = b""
    end = time.monotonic() + deadline_s
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
        sock.sendall(request)
        while time.monotonic() < end:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body)


def raw_chat_request(session: bytes, body: bytes | None = None) -> bytes:
    """HTTP/1.1 chat request bytes with `session` as the raw X-Session-Id value."""
    if body is None:
        body = b'{"messages": [{"role": "user", "content": "What is 2+2?"}]}'
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        b"X-Session-Id: " + session + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n"
        b"\r\n" + body
    )
