"""One log's analysis: the object the scanner feeds and the report reads.

The `Analyzer` is fed events in log order and puts the parts together: the flush
lines, the bulk of a log, go to the flush state (`flushes.py`; for logfmt, a whole
chunk at a time through the hot loop: `_hotscan.c` where it was built, else its
Python twin, the reference); every other event goes to its handler (`streams.py`),
which rebuilds the streams and asks the rules (`rules.py`) what is wrong; the
processes behind the log, their registries and outages, are the fleet's (`fleet.py`).
References to lines are integers (`ref`), resolved to file:line and text only for
what is reported, in one sorted sweep (`Sources.resolve_findings`).

Several inputs (one per worker or host) arrive merged by time (`merge.py`): the
analyzer learns which input a line came from (`input_of`) where a process's own
lifecycle matters (a restart ends only that process's streams, a blocked loop is
one process's) and to say when two streams of a session ran in different processes.

It judges with what the log has. A check that needs a field the log never writes
(`cleanup_done`, `event_buffers_cleaned`) is not applicable rather than failed; it
fails only streams that lack what others record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from . import rules
from .engine import C_FEED_LOGFMT, ENGINES, default_engine
from .findings import CappedFindings, Finding, FindingId
from .fleet import Fleet
from .flushes import FlushState, feed_logfmt_python
from .origins import Origin
from .patterns import EVENT_NAMES, line_ts
from .stats import Stats
from .streams import Handler, StreamEvents, StreamHook, StreamRecord


@dataclass(slots=True)
class Coverage:
    """How much of the input was understood: a log with no lifecycle events is not healthy."""

    bytes: int = 0
    lines: int = 0
    recognised: int = 0
    unrecognised: int = 0
    garbage: int = 0
    seconds: float = 0.0
    sources: list[str] = field(default_factory=list)
    #: Which loop read logfmt: "c" or "python".
    engine: str = "python"
    #: The files of each input (a path and its rotated set); several were merged by time.
    inputs: list[list[str]] = field(default_factory=list)
    #: File -> the process that wrote it, from its server_start: "worker 2, pid 1234".
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def merged(self) -> bool:
        """Whether several inputs were read as one log, merged by time."""
        return len(self.inputs) > 1

    def to_json(self) -> dict[str, object]:
        return {
            "bytes": self.bytes,
            "lines": self.lines,
            "lifecycle_events": self.recognised,
            "unrecognised_events": self.unrecognised,
            "garbage_lines": self.garbage,
            "seconds": round(self.seconds, 3),
            "sources": self.sources,
            "engine": self.engine,
            "inputs": self.inputs,
            "source_labels": self.labels,
        }


#: The findings that judge an open stream at the end of the input on their own.
_OPEN_STREAM_FINDINGS = frozenset({FindingId.STREAM_NOT_ENDED, FindingId.CANCEL_IGNORED})


class Analyzer:
    """Feeds on events in order; `finish()` judges what is left and keeps the findings."""

    def __init__(self, *, stale_after_s: float = 30.0, engine: str | None = None) -> None:
        engine = default_engine() if engine is None else engine
        if engine not in ENGINES:
            raise ValueError(f"no {engine!r} engine here; this install has {ENGINES}")
        self.engine = engine
        self.stale_after_s = stale_after_s
        self.coverage = Coverage(engine=engine)
        #: What the flush lines said: the state the logfmt hot loop reads and writes.
        self.flush = FlushState()
        self.stats = Stats(self.flush)
        self.fleet = Fleet()
        self.judged = CappedFindings()
        self.streams = StreamEvents(
            stats=self.stats, flush=self.flush, fleet=self.fleet, findings=self.judged
        )
        self.flush.on_first_emit = self.streams.first_emit
        self.flush.on_flush_after_cancel = self.streams.flush_after_cancel
        #: name -> handler(fields, ref, ts) for every stream-level event acted on; the
        #: timeline's recorder wraps some.
        self.handlers: dict[str, Handler] = self.streams.handlers
        #: The timestamp of the last line that had one (the end, when the input's own
        #: last line has none).
        self.last_ts: float | None = None
        #: (chunk, line start) -> the line's time, for the events that need it as read:
        #: the prefix parse by default; the scanner sets the full reader's.
        self.line_time: Callable[[bytes, int], float | None] = line_ts

    # -- what the runner and the timeline plug in --------------------------------

    @property
    def ts_at(self) -> Callable[[int], float | None]:
        """The timestamp of the line at a ref, for the few checks that need one that was
        not parsed on the way (the runner sets it to read the sources)."""
        return self.streams.ts_at

    @ts_at.setter
    def ts_at(self, ts_at: Callable[[int], float | None]) -> None:
        self.streams.ts_at = ts_at

    @property
    def input_of(self) -> Callable[[int], int]:
        """The input (a process's file and its rotated set) of the line at a ref; the
        runner sets it when it reads several."""
        return self.streams.input_of

    @input_of.setter
    def input_of(self, input_of: Callable[[int], int]) -> None:
        self.streams.input_of = input_of

    @property
    def order_refs(self) -> Callable[[Iterable[int]], list[int]]:
        """How a finding lists its lines: file order, or (several inputs) merged by time."""
        return self.judged.order_refs

    @order_refs.setter
    def order_refs(self, order_refs: Callable[[Iterable[int]], list[int]]) -> None:
        self.judged.order_refs = order_refs

    @property
    def on_open(self) -> StreamHook | None:
        """Told of each stream as it opens: the timeline draws bars with the analyzer's
        own matching."""
        return self.streams.on_open

    @on_open.setter
    def on_open(self, hook: StreamHook | None) -> None:
        self.streams.on_open = hook

    @property
    def on_close(self) -> StreamHook | None:
        """Told of each stream as it closes: at its stream_end, or when its process restarts."""
        return self.streams.on_close

    @on_close.setter
    def on_close(self, hook: StreamHook | None) -> None:
        self.streams.on_close = hook

    def stream_of(self, fields: dict[str, str]) -> StreamRecord | None:
        """The open stream a line is about (see `StreamEvents.stream_of`)."""
        return self.streams.stream_of(fields)

    # -- the flush lines -------------------------------------------------------

    def flush_scheduled(self, rid: bytes, ref: int) -> None:
        self.flush.flush_scheduled(rid, ref)

    def flush_start(self, rid: bytes, ref: int) -> None:
        self.flush.flush_start(rid, ref)

    def flush_done(self, rid: bytes, tokens: int, ref: int) -> None:
        self.flush.flush_done(rid, tokens, ref)

    def flush_line(self, rid: bytes, tokens: int, ref: int) -> None:
        self.flush.flush_line(rid, tokens, ref)

    def emitted(self, rid: bytes, ref: int) -> None:
        """The stream of `rid` wrote to its client at `ref`."""
        self.flush.wrote(rid, ref)

    def feed_logfmt(
        self,
        chunk: bytes,
        base: int,
        handlers: dict[bytes, Handler],
        timed: frozenset[bytes],
        parse_fields: Callable[[bytes], dict[str, str]],
    ) -> tuple[int, int]:
        """The hot loop: every jarvis logfmt event of `chunk` (whole lines at ref `base`).

        Returns how many vocabulary events it saw, and how many other `event=`.
        Runs in C when built (see `engine`); `feed_logfmt_python` says what it does.
        """
        if self.engine == "c" and C_FEED_LOGFMT is not None:
            return C_FEED_LOGFMT(
                self.flush, chunk, base, handlers, timed, parse_fields, EVENT_NAMES, self.line_time
            )
        return feed_logfmt_python(
            self.flush, chunk, base, handlers, timed, parse_fields, self.line_time
        )

    # -- every other event -----------------------------------------------------

    def event(self, name: str, fields: dict[str, str], ref: int, ts: float | None) -> None:
        """Any event other than the three hot flush events."""
        if ts is not None:
            self.last_ts = ts
        handler = self.handlers.get(name)
        if handler is not None:
            handler(fields, ref, ts)

    # -- judging what the end of the input tells ---------------------------------

    def judge_open(self, now: float | None, ts_of: Callable[[int], float | None]) -> list[Finding]:
        """Findings about what is still open at `now`, without changing any state.

        `--follow` calls this on every refresh; `finish()` once at the end.
        """
        return [self.judged.settle(finding) for finding in self._judge_open(now, ts_of)]

    def judge_totals(self) -> list[Finding]:
        """Findings about the run as a whole (cancel timeouts, cleanup, batching)."""
        return [self.judged.settle(finding) for finding in self._judge_totals()]

    def _judge_open(
        self, now: float | None, ts_of: Callable[[int], float | None]
    ) -> Iterator[Finding]:
        streams, stale_after_s = self.streams, self.stale_after_s
        for record in streams.open_streams:
            age = None if now is None or record.start_ts is None else now - record.start_ts
            finding = rules.cancel_ignored(record, open_for_s=age, stale_after_s=stale_after_s)
            if finding is None:
                finding = rules.stream_not_ended(
                    record, open_for_s=age, stale_after_s=stale_after_s
                )
            if finding is not None:
                yield finding
        for rid, ref in self.flush.pending_start.items():
            started = ts_of(ref)
            finding = rules.flush_stuck(
                rid,
                ref,
                record=streams.flushing(rid),
                open_for_s=None if now is None or started is None else now - started,
                loop_stuck=streams.input_of(ref) in streams.loop_stuck,
            )
            if finding is not None:
                yield finding
        for here, outage in self.fleet.outages.items():
            since = self.ts_at(outage.first)
            yield rules.registry_unavailable(
                self.fleet.registry_name(here),
                outage,
                down_s=None if now is None or since is None else now - since,
            )

    def _judge_totals(self) -> Iterator[Finding]:
        stats = self.stats
        streams = self.streams
        timeouts = rules.cancel_timeouts(
            stats.cancel_timeouts, stats.cancel_wait_ms, streams.timeouts, streams.timeout_frames
        )
        if timeouts is not None:
            yield timeouts
        slow = rules.slow_cancels(
            streams.slow_wait_count,
            streams.slow_wait_max_ms,
            streams.cancel_wait_s,
            streams.slow_waits,
            streams.slow_frames,
        )
        if slow is not None:
            yield slow
        for late in streams.late_cleanups():
            never = rules.cleanup_incomplete(late.record, late.ended, cleanup_done=late.cleanup_done)
            if never is not None:
                yield never
        done, cleaned = stats.cleanup_recorded > 0, stats.buffers_cleaned > 0
        for unproven in self.streams.unproven:
            incomplete = rules.cleanup_incomplete(
                unproven.record,
                unproven.ended,
                missing_done=unproven.missing_done,
                missing_cleaned=unproven.missing_cleaned,
                others_done=done,
                others_cleaned=cleaned,
            )
            if incomplete is not None:
                yield incomplete
        batching = rules.no_batching(
            stats.flushes, stats.scheduled, stats.multi_token_flushes, stats.flush_ms
        )
        if batching is not None:
            yield batching

    def finish(self, end_ts: float | None, ts_of: Callable[[int], float | None]) -> None:
        """End of input: judge what is still open against the last timestamp seen."""
        now = end_ts if end_ts is not None else self.last_ts
        at_end = list(self._judge_open(now, ts_of))
        judged = {f.trace for f in at_end if f.id in _OPEN_STREAM_FINDINGS}
        still_open = [r for r in self.streams.open_streams if r.trace not in judged]
        found_open = rules.streams_open(still_open, now=now, stale_after_s=self.stale_after_s)
        for finding in [*at_end, found_open, *self._judge_totals()]:
            self.judged.report(finding)
        if self.streams.unproven_dropped and self.cleanup_applies:
            self.judged.suppressed[FindingId.CLEANUP_INCOMPLETE] += self.streams.unproven_dropped

    # -- what the report reads ---------------------------------------------------

    @property
    def findings(self) -> list[Finding]:
        """What was found, in the order judged (up to `MAX_FINDINGS_PER_ID` of each id)."""
        return self.judged.findings

    @property
    def suppressed(self) -> Counter[FindingId]:
        """Per id, the findings past the limit: counted, not kept."""
        return self.judged.suppressed

    @property
    def open_streams(self) -> list[StreamRecord]:
        return self.streams.open_streams

    @property
    def origins(self) -> list[tuple[int, Origin]]:
        """(ref, process) of each server_start: the report labels files with them."""
        return self.streams.origins

    @property
    def shared_registry(self) -> bool:
        """Whether the log shows a registry shared by processes (a fleet)."""
        return self.fleet.shared_registry

    @property
    def cleanup_applies(self) -> bool:
        """Whether the log records cleanup at all (else the cleanup check cannot judge)."""
        return self.stats.cleanup_recorded > 0 or self.stats.buffers_cleaned > 0

    @property
    def jarvis_log(self) -> bool:
        """Whether a jarvis server wrote the log (lines no other server writes)."""
        return self.streams.jarvis_lines > 0 or self.stats.watchdog_lines > 0
