"""The hot loop of `jarvis diagnose` in C (`_hotscan.c`): `Analyzer.feed_logfmt`, ported."""

from collections.abc import Callable

from .analysis import Analyzer, Handler

def feed_logfmt(
    analyzer: Analyzer,
    chunk: bytes,
    base: int,
    handlers: dict[bytes, Handler],
    timed: frozenset[bytes],
    parse_fields: Callable[[bytes], dict[str, str]],
    event_names: frozenset[bytes],
    line_ts: Callable[[bytes, int], float | None],
    /,
) -> tuple[int, int]:
    """Analyzer.feed_logfmt in C: (vocabulary events, other `event=` occurrences)."""

def count_lines(buffer: bytes, start: int, stop: int, /) -> int:
    """buffer[start:stop].count(b"\\n") without the copy, at memchr speed."""
