"""What a timeline draws, collected while `diagnose` scans: lanes, bars, markers, density.

The recorder rides on the analyzer rather than reading the log a second time. A bar is
the analyzer's own stream record: the recorder is told when the analyzer opens and
closes one (`Analyzer.on_open`/`on_close`: a stream_end, or the restart of its process)
and finds the stream of a marker line with the analyzer's rule (`stream_of`), so the
page and the report never disagree on which line belongs to which stream. It wraps the
handlers of the stream-level events (one call per stream, per cancel, per cleanup)
and, for the flush lines the hot loop reads in C, counts each chunk's finished
flushes (`flush`, or an older log's `flush_done`) per stream with one regex sweep
after the loop has read the chunk. Flushes take
the time of their block (`DENSITY_BLOCK` bytes, a few hundred lines), not their own,
when the block spans less than a quarter of a density bin: parsing a timestamp per
flush of a busy log would cost more than the whole scan. A slower block (a quiet
server, a short log drawn in fine bins) has few flushes, and each takes its own line's
time (or, untimed, its block's first).

Memory is bounded whatever the log's size: at most `MAX_LANES` sessions get a lane of
their own (the first seen), at most `MAX_BARS` streams a bar (plus up to `MAX_OPEN_BARS`
for streams still open at the end: a hang is at the end of a log), `MAX_MARKERS`
markers (cleanup steps have their own `MAX_CLEANUP_MARKERS`, so that they cannot crowd
out cancels and fences); everything past a limit is counted, drawn as density in the
"other streams" lane, and the page says what was left out. Density bins widen (and
merge) when there are too many of them. `html.py` holds the page to its byte budget.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ..logs.analysis import Analyzer
from ..logs.scan import time_at
from ..logs.streams import Handler, StreamRecord

#: Sessions drawn in lanes of their own; later sessions go to the "other streams" lane.
MAX_LANES = 10_000
#: Streams drawn as bars; later ones are counted (their flushes still feed density).
MAX_BARS = 25_000
#: Bars kept past MAX_BARS for streams still open at the end of the log (hangs).
MAX_OPEN_BARS = 2_000
#: Markers drawn (cancel, fence, the new stream's wait for the old one, rejections).
MAX_MARKERS = 25_000
#: Cleanup-step markers drawn (three or more a stream: they get a budget of their own).
MAX_CLEANUP_MARKERS = 25_000
#: loop_blocked spans drawn.
MAX_LOOP_SPANS = 2_000
#: Bytes of a chunk whose flushes share one timestamp for density.
DENSITY_BLOCK = 16 << 10
#: Lines looked at for a timestamp at the start of a density block.
TIMED_LINE_PROBE = 16
#: Density bins kept before they are widened (each widening halves them).
MAX_DENSITY_BINS = 200_000
#: The first width of a density bin, in seconds.
FIRST_BIN_S = 0.05
#: Sessions counted past MAX_LANES (to say how many the page leaves out), at most.
MAX_COUNTED_SESSIONS = 200_000
#: Lane index of the aggregate lane: sessions past MAX_LANES, and flushes of streams
#: whose stream_start is not in the log.
OTHER = -1
#: The name of that lane on the page.
OTHER_LANE = "(other streams)"
#: Lane of streams whose lines name no session.
NO_SESSION = "(no session)"
#: The end reason of a bar whose process restarted before its stream_end.
RESTARTED = "restarted"

#: A finished flush: today's one line (`flush trace=`), an older server's `flush_done`.
_FLUSH_DONE = re.compile(rb"event=(?:flush trace|flush_done request_id)=([^ \n]+)")


class Mark(StrEnum):
    """The markers a lane shows (part of the page's data contract)."""

    CANCEL = "cancel"
    FENCE = "fence"
    CLEANUP = "cleanup"
    PREV_FINISHED = "prev_finished"
    PREV_TIMEOUT = "prev_timeout"
    REJECTED = "rejected"


#: Events whose line is a cleanup step of one stream.
_CLEANUP_EVENTS = ("event_buffers_cleaned", "cleanup_flush_task", "cleanup_buffer")


@dataclass(slots=True)
class Bar:
    """One stream: from its stream_start to its stream_end (None: never ended)."""

    lane: int
    start: float
    trace: str
    stream_id: str
    #: Which input (one process's log, when several are merged) the stream ran in.
    input: int = 0
    end: float | None = None
    reason: str | None = None
    cancelled: bool = False
    fenced: bool = False
    cleanup_done: str | None = None


@dataclass(slots=True)
class Limits:
    """What the page leaves out, so that it can say so."""

    #: Sessions seen (counted exactly up to MAX_COUNTED_SESSIONS).
    sessions: int = 0
    #: Streams of sessions past MAX_LANES (drawn only as density in "other streams").
    streams_other: int = 0
    streams_unbarred: int = 0
    markers_dropped: int = 0
    loop_spans_dropped: int = 0
    #: Lifecycle lines and flush_done lines with no timestamp to place them at.
    untimed: int = 0
    untimed_flushes: int = 0


@dataclass(slots=True)
class Timeline:
    """The drawable facts of a log: built by `Recorder`, written by `html.write`."""

    lanes: list[str] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    #: (lane, time, kind, bar index or -1)
    markers: list[tuple[int, float, Mark, int]] = field(default_factory=list)
    #: (start, end, lag ms, input)
    loop_spans: list[tuple[float, float, int, int]] = field(default_factory=list)
    #: (lane, bin) -> flushes; a bin is `floor(ts / bin_s)`.
    density: Counter[tuple[int, int]] = field(default_factory=Counter)
    bin_s: float = FIRST_BIN_S
    limits: Limits = field(default_factory=Limits)
    first_ts: float | None = None
    last_ts: float | None = None

    def seen(self, ts: float) -> None:
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts


class Recorder:
    """Attach to an `Analyzer` before its scan; `timeline` holds what it saw."""

    def __init__(self) -> None:
        self.timeline = Timeline()
        self._lane_of: dict[str, int] = {}
        self._unlaned: set[str] = set()
        #: The analyzer's open streams that have a bar, and the bar's index.
        self._bar_of: dict[StreamRecord, int] = {}
        #: The stream the analyzer opened, and those it closed, during the current line.
        self._opened: StreamRecord | None = None
        self._closing: list[StreamRecord] = []
        #: request id (bytes) -> lane, for flush density; kept until the chunk is read.
        self._flush_lane: dict[bytes, int] = {}
        self._retired: list[bytes] = []
        self._in_chunk = False
        #: The chunk the hot loop is reading, and the ref of its first byte.
        self._chunk = b""
        self._base = 0
        self._blocked_at: dict[int, tuple[float, int]] = {}
        self._cleanup_markers = 0
        self._analyzer: Analyzer | None = None

    # -- wiring ----------------------------------------------------------------

    def attach(self, analyzer: Analyzer) -> None:
        """Hook into the analyzer (before a Scanner is made for it)."""
        self._analyzer = analyzer
        analyzer.on_open = self._on_open
        analyzer.on_close = self._closing.append
        ours: dict[str, Handler] = {
            "stream_start": self._stream_start,
            "stream_end": self._stream_end,
            "server_start": self._server_start,
            "stream_cancelled": self._mark(Mark.CANCEL),
            "stream_fenced": self._mark(Mark.FENCE),
            "prev_stream_finished_cleanly": self._mark(Mark.PREV_FINISHED),
            "prev_stream_timeout_on_cancel": self._mark(Mark.PREV_TIMEOUT),
            "request_rejected": self._mark(Mark.REJECTED),
            "loop_blocked": self._loop_blocked,
            "loop_recovered": self._loop_recovered,
            **{name: self._mark(Mark.CLEANUP) for name in _CLEANUP_EVENTS},
        }
        for name, ours_handler in ours.items():
            theirs = analyzer.handlers.get(name)
            analyzer.handlers[name] = _chain(ours_handler, theirs)
        feed, finish = analyzer.feed_logfmt, analyzer.finish
        flush_done, flush_line = analyzer.flush_done, analyzer.flush_line

        def feed_logfmt(
            chunk: bytes,
            base: int,
            handlers: dict[bytes, Handler],
            timed: frozenset[bytes],
            parse_fields: Callable[[bytes], dict[str, str]],
        ) -> tuple[int, int]:
            self._in_chunk = True
            self._chunk, self._base = chunk, base
            try:
                counts = feed(chunk, base, handlers, timed, parse_fields)
                self._count_flushes(chunk)
            finally:
                self._in_chunk = False
                self._chunk = b""
                self._retire()
            return counts

        def counted(seen: Callable[[bytes, int, int], None]) -> Callable[[bytes, int, int], None]:
            def on_flush(rid: bytes, tokens: int, ref: int) -> None:
                seen(rid, tokens, ref)
                if analyzer.last_ts is None:
                    self.timeline.limits.untimed_flushes += 1
                else:
                    self._flush(rid, analyzer.last_ts)

            return on_flush

        def on_finish(end_ts: float | None, ts_of: Callable[[int], float | None]) -> None:
            finish(end_ts, ts_of)
            self._finish(analyzer, end_ts)

        analyzer.feed_logfmt = feed_logfmt  # type: ignore[method-assign]
        analyzer.flush_done = counted(flush_done)  # type: ignore[method-assign,assignment]
        analyzer.flush_line = counted(flush_line)  # type: ignore[method-assign,assignment]
        analyzer.finish = on_finish  # type: ignore[method-assign]

    def _ts(self, ref: int, ts: float | None) -> float | None:
        """The time of the line at `ref`: given, else read from the chunk being scanned
        (the bytes at hand; reading the source again would page the whole file in)."""
        if ts is None:
            chunk, at = self._chunk, ref - self._base
            if 0 <= at < len(chunk):
                ts = time_at(chunk, chunk.rfind(b"\n", 0, at) + 1)
            elif self._analyzer is not None:
                ts = self._analyzer.ts_at(ref)
        if ts is None:
            self.timeline.limits.untimed += 1
        else:
            self.timeline.seen(ts)
        return ts

    def _lane(self, session: str | None) -> int:
        name = session if session is not None else NO_SESSION
        lane = self._lane_of.get(name)
        if lane is not None:
            return lane
        lanes, limits = self.timeline.lanes, self.timeline.limits
        if len(lanes) < MAX_LANES:
            limits.sessions += 1
            lane = self._lane_of[name] = len(lanes)
            lanes.append(name)
            return lane
        if name not in self._unlaned and len(self._unlaned) < MAX_COUNTED_SESSIONS:
            self._unlaned.add(name)
            limits.sessions += 1
        return OTHER

    # -- streams: the analyzer's records -------------------------------------------

    def _on_open(self, record: StreamRecord) -> None:
        self._opened = record

    def _stream_start(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        record, self._opened = self._opened, None
        if record is None:
            return
        timeline = self.timeline
        when = self._ts(ref, ts)
        lane = self._lane(record.session)
        if lane == OTHER:
            timeline.limits.streams_other += 1
        if when is not None and lane != OTHER and len(timeline.bars) < MAX_BARS:
            self._bar_of[record] = self._new_bar(record, lane, when, ref)
        else:
            timeline.limits.streams_unbarred += 1
        for key in record.keys:
            self._flush_lane[key] = lane

    def _new_bar(self, record: StreamRecord, lane: int, when: float, ref: int) -> int:
        where = self._analyzer.input_of(ref) if self._analyzer is not None else 0
        bars = self.timeline.bars
        bars.append(Bar(lane, when, record.trace, record.stream_id or "", where))
        return len(bars) - 1

    def _stream_end(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        if self._closing:
            self._ended(self._ts(ref, ts), fields.get("reason") or "unknown", fields)

    def _server_start(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        """A restart ends the streams its process had open (the analyzer closed them)."""
        if self._closing:
            self._ended(self._ts(ref, ts), RESTARTED, {})

    def _ended(self, when: float | None, reason: str, fields: dict[str, str]) -> None:
        for record in self._closing:
            index = self._bar_of.pop(record, -1)
            if index >= 0:
                bar = self.timeline.bars[index]
                bar.end = when if when is not None else bar.start
                bar.reason = reason
                bar.cleanup_done = fields.get("cleanup_done")
            self._retired.extend(record.keys)
        self._closing.clear()
        if not self._in_chunk:
            self._retire()

    def _mark(self, kind: Mark) -> Handler:
        def handler(fields: dict[str, str], ref: int, ts: float | None) -> None:
            timeline = self.timeline
            record = self._analyzer.stream_of(fields) if self._analyzer is not None else None
            index = self._bar_of.get(record, -1) if record is not None else -1
            if index >= 0:
                bar = timeline.bars[index]
                lane = bar.lane
                bar.cancelled |= kind is Mark.CANCEL
                bar.fenced |= kind is Mark.FENCE
            elif "session" in fields:
                lane = self._lane(fields["session"])
            else:
                return  # a line about a stream without a bar: nowhere to draw it
            if kind is Mark.CLEANUP:
                if self._cleanup_markers >= MAX_CLEANUP_MARKERS:
                    timeline.limits.markers_dropped += 1
                    return
            elif len(timeline.markers) - self._cleanup_markers >= MAX_MARKERS:
                timeline.limits.markers_dropped += 1
                return
            when = self._ts(ref, ts)
            if when is not None and lane != OTHER:
                timeline.markers.append((lane, when, kind, index))
                self._cleanup_markers += kind is Mark.CLEANUP

        return handler

    def _finish(self, analyzer: Analyzer, end_ts: float | None) -> None:
        """At the end of the input: the page spans the whole log, and streams still open
        (a hang is at the end of a log) get a bar even past MAX_BARS."""
        end = end_ts if end_ts is not None else analyzer.last_ts
        if end is not None:
            self.timeline.seen(end)
        extra = 0
        for record in analyzer.open_streams:
            if record in self._bar_of or record.start_ts is None or extra >= MAX_OPEN_BARS:
                continue
            lane = self._lane(record.session)
            if lane == OTHER or record.start is None:
                continue
            self._bar_of[record] = self._new_bar(record, lane, record.start_ts, record.start)
            self.timeline.limits.streams_unbarred -= 1
            extra += 1

    # -- the event loop ----------------------------------------------------------

    def _loop_blocked(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        when = self._ts(ref, ts)
        if when is None or self._analyzer is None:
            return
        lag_ms = _int(fields.get("lag_ms"))
        here = self._analyzer.input_of(ref)
        if here not in self._blocked_at:
            self._blocked_at[here] = (when - lag_ms / 1000, lag_ms)
        self._close_span(here, when, still_open=True)

    def _loop_recovered(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        when = self._ts(ref, ts)
        if when is None or self._analyzer is None:
            return
        here = self._analyzer.input_of(ref)
        if here in self._blocked_at:
            self._close_span(here, when, still_open=False)

    def _close_span(self, here: int, when: float, *, still_open: bool) -> None:
        """Draw (or stretch) the blocked span of input `here` up to `when`."""
        start, lag_ms = self._blocked_at[here]
        spans = self.timeline.loop_spans
        span = (start, when, max(lag_ms, round((when - start) * 1000)), here)
        if spans and spans[-1][3] == here and spans[-1][0] == start:
            spans[-1] = span
        elif len(spans) < MAX_LOOP_SPANS:
            spans.append(span)
        else:
            self.timeline.limits.loop_spans_dropped += 1
        if not still_open:
            del self._blocked_at[here]

    # -- flush density ---------------------------------------------------------

    def _count_flushes(self, chunk: bytes) -> None:
        """Count a chunk's flush_done lines per lane, placed by their block's times
        (flushes of a block with no timed line are counted as untimed, and the page
        says how many)."""
        lane_of = self._flush_lane
        find_all = _FLUSH_DONE.findall
        pos = 0
        size = len(chunk)
        while pos < size:
            stop = chunk.find(b"\n", min(size, pos + DENSITY_BLOCK))
            stop = size if stop < 0 else stop + 1
            rids = find_all(chunk, pos, stop)
            if rids:
                first = _first_time(chunk, pos, stop)
                if first is None:
                    self.timeline.limits.untimed_flushes += len(rids)
                    pos = stop
                    continue
                last = _last_time(chunk, pos, stop) or first
                self.timeline.seen(first)
                self.timeline.seen(last)
                if last - first < self.timeline.bin_s / 4:  # one bin: count, don't spread
                    for rid, count in Counter(rids).items():
                        self._flush(rid, first, lane_of.get(rid, OTHER), count)
                else:  # a slow block (few flushes a bin): each flush at its own time
                    for match in _FLUSH_DONE.finditer(chunk, pos, stop):
                        line = max(pos, chunk.rfind(b"\n", pos, match.start()) + 1)
                        when = time_at(chunk, line)
                        rid = match[1]
                        self._flush(rid, first if when is None else when, lane_of.get(rid, OTHER))
            pos = stop

    def _flush(self, rid: bytes, when: float, lane: int | None = None, count: int = 1) -> None:
        timeline = self.timeline
        if lane is None:
            lane = self._flush_lane.get(rid, OTHER)
        density = timeline.density
        density[lane, int(when / timeline.bin_s)] += count
        if len(density) > MAX_DENSITY_BINS:
            self._widen()

    def _widen(self) -> None:
        """Halve the number of density bins: each new bin is two old ones."""
        timeline = self.timeline
        wider: Counter[tuple[int, int]] = Counter()
        for (lane, number), count in timeline.density.items():
            wider[lane, number // 2] += count
        timeline.density = wider
        timeline.bin_s *= 2

    def _retire(self) -> None:
        for rid in self._retired:
            self._flush_lane.pop(rid, None)
        self._retired.clear()


def _first_time(chunk: bytes, start: int, stop: int) -> float | None:
    """The time of the first of a block's lines that has one (looking at a few)."""
    pos = start
    for _ in range(TIMED_LINE_PROBE):
        when = time_at(chunk, pos)
        if when is not None:
            return when
        pos = chunk.find(b"\n", pos, stop) + 1
        if pos <= 0 or pos >= stop:
            return None
    return None


def _last_time(chunk: bytes, start: int, stop: int) -> float | None:
    """The time of the last of a block's lines that has one (looking at a few)."""
    end = stop - 1 if stop > start and chunk[stop - 1 : stop] == b"\n" else stop
    for _ in range(TIMED_LINE_PROBE):
        line = chunk.rfind(b"\n", start, end) + 1
        if line <= start:
            return time_at(chunk, start)
        when = time_at(chunk, line)
        if when is not None:
            return when
        end = line - 1
    return None


def _chain(first: Handler, then: Handler | None) -> Handler:
    """A handler that runs the analyzer's own (if any) and then the recorder's."""
    if then is None:
        return first

    def both(fields: dict[str, str], ref: int, ts: float | None) -> None:
        then(fields, ref, ts)
        first(fields, ref, ts)

    return both


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
