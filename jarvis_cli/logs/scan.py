"""Scanning log bytes into analyzer events, in two ways.

- jarvis logfmt (what `jarvis serve` writes): `Analyzer.feed_logfmt` runs over each
  chunk, in C (`_hotscan.c`, a vector scan for `event=`) or with one compiled
  regex; the three hot flush events are dispatched without building a dict.
- every other dialect (JSON, stdlib `logging`, loguru, structlog, the original
  server's bare lines, coloured or not): lines that name a vocabulary event are
  read one by one by the shared line reader, `dialects.parse_line`, which
  verify-hang uses too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from jarvis.logfmt import parse_logfmt

from .analysis import Analyzer
from .dialects import VOCABULARY, line_time, parse_line
from .engine import C_COUNT_LINES
from .patterns import LOGFMT, NAMED, count_value, line_ts
from .sources import Buffer, Source
from .streams import StreamEvents

CHUNK = 8 << 20
CHECKPOINT_EVERY = 1 << 20
#: Events whose line timestamp the analyzer needs.
TIMED = frozenset(n.encode() for n in StreamEvents.TIMED)
_HOT = (b"flush_done", b"flush_start", b"flush_scheduled")
_FLUSH = b"flush"


#: The dialect names `sniff` returns: the logfmt hot loop, or the line reader.
LOGFMT_DIALECT = "logfmt"
LINES_DIALECT = "lines"


def sniff(head: bytes) -> str:
    """Pick the reader for a buffer from its first 64 KiB: "logfmt" when its lifecycle
    lines are jarvis logfmt, after any prefix (the hot loop reads them), else "lines"
    (any dialect). A JSON line is never the hot loop's, even with `event=` in its
    message: the line reader unquotes the JSON first."""
    lines = [line for line in head.split(b"\n")[:400] if line.strip()]
    if not lines or b"\x1b" in head:  # colours cut values: only the line reader copes
        return LOGFMT_DIALECT if not lines else LINES_DIALECT
    logfmt_lines = sum(1 for line in lines if _hot_line(line))
    other_lines = sum(
        1
        for line in lines
        if not _hot_line(line) and NAMED.search(line) and _vocabulary_event(line)
    )
    return LINES_DIALECT if other_lines > logfmt_lines else LOGFMT_DIALECT


def _hot_line(line: bytes) -> bool:
    return line.lstrip()[:1] != b"{" and LOGFMT.search(line) is not None


def _vocabulary_event(line: bytes) -> bool:
    record = parse_line(line)
    return record is not None and record.event in VOCABULARY


def _count_lines(chunk: bytes, start: int, stop: int) -> int:
    return chunk.count(b"\n", start, stop)


_BARE_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([^ \t]*)")


def parse_fields(rest: bytes) -> dict[str, str]:
    """The key=value fields of a logfmt line's remainder, as the hot loop hands them to
    the handlers; unquoted lines take a C-only path."""
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
        # A lifecycle line that does not start with its time (a `[stamp]`, a journald
        # head) takes it from the line reader, as verify-hang would.
        analyzer.line_time = time_at
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
            chunk = source.read_lines(pos, end, CHUNK)
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
        if dialect == LOGFMT_DIALECT:
            self._scan_logfmt(source, chunk, at)
        else:
            self._scan_lines(source, chunk, at)

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
        if name == _FLUSH and fields.get("trace"):
            if ts is not None:
                a.last_ts = ts
            sent = fields.get("tokens")
            key = fields["trace"].encode()
            a.flush_line(key, count_value(sent), ref)
            if sent is None:  # a flush with no count still wrote to the client
                a.emitted(key, ref)
            return
        rid = fields.get("request_id")
        if name in _HOT and rid is not None:
            key = rid.encode()
            if ts is not None:
                a.last_ts = ts
            if name == b"flush_done":
                sent = fields.get("tokens_sent")
                a.flush_done(key, count_value(sent), ref)
                if sent is None:  # a flush with no count still wrote to the client
                    a.emitted(key, ref)
            elif name == b"flush_start":
                a.flush_start(key, ref)
            else:
                a.flush_scheduled(key, ref)
            return
        a.event(name.decode(), fields, ref, ts)

    def _scan_logfmt(self, source: Source, chunk: bytes, at: int) -> None:
        recognised, unrecognised = self.analyzer.feed_logfmt(
            chunk, source.ref(at), self._handlers, TIMED, parse_fields
        )
        self.coverage.recognised += recognised
        self.coverage.unrecognised += unrecognised

    def _scan_lines(self, source: Source, chunk: bytes, at: int) -> None:
        """Every line that names a vocabulary event, read by the shared line reader."""
        done = -1  # the start of the last line read: a line naming two events is one
        for match in NAMED.finditer(chunk):
            start = chunk.rfind(b"\n", 0, match.start()) + 1
            if start == done:
                continue
            done = start
            stop = chunk.find(b"\n", match.end())
            line = chunk[start : stop if stop >= 0 else len(chunk)]
            record = parse_line(line)
            if record is None:
                if line.lstrip().startswith(b"{"):
                    self.coverage.garbage += 1
                continue
            if record.event is None:
                continue
            if record.event not in VOCABULARY:
                self.coverage.unrecognised += 1
                continue
            self.coverage.recognised += 1
            self._slow(source, record.event.encode(), record.fields, at + start, record.ts)


def time_at(buffer: Buffer | bytes, start: int) -> float | None:
    """The timestamp of the line at `start`, in any dialect: the cached prefix parse
    first (logfmt, stdlib, loguru), the full line reader for the rest."""
    ts = line_ts(buffer, start)
    if ts is not None:
        return ts
    stop = buffer.find(b"\n", start)
    return line_time(buffer[start : stop if stop >= 0 else len(buffer)])


def ts_resolver(sources: list[Source]) -> Callable[[int], float | None]:
    """A function from a ref to the timestamp of its line."""

    def ts_of(ref: int) -> float | None:
        source = sources[ref >> 40]
        offset = ref & ((1 << 40) - 1)
        return time_at(source.buffer, source.line_start(offset))

    return ts_of


def last_ts(source: Source) -> float | None:
    """The timestamp of the last line that has one (reads only the tail)."""
    buffer = source.buffer
    pos = len(buffer)
    for _ in range(200):
        start = buffer.rfind(b"\n", 0, max(0, pos - 1)) + 1
        ts = time_at(buffer, start)
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
            ts = time_at(buffer, probe)
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
