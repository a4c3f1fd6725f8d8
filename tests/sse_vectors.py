"""One set of SSE test vectors: bytes as a server might write them, cut into reads at awkward
places, and the events the WHATWG spec says they carry.

Every SSE reader in the project is held to these (tests/test_sse_vectors.py): the
byte decoder of `jarvis_cli.chatapi`, httpx-sse (which the httpx clients use) and the
locust user's reading path. Events are `(type, data, last id)`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

Event = tuple[str, str, str]

#: Characters that other line splitters (str.splitlines, httpx's aiter_lines) take for line
#: ends; SSE knows only CR, LF and CRLF, so inside data they are text.
NOT_LINE_ENDS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"


@dataclass(frozen=True, slots=True)
class Vector:
    """A stream cut into reads (`chunks`), and the events a spec reader dispatches from it."""

    name: str
    chunks: tuple[bytes, ...]
    events: tuple[Event, ...]


def cut(data: bytes, *at: int) -> tuple[bytes, ...]:
    """`data` split at the given offsets: the reads a network might hand over."""
    bounds = (0, *at, len(data))
    return tuple(data[a:b] for a, b in itertools.pairwise(bounds))


def bytewise(data: bytes) -> tuple[bytes, ...]:
    """One read per byte: every line end and every UTF-8 sequence split."""
    return tuple(data[i : i + 1] for i in range(len(data)))


_CHUNK = '{"choices":[{"delta":{"content":"a\u2028b"}}]}'
_ODD = f"x{NOT_LINE_ENDS}y"
_U2028_EVENT = b"data: " + _CHUNK.encode() + b"\n\n"
_U2028_AT = _U2028_EVENT.index("\u2028".encode())
_ANTHROPIC = (
    b"event: message_start\r\n"
    b'data: {"type":"message_start","message":{"id":"msg_1"}}\r\n\r\n'
    b": keep-alive\r\n\r\n"
    b"event: content_block_delta\r\n"
    b'data: {"type":"content_block_delta","delta":{"text":"hi"}}\r\n\r\n'
    b"event: message_stop\r\n"
    b'data: {"type":"message_stop"}\r\n\r\n'
)

VECTORS: tuple[Vector, ...] = (
    Vector("lf", (b"data: a\n\n", b"data: b\n\n"), (("message", "a", ""), ("message", "b", ""))),
    Vector(
        "crlf-split-between-reads",
        (b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"),
        (("message", "a", ""), ("message", "b", "")),
    ),
    Vector(
        "crlf-sse-starlette",
        cut(b"data: " + _CHUNK.encode() + b"\r\n\r\ndata: [DONE]\r\n\r\n", 7, 31, 52, 53),
        (("message", _CHUNK, ""), ("message", "[DONE]", "")),
    ),
    Vector("cr-only", (b"data: a\rdata: b\r\r",), (("message", "a\nb", ""),)),
    Vector(
        "cr-then-text-in-next-read",
        (b"data: a\r", b"data: b\r", b"\r"),
        (("message", "a\nb", ""),),
    ),
    Vector(
        "empty-read-inside-crlf", (b"data: a\r", b"", b"\ndata: b\n\n"), (("message", "a\nb", ""),)
    ),
    Vector(
        "multi-line-data",
        (b"data: one\ndata: two\ndata: three\n\n",),
        (("message", "one\ntwo\nthree", ""),),
    ),
    Vector(
        "event-and-id-fields",
        (b"event: message_start\nid: 7\ndata: {}\n\n", b"data: next\n\n"),
        (("message_start", "{}", "7"), ("message", "next", "7")),
    ),
    Vector(
        "comments",
        (b": ping\n\n:\ndata: x\n: inside\n\n",),
        (("message", "x", ""),),
    ),
    Vector(
        "separators-inside-data",
        (b"data: " + _ODD.encode() + b"\n\n",),
        (("message", _ODD, ""),),
    ),
    Vector(
        "u2028-split-inside-its-utf8",
        cut(_U2028_EVENT, _U2028_AT + 1, _U2028_AT + 2),
        (("message", _CHUNK, ""),),
    ),
    Vector(
        "separators-bytewise-crlf",
        bytewise(b"data: " + _ODD.encode() + b"\r\ndata: z\r\n\r\n"),
        (("message", f"{_ODD}\nz", ""),),
    ),
    Vector(
        "trailing-event-without-blank-line",
        (b"data: a\n\n", b"data: b\n"),
        (("message", "a", ""),),
    ),
    Vector("trailing-line-without-end", (b"data: a\n\ndata: b",), (("message", "a", ""),)),
    Vector(
        "no-space-and-two-spaces",
        (b"data:x\n\ndata:  y\n\n",),
        (("message", "x", ""), ("message", " y", "")),
    ),
    Vector("field-without-colon", (b"data\ndata\n\n",), (("message", "\n", ""),)),
    Vector(
        "id-with-nul-is-ignored",
        (b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",),
        (("message", "a", "1"), ("message", "b", "1")),
    ),
    Vector(
        "retry-and-unknown-fields",
        (b"retry: 100\nfoo: bar\ndata: x\n\n",),
        (("message", "x", ""),),
    ),
    Vector("event-only-block", (b"event: done\n\n",), (("done", "", ""),)),
    Vector(
        "anthropic-crlf-bytewise",
        bytewise(_ANTHROPIC),
        (
            ("message_start", '{"type":"message_start","message":{"id":"msg_1"}}', ""),
            ("content_block_delta", '{"type":"content_block_delta","delta":{"text":"hi"}}', ""),
            ("message_stop", '{"type":"message_stop"}', ""),
        ),
    ),
    Vector(
        "invalid-utf8-is-replaced",
        (b"data: a\xffb\n\n",),
        (("message", "a\ufffdb", ""),),
    ),
)


def dispatched(events: list[Event]) -> list[Event]:
    """Events that carry something: httpx-sse also dispatches a blank block once an id or a
    retry was seen (type `message`, no data); the spec and our decoder do not. Both sides
    go through this filter, so the comparison stays exact for every event with content."""
    return [e for e in events if e[1] or e[0] not in ("", "message")]
