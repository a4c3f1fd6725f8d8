"""The compiled patterns of the log scanner, and timestamp parsing."""

from __future__ import annotations

import re
from datetime import datetime

from jarvis.vocabulary import Event

from .sources import Buffer

_NAMES = rb"|".join(
    re.escape(n) for n in sorted((e.value.encode() for e in Event), key=len, reverse=True)
)
# The hot flush events come first and capture only what the analyzer needs, so the
# regex engine (C) does the field extraction: an older server's three lines a flush
# (groups 1-3), and the one line a flush of today (groups 4-5). Other events match by
# family prefix (cheaper for the engine than 30 literals) and capture nothing else
# (group 6): the few the analyzer handles slice their line afterwards.
LOGFMT = re.compile(
    rb"event=(?:(flush_done|flush_start|flush_scheduled) request_id=([^ \n]+)"
    rb"(?: tokens_sent=(\d+))?"
    rb"|flush trace=([^ \n]+)(?: tokens=(\d+))?"
    rb"|((?:stream|flush|cleanup|loop|prev_stream|server|registry)_[a-z_]+"
    rb"|event_buffers_cleaned|upstream_error|request_rejected|flush)\b)"
)
EVENT_NAMES = frozenset(e.value.encode() for e in Event)
#: Any mention of a vocabulary name, however the line around it is dressed (quoted in
#: JSON, after an ANSI colour code): where the line reader looks for lifecycle lines.
NAMED = re.compile(rb"(?:" + _NAMES + rb")(?![A-Za-z0-9_])")
# Groups: the whole second, its fraction, its zone (line_ts caches per second and zone).
_TS_PREFIX = re.compile(
    rb"^(?:ts=)?\"?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:?\d\d)?"
)
#: parse_ts of a whole second and its zone, by their text: a log's lines share a few.
_SECONDS: dict[bytes, float | None] = {}
_SECONDS_KEPT = 4096


#: A token count longer than this is one no server writes: read as 0 (and `int()` of
#: thousands of digits raises). The C loop applies the same rule.
MAX_COUNT_DIGITS = 18


def count_value(text: bytes | str | None) -> int:
    """A `tokens_sent`-style count; 0 when absent, malformed or absurdly long."""
    if not text or len(text) > MAX_COUNT_DIGITS:
        return 0
    try:
        return int(text)
    except ValueError:
        return 0


def parse_ts(text: bytes | str) -> float | None:
    """Seconds since the epoch from an ISO-8601-ish timestamp, or None."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        return datetime.fromisoformat(text.replace(",", ".").replace(" ", "T")).timestamp()
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def line_ts(buffer: Buffer | bytes, line_start: int) -> float | None:
    """The timestamp at the start of the line (logfmt `ts=` or a bare ISO prefix).

    The same as parse_ts() of the whole stamp, computed from a cached parse of its
    second: datetime.fromisoformat() and timestamp() cost microseconds a line.
    """
    match = _TS_PREFIX.match(buffer[line_start : line_start + 48])
    if match is None:
        return None
    second, fraction, zone = match.groups()
    if second[11:13] == b"24":  # 24:00:00 may parse (3.12+) where 24:00:00.5 does not
        return parse_ts(match[0][match.start(1) :])
    key = second + zone if zone else second
    try:
        whole = _SECONDS[key]
    except KeyError:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        whole = _SECONDS[key] = parse_ts(key)
    if whole is None or fraction is None:
        return whole
    micro = int(fraction[:6].ljust(6, b"0"))  # fromisoformat truncates to microseconds
    if zone:  # aware: timestamp() divides whole microseconds since the epoch
        return (int(whole) * 1_000_000 + micro) / 1_000_000
    return whole + micro / 1e6  # naive: local seconds, plus microseconds as a float
