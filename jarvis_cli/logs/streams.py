"""Stream records, and the handlers of the stream-level events that open, change and
close them (every event but the three flush lines, which `flushes.py` reads).

A stream's record lives only while the stream is open: at its stream_end, or when its
process restarts, it is judged and dropped, so memory follows the streams open at once,
not the size of the log. Flush lines find their stream by an id its stream_start
carried: today's `flush` names the `trace`; an older server's flush lines the
`stream_id` as `request_id` (in the original server's bare lines a flush's
`request_id` is the trace). What is wrong is the rules' to say (`rules.py`);
what only the end of the input can tell is judged by the analyzer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import rules
from .findings import MAX_FINDINGS_PER_ID
from .origins import Origin

if TYPE_CHECKING:
    from .findings import CappedFindings
    from .fleet import Fleet
    from .flushes import FlushState
    from .stats import Stats

#: A stream-level event's handler: (its fields, the ref of its line, its timestamp).
Handler = Callable[[dict[str, str], int, float | None], None]
#: Told of a stream as it opens, or as it closes.
StreamHook = Callable[["StreamRecord"], None]
#: server_start lines whose process is remembered for the report's labels.
MAX_ORIGINS = 1000


@dataclass(slots=True, eq=False)
class StreamRecord:
    """What the log says about one stream, while it is open."""

    trace: str
    stream_id: str | None
    session: str | None
    start: int | None = None
    start_ts: float | None = None
    #: Which stream_start this was, in the order read (several inputs: merged by time).
    seq: int = 0
    #: The ids flush lines may name this stream by: stream_id (or request_id), and trace.
    keys: tuple[bytes, ...] = ()
    #: The first newer stream of the session to start while this one was open.
    newer_start: StreamRecord | None = None
    overlap_reported: bool = False
    cancelled: int | None = None
    cancel_ts: float | None = None
    fenced: bool = False
    #: The newer stream's registry wait saw it finish (a `prev_stream_finished_cleanly`
    #: naming it): done, whatever the time of its stream_end in another process's log.
    released: bool = False
    cleaned: bool = False
    first_emit: int | None = None
    post_cancel_flushes: int = 0
    final_flush_expected: bool = False
    last_post_cancel_flush: int | None = None

    @property
    def label(self) -> str:
        """How a finding names it: `stream t1 (session s1)`."""
        return f"stream {self.trace} (session {self.session})"


@dataclass(slots=True)
class UnprovenCleanup:
    """A stream that ended without recording some cleanup: a finding only if the log
    records that cleanup for other streams, which only the end of the input can tell."""

    record: StreamRecord
    ended: int
    missing_done: bool
    missing_cleaned: bool


def _no_time(ref: int) -> float | None:
    return None


def _one_input(ref: int) -> int:
    return 0


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


#: Streams whose cleanup_done=False waits for a later stream_cleanup_finished line.
LATE_CLEANUPS = 10_000


@dataclass(slots=True)
class LateCleanup:
    """A stream_end with cleanup_done other than True, waiting to be told it finished."""

    record: StreamRecord
    ended: int
    cleanup_done: str


class StreamEvents:
    """The handlers of every stream-level event (`handlers`), and the open streams they
    keep. Findings go to `findings` as they are judged; counts to `stats`."""

    #: Stream-level events with a handler (`_on_<name>`); scanners may skip the rest.
    HANDLED: frozenset[str] = frozenset(
        {
            "stream_start", "stream_cancelled", "stream_fenced", "event_buffers_cleaned",
            "flush_on_cleanup", "flush_on_end", "flush_cancelled", "flush_slow",
            "prev_stream_finished_cleanly", "prev_stream_timeout_on_cancel", "loop_blocked",
            "server_start", "loop_lag", "loop_recovered", "request_rejected", "stream_end",
            "registry_unavailable", "registry_recovered", "stream_cleanup_finished",
            "stream_queued",
        }
    )  # fmt: skip
    #: Events whose timestamp every line needs (stream age, cancel age). Others look
    #: theirs up only when a check needs it (`ts_at`): most stream ends never do.
    TIMED: frozenset[str] = frozenset({"stream_start", "stream_cancelled", "server_start"})

    def __init__(
        self, *, stats: Stats, flush: FlushState, fleet: Fleet, findings: CappedFindings
    ) -> None:
        self.stats = stats
        self.flush = flush
        self.fleet = fleet
        self.findings = findings
        self._by_trace: dict[str, StreamRecord] = {}
        self._by_rid: dict[bytes, StreamRecord] = {}
        self._open_by_session: dict[str, list[StreamRecord]] = {}
        #: The first prev_stream_timeout_on_cancel lines: the cancel_timeouts evidence.
        self.timeouts: list[int] = []
        #: The first cancel waits that took half the bound or more, and how many did.
        self.slow_waits: list[int] = []
        self.slow_wait_count = 0
        self.slow_wait_max_ms = 0
        #: Where the loop was stuck while a new prompt waited (from loop_blocked stacks),
        #: for the timeouts and for the slow waits.
        self.timeout_frames: list[str] = []
        self.slow_frames: list[str] = []
        #: Per input, the last loop_blocked: (its ref, the frame it names).
        self._last_blocked: dict[int, tuple[int, str]] = {}
        #: Inputs whose last watchdog line is a loop_blocked (no loop_recovered after it).
        self.loop_stuck: set[int] = set()
        #: Streams that ended without proving their cleanup (up to MAX_FINDINGS_PER_ID),
        #: and how many more did.
        self.unproven: list[UnprovenCleanup] = []
        self.unproven_dropped = 0
        #: Streams whose stream_end said cleanup_done=False, by stream id and by trace: a
        #: stream_cleanup_finished line may yet say the cleanup was slow, not skipped. What
        #: is left here at the end of the input never finished (at most LATE_CLEANUPS; past
        #: that, judged at once).
        self.late: dict[str, LateCleanup] = {}
        self.late_finished = 0
        #: Lines only a jarvis server writes (server_start, fences, registry lines).
        self.jarvis_lines = 0
        self.cancel_wait_s = rules.DEFAULT_CANCEL_WAIT_S
        #: (ref, process) of each server_start: the report labels files with them.
        self.origins: list[tuple[int, Origin]] = []
        #: The timestamp of the line at a ref, for the few checks that need one that
        #: was not parsed on the way (the runner sets it to read the sources).
        self.ts_at: Callable[[int], float | None] = _no_time
        #: The input (a process's file and its rotated set) of the line at a ref; the
        #: runner sets it when it reads several.
        self.input_of: Callable[[int], int] = _one_input
        #: Told of each stream as it opens and as it closes (at its stream_end, or when its
        #: process restarts): the timeline draws bars with this matching.
        self.on_open: StreamHook | None = None
        self.on_close: StreamHook | None = None
        #: name -> handler(fields, ref, ts) for every stream-level event acted on.
        self.handlers: dict[str, Handler] = {
            name: getattr(self, "_on_" + name) for name in self.HANDLED
        }

    @property
    def open_streams(self) -> list[StreamRecord]:
        return list(self._by_trace.values())

    def stream_of(self, fields: dict[str, str]) -> StreamRecord | None:
        """The open stream a line is about: by trace, stream_id or request_id, else by
        session when the line names nothing else and one stream of it is open."""
        trace = fields.get("trace")
        if trace is not None and trace in self._by_trace:
            return self._by_trace[trace]
        ids = [fields.get(k) for k in ("stream_id", "request_id", "trace")]
        for value in ids:
            if value:
                record = self._by_rid.get(value.encode())
                if record is not None:
                    return record
        session = fields.get("session")
        if session is not None and not any(ids):
            open_streams = self._open_by_session.get(session, ())
            if len(open_streams) == 1:
                return open_streams[0]
        return None

    def flushing(self, rid: bytes) -> StreamRecord | None:
        """The open stream whose flush lines name `rid`."""
        return self._by_rid.get(rid)

    def across(self, older: int | None, newer: int | None) -> str:
        """What it means that two streams of a session, started at these refs, ran in
        different processes ("" when they did not)."""
        if older is None or newer is None:
            return ""
        return self.fleet.across(self.input_of(older), self.input_of(newer))

    # -- told by the flush loop (FlushState's hooks) -----------------------------

    def first_emit(self, rid: bytes, ref: int) -> None:
        """The stream of `rid` wrote to its client for the first time, at `ref`."""
        record = self._by_rid.get(rid)
        if record is None or record.session is None:
            return
        record.first_emit = ref
        for other in self._open_by_session.get(record.session, ()):
            if other is record or other.seq > record.seq:
                continue
            finding = rules.concurrent_streams(other, record, emitted=ref, across=self.across)
            if finding is not None:
                other.overlap_reported = True
                self.findings.report(finding)
                return

    def flush_after_cancel(self, rid: bytes, ref: int) -> None:
        """A cancelled stream started a flush at `ref`: past the final flush its cleanup
        announced, each one counts against the cancel."""
        record = self.flush.cancelled[rid]
        if record.final_flush_expected:
            record.final_flush_expected = False
            return
        record.post_cancel_flushes += 1
        record.last_post_cancel_flush = ref

    # -- the handlers ------------------------------------------------------------

    def _on_stream_start(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        stream_id = fields.get("stream_id")
        trace = fields.get("trace")
        # An older server's flush lines name the stream_id (or, in the original server's
        # bare lines, the trace); today's `flush` names the trace.
        link = stream_id or fields.get("request_id") or trace
        keys = tuple(dict.fromkeys(k.encode() for k in (link, trace) if k))
        trace = trace or link or f"@{ref}"
        record = StreamRecord(
            trace, stream_id, fields.get("session"), start=ref, start_ts=ts, keys=keys
        )
        self.stats.streams += 1
        record.seq = self.stats.streams
        self._by_trace[trace] = record
        for key in keys:
            self._by_rid[key] = record
        if record.session is not None:
            self.stats.sessioned_streams += 1
            older = self._open_by_session.setdefault(record.session, [])
            for other in older:
                if other.newer_start is None:
                    other.newer_start = record
            older.append(record)
        if self.on_open is not None:
            self.on_open(record)

    def _on_stream_cancelled(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.cancels += 1
        record = self.stream_of(fields)
        if record is None or record.cancelled is not None:
            return
        record.cancelled = ref
        record.cancel_ts = ts
        for key in record.keys:
            self.flush.cancelled[key] = record

    def _on_stream_fenced(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.jarvis_lines += 1
        record = self.stream_of(fields)
        if record is not None:
            record.fenced = True

    def _on_event_buffers_cleaned(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.buffers_cleaned += 1
        record = self.stream_of(fields)
        if record is not None:
            record.cleaned = True

    def _expect_final_flush(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        rid = fields.get("request_id")
        if rid is not None:
            record = self.flush.cancelled.get(rid.encode())
            if record is not None:
                record.final_flush_expected = True

    _on_flush_on_cleanup = _expect_final_flush
    _on_flush_on_end = _expect_final_flush

    def _on_flush_slow(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        """A flush still writing when the watchdog looked: open until its `flush` line."""
        trace = fields.get("trace")
        if trace:
            self.flush.pending_start[trace.encode()] = ref

    def _on_flush_cancelled(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        rid = fields.get("request_id")
        if rid is not None:
            self.flush.pending_sched.pop(rid.encode(), None)

    def _cancel_wait(self, fields: dict[str, str]) -> int | None:
        self.stats.cancel_waits += 1
        waited = fields.get("waited_ms")
        if waited is None:  # the original server's lines may not say how long: no 0 ms made up
            return None
        self.stats.cancel_wait_ms.add(_int(waited))
        return _int(waited)

    def _blocked_while(self, ref: int, waited_ms: int | None) -> str | None:
        """The frame of a loop_blocked that this process logged while the cancel wait
        ending at `ref` ran (within `waited_ms` before it), if any."""
        blocked = self._last_blocked.get(self.input_of(ref))
        if blocked is None or waited_ms is None:
            return None
        at, frame = blocked
        blocked_ts, now = self.ts_at(at), self.ts_at(ref)
        if blocked_ts is None or now is None:
            return None
        return frame if now - waited_ms / 1000 - 0.05 <= blocked_ts <= now else None

    def _on_prev_stream_finished_cleanly(
        self, fields: dict[str, str], ref: int, ts: float | None
    ) -> None:
        waited = self._cancel_wait(fields)
        if waited is not None and waited >= rules.SLOW_CANCEL_SHARE * self.cancel_wait_s * 1000:
            self.slow_wait_count += 1
            self.slow_wait_max_ms = max(self.slow_wait_max_ms, waited)
            if len(self.slow_waits) < rules.TIMEOUTS_QUOTED:
                self.slow_waits.append(ref)
            frame = self._blocked_while(ref, waited)
            if frame is not None and len(self.slow_frames) < rules.TIMEOUTS_QUOTED:
                self.slow_frames.append(frame)
        # In a fleet the two streams are in two processes' logs, whose clocks may disagree
        # by more than the debounce: merged by time, the old stream's cancel and end can
        # come after the new one's first flush. The registry's word that it waited for
        # the old stream to finish (naming it) is the proof that they did not overlap.
        for trace in (fields.get("prev_trace") or "").split(","):
            record = self._by_trace.get(trace) if trace else None
            if record is not None:
                record.released = True

    def _on_prev_stream_timeout_on_cancel(
        self, fields: dict[str, str], ref: int, ts: float | None
    ) -> None:
        waited = self._cancel_wait(fields)
        self.stats.cancel_timeouts += 1
        if len(self.timeouts) < rules.TIMEOUTS_QUOTED:
            self.timeouts.append(ref)
        frame = self._blocked_while(ref, waited)
        if frame is not None and len(self.timeout_frames) < rules.TIMEOUTS_QUOTED:
            self.timeout_frames.append(frame)

    def _on_loop_blocked(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.loop_blocked += 1
        self.stats.watchdog_lines += 1
        self.loop_stuck.add(self.input_of(ref))
        self._last_blocked[self.input_of(ref)] = (ref, rules.blocked_frame(fields))
        self.findings.report(rules.loop_blocked(fields, ref))

    def _on_loop_recovered(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.watchdog_lines += 1
        self.loop_stuck.discard(self.input_of(ref))

    def _on_server_start(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.watchdog_lines += 1  # a jarvis server: its watchdog is running
        self.jarvis_lines += 1
        wait_ms = _int(fields.get("cancel_wait_ms"))
        if wait_ms > 0:
            self.cancel_wait_s = wait_ms / 1000
        flush_ms = fields.get("flush_ms")
        if flush_ms is not None:
            self.stats.flush_ms = _float(flush_ms)
        here = self.input_of(ref)
        self.fleet.started(here, fields.get("registry"))
        origin = Origin.of(fields)
        if origin is not None and len(self.origins) < MAX_ORIGINS:
            self.origins.append((ref, origin))
        # A restart ends whatever that process had open (another worker's streams run on):
        # judge those streams now, not against later ones.
        for record in list(self._by_trace.values()):
            if record.start is not None and self.input_of(record.start) != here:
                continue
            self.findings.report(rules.stream_not_ended(record, restarted=ref))
            self._close(record)
        for pending in (self.flush.pending_start, self.flush.pending_sched):
            for rid in [rid for rid, at in pending.items() if self.input_of(at) == here]:
                del pending[rid]
        outage = self.fleet.restarted(here)
        if outage is not None:
            self.findings.report(
                rules.registry_unavailable(self.fleet.registry_name(here), outage, restarted=ref)
            )

    def _on_loop_lag(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.watchdog_lines += 1
        self.stats.max_loop_lag_ms = max(self.stats.max_loop_lag_ms, _int(fields.get("max_lag_ms")))

    def _on_stream_queued(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        """A prompt waited for its session (`--on-busy queue`) and goes on: not a stream
        yet (its stream_start follows), and the streams it names had ended. Like the
        registry's word in `prev_stream_finished_cleanly`, that is the proof they did not
        overlap, whatever two processes' clocks say."""
        self.jarvis_lines += 1
        self.stats.queued += 1
        self.stats.queue_wait_ms.add(_int(fields.get("waited_ms")))
        for trace in (fields.get("prev_trace") or "").split(","):
            record = self._by_trace.get(trace) if trace else None
            if record is not None:
                record.released = True

    def _on_request_rejected(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.rejected += 1
        if fields.get("status") == "409":  # a busy session's policy at work, not a failure
            self.stats.busy_rejected += 1
        refused = fields.get("code") == "registry_unavailable" or fields.get("status") == "503"
        if refused and self.fleet.refused(self.input_of(ref), ref):
            self.stats.registry_refused += 1

    def _on_registry_unavailable(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.jarvis_lines += 1
        self.stats.registry_failures += 1
        here = self.input_of(ref)
        ended = self.fleet.unavailable(here, ref, fields.get("op"))
        if ended is not None:  # a new process starts down: the old one's outage ends here
            self.findings.report(
                rules.registry_unavailable(self.fleet.registry_name(here), ended, restarted=ref)
            )

    def _on_registry_recovered(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.jarvis_lines += 1
        self.stats.registry_outages += 1
        here = self.input_of(ref)
        outage = self.fleet.recovered(here)
        self.findings.report(
            rules.registry_unavailable(
                self.fleet.registry_name(here),
                outage,
                recovered=ref,
                down_ms=fields.get("down_ms"),
            )
        )

    def _on_stream_end(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        # One per stream: messages are formatted only when something is reported.
        record = self.stream_of(fields)
        stats = self.stats
        stats.ended[fields.get("reason", "unknown")] += 1
        duration = fields.get("duration_ms")
        cleanup_done = fields.get("cleanup_done")
        if cleanup_done is not None:
            stats.cleanup_recorded += 1
        if duration is not None:
            stats.durations_ms.add(_int(duration))
        elif record is not None and record.start_ts is not None:
            ts = self.ts_at(ref) if ts is None else ts
            if ts is not None:
                stats.durations_ms.add((ts - record.start_ts) * 1000)
        if record is None:
            return  # the log began after this stream started: nothing to check
        # Most streams end clean: each rule is asked only where it can find something.
        report, flush = self.findings.report, self.flush
        if cleanup_done is not None and cleanup_done != "True":
            self._cleanup_not_done(record, ref, cleanup_done)
        elif cleanup_done is None or not record.cleaned:
            self._unproven_cleanup(record, ref, cleanup_done is None, not record.cleaned)
        for key in record.keys:
            pending = flush.pending_sched.pop(key, None)
            if pending is not None:
                report(rules.flush_task_leak(record, pending, ref))
            stuck = flush.pending_start.pop(key, None)
            if stuck is not None:
                report(rules.flush_stuck(key, stuck, record=record, ended=ref))
        if record.cancelled is not None:
            report(rules.cancel_ignored(record, ended=ref))
        if record.newer_start is not None:
            report(
                rules.concurrent_streams(
                    record,
                    record.newer_start,
                    ended=ref,
                    ended_ts=ts,
                    ts_at=self.ts_at,
                    cancel_wait_s=self.cancel_wait_s,
                    across=self.across,
                )
            )
        self._close(record)

    def _cleanup_not_done(self, record: StreamRecord, ref: int, cleanup_done: str) -> None:
        """cleanup_done=False: a leak, unless a stream_cleanup_finished line follows (the
        token source's own cleanup outlived the cancel wait and then ended). Judged then,
        or at the end of the input."""
        if len(self.late) >= 2 * LATE_CLEANUPS:
            self.findings.report(rules.cleanup_incomplete(record, ref, cleanup_done=cleanup_done))
            return
        late = LateCleanup(record, ref, cleanup_done)
        for key in (record.stream_id, record.trace):
            if key:
                self.late[key] = late

    def _on_stream_cleanup_finished(
        self, fields: dict[str, str], ref: int, ts: float | None
    ) -> None:
        self.jarvis_lines += 1
        late = None
        for key in (fields.get("stream_id"), fields.get("trace")):
            if key and key in self.late:
                late = self.late.pop(key)
        if late is None:
            return  # its stream_end was before this log began, or it ended clean
        for key in (late.record.stream_id, late.record.trace):
            self.late.pop(key or "", None)
        self.late_finished += 1

    def late_cleanups(self) -> list[LateCleanup]:
        """The streams whose cleanup_done=False no stream_cleanup_finished has answered."""
        return list({id(late): late for late in self.late.values()}.values())

    # -- bookkeeping ---------------------------------------------------------------

    def _unproven_cleanup(
        self, record: StreamRecord, ref: int, missing_done: bool, missing_cleaned: bool
    ) -> None:
        if len(self.unproven) >= MAX_FINDINGS_PER_ID:
            self.unproven_dropped += 1
            return
        self.unproven.append(UnprovenCleanup(record, ref, missing_done, missing_cleaned))

    def _close(self, record: StreamRecord) -> None:
        if self.on_close is not None:
            self.on_close(record)
        if self._by_trace.get(record.trace) is record:
            del self._by_trace[record.trace]
        flush = self.flush
        for key in record.keys:
            if self._by_rid.get(key) is record:
                del self._by_rid[key]
            flush.emitted.discard(key)
            flush.cancelled.pop(key, None)
        if record.session is not None:
            open_streams = self._open_by_session.get(record.session)
            if open_streams is not None:
                if record in open_streams:
                    open_streams.remove(record)
                if not open_streams:
                    del self._open_by_session[record.session]
