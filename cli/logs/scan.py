"""Scanning log bytes into analyzer events, in three dialects.

- logfmt (what `jarvis serve` writes): `Analyzer.feed_logfmt` runs over each
  chunk, in C (`_hotscan.c`, a vector scan for `event=`) or with one compiled
  regex; the three hot flush events are dispatched without building a dict.
- JSON lines (`--log-format json`): one `json.loads` per line.
- plain, the seeds' style: `stream_start trace=abc session=...` after an
  optional timestamp and level.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

from jarvis.logfmt import parse_logfmt
from jarvis.vocabulary import Event

from .analysis import Analyzer
from .engine import C_COUNT_LINES
from .patterns import LOGFMT, PLAIN, count_value, line_ts, parse_ts
from .sources import Source

CHUNK = 8 << 20
CHECKPOINT_EVERY = 1 << 20
#: Events whose line timestamp the analyzer needs.
TIMED = frozenset(n.encode() for n in Analyzer.TIMED)
_HOT = (b"flush_done", b"flush_start", b"flush_scheduled")


def sniff(head: bytes) -> str:
    """Guess a buffer's dialect from its first 64 KiB: logfmt, json or plain."""
    lines = [line for line in head.split(b"\n")[:400] if line.strip()]
    if not lines:
        return "logfmt"
    json_lines = sum(1 for line in lines if line.lstrip().startswith(b"{"))
    logfmt_lines = sum(1 for line in lines if LOGFMT.search(line))
    plain_lines = sum(1 for line in lines if PLAIN.search(line))
    if json_lines > max(logfmt_lines, plain_lines):
        return "json"
    if plain_lines > logfmt_lines:
        return "plain"
    return "logfmt"


def _count_lines(chunk: bytes, start: int, stop: int) -> int:
    return chunk.count(b"\n", start, stop)


_BARE_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([^ \t]*)")


def _fields(rest: bytes) -> dict[str, str]:
    """The key=value fields of a line's remainder; unquoted lines take a C-only path."""
    text = rest.decode("utf-8", "replace")
    if '"' not in text:
        return dict(_BARE_PAIR.findall(text))
    return parse_logfmt(text)


class Scanner:
    """Feeds one analyzer from any number of sources, keeping coverage counts."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self.coverage = analyzer.coverage
        self._handlers = {name.encode(): h for name, h in analyzer.handlers.items()}
        self._count_lines: Callable[[bytes, int, int], int] = _count_lines
        if analyzer.engine == "c" and C_COUNT_LINES is not None:
            self._count_lines = C_COUNT_LINES

    def scan(self, source: Source, start: int = 0, end: int | None = None) -> None:
        """Scan `source.buffer[start:end]`, whose first byte starts line 1 (or a known line)."""
        end = len(source) if end is None else end
        self.coverage.sources.append(source.name)
        dialect = sniff(source.read(start, min(end, start + (1 << 16))))
        started = time.perf_counter()
        first_line = 1 + (source.count_lines(0, start) if start else 0)
        line = first_line
        pos = start
        while pos < end:
            # Chunks end on a line boundary found in what was read: touching the mmap
            # here would fault in a readahead window per chunk and grow RSS with the file.
            chunk = source.read(pos, min(end, pos + CHUNK))
            if pos + len(chunk) < end:
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a chunk: read on to its end
                    newline = source.buffer.find(b"\n", pos + len(chunk))
                    cut = (end if newline < 0 or newline >= end else newline + 1) - pos
                    chunk = source.read(pos, pos + cut)
                elif cut < len(chunk):
                    chunk = chunk[:cut]
            self.scan_chunk(source, dialect, chunk, pos)
            line = self.checkpoints(source, chunk, pos, line)
            pos += len(chunk)
        self.coverage.bytes += end - start
        self.coverage.lines += line - first_line
        self.coverage.seconds += time.perf_counter() - started

    def checkpoints(self, source: Source, chunk: bytes, at: int, line: int) -> int:
        """Count the chunk's lines, leaving a line-number checkpoint every ~1 MiB."""
        count_lines = self._count_lines
        start = 0
        while start < len(chunk):
            source.checkpoint(at + start, line)
            cut = chunk.find(b"\n", start + CHECKPOINT_EVERY)
            stop = len(chunk) if cut < 0 else cut + 1
            line += count_lines(chunk, start, stop)
            start = stop
        return line

    def scan_chunk(self, source: Source, dialect: str, chunk: bytes, at: int) -> None:
        """Scan whole lines `chunk`, which sit at byte offset `at` of `source`."""
        if dialect == "json":
            self._scan_json(source, chunk, at)
        elif dialect == "plain":
            self._scan_plain(source, chunk, at)
        else:
            self._scan_logfmt(source, chunk, at)

    def _slow(
        self,
        source: Source,
        name: bytes,
        fields: dict[str, str],
        offset: int,
        ts: float | None,
    ) -> None:
        """Dispatch one parsed event (any dialect), hot names included."""
        a = self.analyzer
        ref = source.ref(offset)
        rid = fields.get("request_id")
        if name in _HOT and rid is not None:
            key = rid.encode()
            if name == b"flush_done":
                a.flush_done(key, count_value(fields.get("tokens_sent")), ref)
            elif name == b"flush_start":
                a.flush_start(key, ref)
            else:
                a.flush_scheduled(key, ref)
            return
        a.event(name.decode(), fields, ref, ts)

    def _scan_logfmt(self, source: Source, chunk: bytes, at: int) -> None:
        recognised, unrecognised = self.analyzer.feed_logfmt(
            chunk, source.ref(at), self._handlers, TIMED, _fields
        )
        self.coverage.recognised += recognised
        self.coverage.unrecognised += unrecognised

    def _scan_plain(self, source: Source, chunk: bytes, at: int) -> None:
        for match in PLAIN.finditer(chunk):
            self.coverage.recognised += 1
            name, rest = match.groups()
            start = match.start(1)
            ts = line_ts(chunk, chunk.rfind(b"\n", 0, start) + 1)
            self._slow(source, name, _fields(rest), at + start, ts)

    def _scan_json(self, source: Source, chunk: bytes, at: int) -> None:
        names = {e.value for e in Event}
        pos, end = 0, len(chunk)
        while pos < end:
            newline = chunk.find(b"\n", pos)
            stop = end if newline < 0 else newline
            line = chunk[pos:stop]
            offset, pos = at + pos, stop + 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                self.coverage.garbage += 1
                continue
            if not isinstance(record, dict) or not isinstance(record.get("event"), str):
                self.coverage.garbage += 1
                continue
            name = record["event"]
            if name not in names:
                self.coverage.unrecognised += 1
                continue
            self.coverage.recognised += 1
            fields = {k: _json_str(v) for k, v in record.items()}
            ts = parse_ts(fields["ts"]) if "ts" in fields else None
            self._slow(source, name.encode(), fields, offset, ts)


def _json_str(value: object) -> str:
    if value is True:
        return "True"
    if value is False:
        return "False"
    return "" if value is None else str(value)


def ts_resolver(sources: list[Source]) -> Callable[[int], float | None]:
    """A function from a ref to the timestamp of its line."""

    def ts_of(ref: int) -> float | None:
        source = sources[ref >> 40]
        offset = ref & ((1 << 40) - 1)
        start = source.line_start(offset)
        ts = line_ts(source.buffer, start)
        if ts is None and source.buffer[start : start + 1] == b"{":
            try:
                record = json.loads(source.line_at(offset))
                return parse_ts(str(record.get("ts", "")))
            except (ValueError, AttributeError):
                return None
        return ts

    return ts_of


def last_ts(source: Source) -> float | None:
    """The timestamp of the last line that has one (reads only the tail)."""
    buffer = source.buffer
    pos = len(buffer)
    for _ in range(200):
        start = buffer.rfind(b"\n", 0, max(0, pos - 1)) + 1
        ts = line_ts(buffer, start)
        if ts is None and buffer[start : start + 1] == b"{":
            try:
                ts = parse_ts(str(json.loads(buffer[start:pos]).get("ts", "")))
            except (ValueError, AttributeError):
                ts = None
        if ts is not None:
            return ts
        if start == 0:
            return None
        pos = start
    return None


def offset_at_time(source: Source, when: float) -> int:
    """First line start whose timestamp is >= `when` (logs are in time order): a bisection."""
    buffer = source.buffer
    lo, hi = 0, len(buffer)
    while lo < hi:
        mid = (lo + hi) // 2
        start = buffer.rfind(b"\n", 0, mid) + 1
        probe, ts = start, None
        for _ in range(50):  # skip lines without a timestamp
            ts = line_ts(buffer, probe)
            if ts is not None or probe >= hi:
                break
            nxt = buffer.find(b"\n", probe)
            if nxt < 0:
                break
            probe = nxt + 1
        if ts is None or ts >= when:
            hi = start
        else:
            nxt = buffer.find(b"\n", probe)
            lo = len(buffer) if nxt < 0 else nxt + 1
    return lo
