"""The locust user's SSE reading path, kept apart from locust so the tests can hold it to the
shared SSE vectors (tests/test_sse_vectors.py) without importing locust (it monkey-patches).

Bytes are taken as they arrive from geventhttpclient's response (one bounded `recv` at a
time) and fed to `jarvis_cli.chatapi.SSEDecoder`, which reads SSE as the spec says: CR, LF
and CRLF line ends, multi-line data, `event:` and `id:` fields, comments. A `readline`
on "\\n\\n" cannot: it never finds an event that ends in CRLF, nor one split by CR alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from jarvis_cli.chatapi import SSEDecoder, SSEEvent


def events(read: Callable[[], bytes]) -> Iterator[SSEEvent]:
    """Every event of a body as soon as its bytes have arrived.

    `read()` returns the next bytes (never empty while the body goes on) and b"" at its
    end. Its exceptions (a socket timeout, a reset) leave through this generator to the
    caller, who tells a hang from a close. An event not followed by a blank line before
    the end is dropped, as the spec says."""
    decoder = SSEDecoder()
    while chunk := read():
        yield from decoder.feed(chunk)
    yield from decoder.close()


def available(raw: Any) -> bytes:
    """The body bytes geventhttpclient holds, or else those of one `recv`; b"" at the end.

    `raw` is a geventhttpclient `HTTPSocketResponse`. Its public `read(n)` waits for n
    bytes and `readline` for one separator; neither hands over what has arrived, which a
    stream must be read by. Each `recv` is bounded by the socket's own timeout (the hang
    deadline): no timer per read, which would cost a tenth of a user's CPU."""
    buffer: bytearray = raw._body_buffer
    while not buffer:
        sock = raw._sock
        if raw.message_complete or sock is None:
            return b""
        data = sock.recv(raw.block_size)
        if not data:
            return b""  # the server closed the connection
        raw.feed(data)  # the parser drops the chunked framing; only body bytes reach buffer
    chunk = bytes(buffer)
    del buffer[:]
    return chunk
