"""Raw HTTP/1.1 over asyncio streams, for what a well-behaved client will not do.

httpx refuses to send a header value with an ESC in it, and it cannot leave a
connection on purpose with a FIN or an RST at a chosen moment, nor stop
reading without closing. These helpers can; every read is bounded by the caller.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ..chatapi import ChatRequest
from .activity import Activity
from .client import is_event_stream, is_success

#: The most response head we wait for before calling a response malformed.
MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int
    tls: bool

    @classmethod
    def of(cls, base_url: str) -> Address:
        url = httpx.URL(base_url)
        tls = url.scheme == "https"
        return cls(url.host, url.port or (443 if tls else 80), tls)


@dataclass(slots=True)
class Connection:
    """One raw connection: its reader, its writer, and what it has received so far."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytes = b""
    #: When it was opened, and when its last byte arrived (None: none yet).
    opened_at: float = 0.0
    last_byte_at: float | None = None
    #: The run's progress, told of every byte this connection receives.
    activity: Activity | None = None

    def last_progress(self) -> float:
        """When this connection last moved: its last byte, else its opening."""
        return self.last_byte_at or self.opened_at

    @property
    def status(self) -> int:
        """The status code of the response head received so far, or 0."""
        line = self.received.split(b"\r\n", 1)[0].split(b" ")
        if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
            return int(line[1])
        return 0

    @property
    def content_type(self) -> str:
        """The Content-Type of the response head received so far, or ""."""
        head = self.received.partition(b"\r\n\r\n")[0]
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-type":
                return value.strip().decode("latin-1")
        return ""

    @property
    def streaming(self) -> bool:
        """The response is a stream: a 2xx carrying text/event-stream."""
        return is_success(self.status) and is_event_stream(self.content_type)

    async def read_until(self, marker: bytes, limit: int = MAX_HEAD) -> bool:
        """Read until `marker` has arrived (True) or the peer closed (False); caller bounds time."""
        while marker not in self.received:
            data = await self.reader.read(65536)
            if not data:
                return False
            self._got(data)
            if len(self.received) > limit and marker not in self.received:
                return False
        return True

    async def read_to_end(self) -> None:
        while data := await self.reader.read(65536):
            self._got(data)

    def _got(self, data: bytes) -> None:
        self.received += data
        self.last_byte_at = time.monotonic()
        if self.activity is not None:
            self.activity.saw(self.last_byte_at)

    def drop(self, *, reset: bool) -> None:
        """Leave: a FIN, or with `reset` an RST (SO_LINGER with a zero timeout)."""
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.close()

    async def close(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError):
            pass


async def connect(
    address: Address, *, rcvbuf: int | None = None, activity: Activity | None = None
) -> Connection:
    """Open a connection; `rcvbuf` shrinks the receive buffer first (a slow reader), and
    `activity` hears of every byte it receives."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, sockaddr)
        context = ssl.create_default_context() if address.tls else None
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname=address.host if context else None
        )
    except BaseException:
        sock.close()
        raise
    return Connection(reader, writer, opened_at=time.monotonic(), activity=activity)


def request_bytes(
    address: Address,
    request: ChatRequest,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    close: bool = False,
) -> bytes:
    """`request` as HTTP/1.1 bytes; `headers` are added byte for byte (httpx would refuse
    some of them, which is the point)."""
    payload = request.payload()
    lines = [
        f"{request.method} {request.target} HTTP/1.1".encode(),
        b"Host: " + f"{address.host}:{address.port}".encode(),
        b"Content-Type: application/json",
        b"Accept: text/event-stream",
        b"Content-Length: " + str(len(payload)).encode(),
    ]
    if close:
        lines.append(b"Connection: close")
    lines += [f"{name}: {value}".encode() for name, value in request.all_headers().items()]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


async def send(connection: Connection, request: bytes) -> None:
    connection.writer.write(request)
    await connection.writer.drain()
