"""The hot loop of `jarvis diagnose` in C (`_hotscan.c`): `flushes.feed_logfmt_python`, ported.

It reads and writes only the declared attributes of the `FlushState` it is given."""

from collections.abc import Callable

from .flushes import FlushState
from .streams import Handler

def feed_logfmt(
    state: FlushState,
    chunk: bytes,
    base: int,
    handlers: dict[bytes, Handler],
    timed: frozenset[bytes],
    parse_fields: Callable[[bytes], dict[str, str]],
    event_names: frozenset[bytes],
    line_ts: Callable[[bytes, int], float | None],
    /,
) -> tuple[int, int]:
    """flushes.feed_logfmt_python in C: (vocabulary events, other `event=` occurrences)."""

def count_lines(buffer: bytes, start: int, stop: int, /) -> int:
    """buffer[start:stop].count(b"\\n") without the copy, at memchr speed."""
