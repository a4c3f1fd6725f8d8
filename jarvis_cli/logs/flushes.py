"""The flush lines, most of a log: what they have said so far (`FlushState`), and the
Python loop that reads them from logfmt (`feed_logfmt_python`; `_hotscan.c` is its port).

Two shapes of log: today's one line a flush (`flush trace=… tokens=…`, written when
the write returns, with `flush_slow` from the watchdog for a write that does not),
and an older server's three (`flush_scheduled`, `flush_start`, `flush_done`, keyed by
`request_id`). Both feed the same state.

`FlushState` is the whole contract between the hot loop and the rest of the analysis:
the loop, C or Python, reads and writes its declared attributes and nothing else, and
calls back through its two hooks for the rare lines that need a stream's record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .patterns import EVENT_NAMES, LOGFMT, count_value, line_ts

if TYPE_CHECKING:
    from .streams import Handler, StreamRecord

#: Told of a request id (bytes) and the ref of the line that named it.
FlushHook = Callable[[bytes, int], None]


def _nobody(rid: bytes, ref: int) -> None:
    """A hook nobody has set: the flush state works on its own (tests, a bare loop)."""


@dataclass(slots=True, eq=False)
class FlushState:
    """What the flush lines (flush; an older server's flush_scheduled, flush_start,
    flush_done) have said so far.

    Everything is keyed by request id, as bytes, the way the line spells it. `_hotscan.c`
    looks these attributes up by name (and the slots refuse any other): renaming one
    means editing the C loop, `_hotscan.pyi` and `feed_logfmt_python` together.
    """

    #: request id -> the ref of its flush_start that has not had its flush_done yet
    #: (or trace -> its flush_slow that has not had its flush line yet).
    pending_start: dict[bytes, int] = field(default_factory=dict)
    #: request id -> the ref of its flush_scheduled not yet started nor cancelled.
    pending_sched: dict[bytes, int] = field(default_factory=dict)
    #: Request ids that have written to their client (a flush_done that sent tokens).
    emitted: set[bytes] = field(default_factory=set)
    #: request id -> its stream, once cancelled: each flush_start after the cancel goes
    #: to `on_flush_after_cancel`. The loop only asks whether a request id is in it.
    cancelled: dict[bytes, StreamRecord] = field(default_factory=dict)
    #: Called with (request id, ref) at the first flush_done that sent tokens.
    on_first_emit: FlushHook = _nobody
    #: Called with (request id, ref) at each flush_start (or flush) of a request id in
    #: `cancelled`.
    on_flush_after_cancel: FlushHook = _nobody
    #: flush and flush_done lines, with or without their count of tokens.
    flushes: int = 0
    #: The tokens they sent.
    tokens: int = 0
    #: flush_done lines that sent more than one token: batching at work.
    multi_token_flushes: int = 0
    #: flush_scheduled lines.
    scheduled: int = 0

    # One line at a time, for the dialects the logfmt loop does not read.

    def flush_scheduled(self, rid: bytes, ref: int) -> None:
        self.scheduled += 1
        self.pending_sched[rid] = ref

    def flush_start(self, rid: bytes, ref: int) -> None:
        self.pending_start[rid] = ref
        self.pending_sched.pop(rid, None)
        if rid in self.cancelled:
            self.on_flush_after_cancel(rid, ref)

    def flush_done(self, rid: bytes, tokens: int, ref: int) -> None:
        self.flushes += 1
        self.pending_start.pop(rid, None)
        if tokens:
            self.tokens += tokens
            if tokens > 1:
                self.multi_token_flushes += 1
            self.wrote(rid, ref)

    def flush_line(self, rid: bytes, tokens: int, ref: int) -> None:
        """One `flush` line: a whole flush, written when its write returned."""
        self.flushes += 1
        self.pending_start.pop(rid, None)
        if rid in self.cancelled:
            self.on_flush_after_cancel(rid, ref)
        if tokens:
            self.tokens += tokens
            if tokens > 1:
                self.multi_token_flushes += 1
            self.wrote(rid, ref)

    def wrote(self, rid: bytes, ref: int) -> None:
        """The stream of `rid` wrote to its client at `ref`."""
        if rid not in self.emitted:
            self.emitted.add(rid)
            self.on_first_emit(rid, ref)


def feed_logfmt_python(
    state: FlushState,
    chunk: bytes,
    base: int,
    handlers: dict[bytes, Handler],
    timed: frozenset[bytes],
    parse_fields: Callable[[bytes], dict[str, str]],
    line_time: Callable[[bytes, int], float | None] = line_ts,
) -> tuple[int, int]:
    """Every jarvis logfmt event of `chunk` (whole lines at ref `base`): the reference
    `_hotscan.feed_logfmt` is a port of. `line_time` reads the time of a timed event's
    line (its `line_ts` argument).

    The three flush events update `state` as its methods would, inlined with local
    counters: at a few million events per gigabyte, a method call per line is a third
    of the run time. Every other vocabulary event with a handler goes to it, parsed.
    Returns how many vocabulary events it saw, and how many other `event=`.
    """
    pending_start, pending_sched = state.pending_start, state.pending_sched
    pop_start, pop_sched = pending_start.pop, pending_sched.pop
    emitted, cancelled = state.emitted, state.cancelled
    recognised = flushes = tokens_total = multi = scheduled = 0
    for match in LOGFMT.finditer(chunk):
        hot, rid, tokens, flushed, count, name = match.groups()
        if flushed is not None:  # `flush trace=… tokens=…`: one line, one whole flush
            recognised += 1
            flushes += 1
            pop_start(flushed, None)
            if flushed in cancelled:
                state.on_flush_after_cancel(flushed, base + match.start())
            if count is not None and count != b"0":
                sent = count_value(count)
                tokens_total += sent
                if sent > 1:
                    multi += 1
                if flushed not in emitted:
                    emitted.add(flushed)
                    state.on_first_emit(flushed, base + match.start())
        elif hot is not None:
            recognised += 1
            if tokens is not None:  # flush_done
                flushes += 1
                pop_start(rid, None)
                if tokens != b"0":
                    sent = count_value(tokens)
                    tokens_total += sent
                    if sent > 1:
                        multi += 1
                    if rid not in emitted:
                        emitted.add(rid)
                        state.on_first_emit(rid, base + match.start())
            elif hot == b"flush_start":
                pending_start[rid] = base + match.start()
                pop_sched(rid, None)
                if rid in cancelled:
                    state.on_flush_after_cancel(rid, base + match.start())
            elif hot == b"flush_scheduled":
                scheduled += 1
                pending_sched[rid] = base + match.start()
            else:  # a flush_done cut short before tokens_sent
                flushes += 1
                pop_start(rid, None)
        elif name in EVENT_NAMES:
            recognised += 1
            handler = handlers.get(name)
            if handler is not None:
                start, end = match.start(), match.end()
                stop = chunk.find(b"\n", end)
                rest = chunk[end : stop if stop >= 0 else len(chunk)]
                ts = line_time(chunk, chunk.rfind(b"\n", 0, start) + 1) if name in timed else None
                handler(parse_fields(rest), base + start, ts)
    state.flushes += flushes
    state.tokens += tokens_total
    state.multi_token_flushes += multi
    state.scheduled += scheduled
    return recognised, chunk.count(b"event=") - recognised
