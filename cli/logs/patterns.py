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
# regex engine (C) does the field extraction. Other events match by family prefix
# (cheaper for the engine than 24 literals) and capture nothing else: the few the
# analyzer handles slice their line afterwards.
LOGFMT = re.compile(
    rb"event=(?:(flush_done|flush_start|flush_scheduled) request_id=([^ \n]+)"
    rb"(?: tokens_sent=(\d+))?|((?:stream|flush|cleanup|loop|prev_stream|server)_[a-z_]+"
    rb"|event_buffers_cleaned|upstream_error|request_rejected)\b)"
)
EVENT_NAMES = frozenset(e.value.encode() for e in Event)
PLAIN = re.compile(rb"(?:^|[ \t])(" + _NAMES + rb")(?![\w=])([^\n]*)", re.MULTILINE)
_TS_PREFIX = re.compile(
    rb"^(?:ts=)?\"?(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
)


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
    """The timestamp at the start of the line (logfmt `ts=` or a bare ISO prefix)."""
    match = _TS_PREFIX.match(buffer[line_start : line_start + 48])
    return parse_ts(match.group(1)) if match else None
