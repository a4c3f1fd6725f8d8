"""Rebuild every stream's lifecycle from log events and check the invariants.

The `Analyzer` is fed events in log order. Flush events, the bulk of a log,
go through three small methods that do a couple of dict operations each (for
logfmt, `feed_logfmt` inlines them: a C loop, `_hotscan.c`, where it was
built, else its Python twin, `flushes.feed_logfmt_python`, the reference; both
read and write only a `FlushState`); stream-level events go through
`event()`. A stream's record lives only while the stream is open: at
`stream_end` it is checked and dropped, so memory is bounded by open streams,
not by the size of the log. References to lines are integers (`ref`),
resolved to file:line and text only for what is reported, in one sorted
sweep (`Sources.resolve_findings`).

Several inputs (one per worker or host) arrive merged by time (`merge.py`): the
analyzer learns which input a line came from (`input_of`) where a process's own
lifecycle matters (a restart ends only that process's streams, a blocked loop is
one process's) and to say when two streams of a session ran in different processes.

It judges with what the log has. Flush lines find their stream by the id its
`stream_start` carried: `stream_id`, else `request_id`, else `trace` (in the
seeds' vocabulary a flush's `request_id` is the trace). A check that needs a field the
log never writes (`cleanup_done`, `event_buffers_cleaned`) is not applicable
rather than failed; it fails only streams that lack what others record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .engine import C_FEED_LOGFMT, ENGINES, default_engine
from .findings import Finding, FindingId
from .origins import Origin
from .flushes import FlushState, feed_logfmt_python
from .patterns import EVENT_NAMES, line_ts
from .stats import Stats

#: Flushes a healthy stream may still start after its cancel: one timer flush that was
#: already due, and the cleanup flush of what was left.
POST_CANCEL_FLUSH_ALLOWANCE = 2
#: A flush_start this old with no flush_done at the end of the input is stuck.
FLUSH_STUCK_AFTER_S = 1.0
#: Per finding id, how many findings keep their own evidence (the rest are counted).
MAX_FINDINGS_PER_ID = 50
#: A stream-level event's handler: (its fields, the ref of its line, its timestamp).
Handler = Callable[[dict[str, str], int, float | None], None]
#: How long a cancelled stream may take to end once its successor started, when the log
#: does not say (jarvis's `server_start cancel_wait_ms`): the seeds' 2 s.
DEFAULT_CANCEL_WAIT_S = 2.0
#: server_start lines whose process is remembered for the report's labels.
MAX_ORIGINS = 1000
#: What a server_start says of an in-process registry (no shared registry).
MEMORY_REGISTRY = "memory"


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
    #: The id flush lines name this stream by: stream_id, else request_id, else trace.
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


@dataclass(slots=True)
class _Unproven:
    """A stream that ended without recording some cleanup: a finding only if the log
    records that cleanup for other streams (known at the end of input)."""

    record: StreamRecord
    refs: list[int | None]
    missing_done: bool
    missing_cleaned: bool


@dataclass(slots=True)
class _Outage:
    """One process's view of the shared registry being down, from its first
    `registry_unavailable` on (each process logs its own)."""

    first: int
    last: int
    failures: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    first_refused: int | None = None

    def summary(self) -> str:
        ops = ", ".join(f"{op} {n}" for op, n in self.ops.most_common())
        return (
            f"{self.failures} failed registry operation(s) ({ops}); "
            f"{self.refused} prompt(s) refused with 503"
        )


def _no_time(ref: int) -> float | None:
    return None


def _one_input(ref: int) -> int:
    return 0


def _label(record: StreamRecord) -> str:
    return f"stream {record.trace} (session {record.session})"


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


class Analyzer:
    """Feeds on events in order; `finish()` returns the findings."""

    #: Stream-level events with a handler (`_on_<name>`); scanners may skip the rest.
    HANDLED: frozenset[str] = frozenset(
        {
            "stream_start", "stream_cancelled", "stream_fenced", "event_buffers_cleaned",
            "flush_on_cleanup", "flush_on_end", "flush_cancelled",
            "prev_stream_finished_cleanly", "prev_stream_timeout_on_cancel", "loop_blocked",
            "server_start", "loop_lag", "loop_recovered", "request_rejected", "stream_end",
            "registry_unavailable", "registry_recovered",
        }
    )  # fmt: skip
    #: Events whose timestamp every line needs (stream age, cancel age). Others look
    #: theirs up only when a check needs it (`ts_at`): most stream ends never do.
    TIMED: frozenset[str] = frozenset({"stream_start", "stream_cancelled", "server_start"})

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
        self.findings: list[Finding] = []
        self.suppressed: Counter[FindingId] = Counter()
        self._per_id: Counter[FindingId] = Counter()
        self._by_trace: dict[str, StreamRecord] = {}
        self._by_rid: dict[bytes, StreamRecord] = {}
        self._open_by_session: dict[str, list[StreamRecord]] = {}
        self._timeouts: list[int] = []
        #: Inputs whose last watchdog line is a loop_blocked (no loop_recovered after it).
        self._loop_stuck: set[int] = set()
        #: Per input, the registry outage going on (registry_unavailable, not recovered).
        self._outages: dict[int, _Outage] = {}
        #: Per input, the registry its last server_start named (`memory`, `redis://…`).
        self._registry: dict[int, str] = {}
        #: Whether the log shows a registry shared by processes (a fleet).
        self.shared_registry = False
        #: (ref, process) of each server_start: the report labels files with them.
        self.origins: list[tuple[int, Origin]] = []
        self._unproven: list[_Unproven] = []
        self._unproven_dropped = 0
        #: Lines only a jarvis server writes (server_start, fences, watchdog).
        self._jarvis_lines = 0
        self.cancel_wait_s = DEFAULT_CANCEL_WAIT_S
        self.last_ts: float | None = None
        #: The timestamp of the line at a ref, for the few checks that need one that
        #: was not parsed on the way (the runner sets it to read the sources).
        self.ts_at: Callable[[int], float | None] = _no_time
        #: The input (a process's file and its rotated set) of the line at a ref; the
        #: runner sets it when it reads several.
        self.input_of: Callable[[int], int] = _one_input
        #: How a finding lists its lines: file order, or (several inputs) merged by time.
        self.order_refs: Callable[[Iterable[int]], list[int]] = sorted
        #: Told of each stream as it opens and as it closes (at its stream_end, or when its
        #: process restarts): the timeline draws bars with the analyzer's own matching.
        self.on_open: Callable[[StreamRecord], None] | None = None
        self.on_close: Callable[[StreamRecord], None] | None = None
        #: name -> handler(fields, ref, ts) for every stream-level event acted on.
        self.handlers: dict[str, Handler] = {
            name: getattr(self, "_on_" + name) for name in self.HANDLED
        }
        self.flush.on_first_emit = self._first_emit
        self.flush.on_flush_after_cancel = self._after_cancel_flush

    # -- the flush lines ----------------------------------------------------

    def flush_scheduled(self, rid: bytes, ref: int) -> None:
        self.flush.flush_scheduled(rid, ref)

    def flush_start(self, rid: bytes, ref: int) -> None:
        self.flush.flush_start(rid, ref)

    def flush_done(self, rid: bytes, tokens: int, ref: int) -> None:
        self.flush.flush_done(rid, tokens, ref)

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
                self.flush, chunk, base, handlers, timed, parse_fields, EVENT_NAMES, line_ts
            )
        return feed_logfmt_python(self.flush, chunk, base, handlers, timed, parse_fields)

    # -- stream-level events ----------------------------------------------

    def event(self, name: str, fields: dict[str, str], ref: int, ts: float | None) -> None:
        """Any event other than the three hot flush events."""
        if ts is not None:
            self.last_ts = ts
        handler = self.handlers.get(name)
        if handler is not None:
            handler(fields, ref, ts)

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

    def _on_stream_start(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        stream_id = fields.get("stream_id")
        trace = fields.get("trace")
        # The seeds' flush lines name the trace when there is no stream_id.
        link = stream_id or fields.get("request_id") or trace
        keys = (link.encode(),) if link else ()
        trace = trace or link or f"@{ref}"
        record = StreamRecord(
            trace, stream_id, fields.get("session"), start=ref, start_ts=ts, keys=keys
        )
        self.stats.streams += 1
        record.seq = self.stats.streams
        self._by_trace[trace] = record
        if keys:
            self._by_rid[keys[0]] = record
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
        self._jarvis_lines += 1
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

    def _on_flush_cancelled(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        rid = fields.get("request_id")
        if rid is not None:
            self.flush.pending_sched.pop(rid.encode(), None)

    def _cancel_wait(self, fields: dict[str, str]) -> None:
        self.stats.cancel_waits += 1
        waited = fields.get("waited_ms")
        if waited is not None:  # the seeds' lines may not say how long: no 0 ms made up
            self.stats.cancel_wait_ms.add(_int(waited))

    def _on_prev_stream_finished_cleanly(
        self, fields: dict[str, str], ref: int, ts: float | None
    ) -> None:
        self._cancel_wait(fields)
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
        self._cancel_wait(fields)
        self.stats.cancel_timeouts += 1
        if len(self._timeouts) < 5:
            self._timeouts.append(ref)

    def _on_loop_blocked(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.loop_blocked += 1
        self.stats.watchdog_lines += 1
        self._loop_stuck.add(self.input_of(ref))
        lag = fields.get("lag_ms", "?")
        self._report(
            FindingId.LOOP_BLOCKED,
            f"the event loop did not answer for {lag} ms; stuck in: "
            f"{fields.get('stack', '?').split(' <- ')[0]}",
            [ref],
        )

    def _on_loop_recovered(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.watchdog_lines += 1
        self._loop_stuck.discard(self.input_of(ref))

    def _on_server_start(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.watchdog_lines += 1  # a jarvis server: its watchdog is running
        self._jarvis_lines += 1
        wait_ms = _int(fields.get("cancel_wait_ms"))
        if wait_ms > 0:
            self.cancel_wait_s = wait_ms / 1000
        here = self.input_of(ref)
        registry = fields.get("registry")
        if registry:
            self._registry[here] = registry
            self.shared_registry |= registry != MEMORY_REGISTRY
        origin = Origin.of(fields)
        if origin is not None and len(self.origins) < MAX_ORIGINS:
            self.origins.append((ref, origin))
        # A restart ends whatever that process had open (another worker's streams run on):
        # judge those streams now, not against later ones.
        for record in list(self._by_trace.values()):
            if record.start is not None and self.input_of(record.start) != here:
                continue
            self._report(
                FindingId.STREAM_NOT_ENDED,
                f"stream {record.trace} (session {record.session}) never ended before the "
                "server restarted",
                [record.start, ref],
                record,
            )
            self._close(record)
        for pending in (self.flush.pending_start, self.flush.pending_sched):
            for rid in [rid for rid, at in pending.items() if self.input_of(at) == here]:
                del pending[rid]
        outage = self._outages.pop(here, None)  # a new process: its own registry state
        if outage is not None:
            self._report(
                FindingId.REGISTRY_UNAVAILABLE,
                f"{self._registry_name(here)} stopped answering and had not recovered when "
                f"the process restarted: {outage.summary()}",
                [outage.first, outage.first_refused, outage.last, ref],
            )

    def _on_loop_lag(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.watchdog_lines += 1
        self.stats.max_loop_lag_ms = max(self.stats.max_loop_lag_ms, _int(fields.get("max_lag_ms")))

    def _on_request_rejected(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self.stats.rejected += 1
        outage = self._outages.get(self.input_of(ref))
        if outage is not None and (
            fields.get("code") == "registry_unavailable" or fields.get("status") == "503"
        ):
            self.stats.registry_refused += 1
            outage.refused += 1
            if outage.first_refused is None:
                outage.first_refused = ref

    def _on_registry_unavailable(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self._jarvis_lines += 1
        self.shared_registry = True
        self.stats.registry_failures += 1
        outage = self._outages.setdefault(self.input_of(ref), _Outage(ref, ref))
        outage.last = ref
        outage.failures += 1
        outage.ops[fields.get("op") or "?"] += 1

    def _on_registry_recovered(self, fields: dict[str, str], ref: int, ts: float | None) -> None:
        self._jarvis_lines += 1
        self.shared_registry = True
        self.stats.registry_outages += 1
        here = self.input_of(ref)
        outage = self._outages.pop(here, None)
        down = fields.get("down_ms")
        length = f" for {down} ms" if down else ""
        what = f"{self._registry_name(here)} was unreachable{length}, then recovered"
        if outage is None:  # the log began during the outage
            what += " (down since before the log)"
            self._report(FindingId.REGISTRY_UNAVAILABLE, what, [ref])
            return
        self._report(
            FindingId.REGISTRY_UNAVAILABLE,
            f"{what}: {outage.summary()}",
            [outage.first, outage.first_refused, outage.last, ref],
        )

    def _registry_name(self, here: int) -> str:
        name = self._registry.get(here)
        return "the shared registry" + (f" {name}" if name and name != MEMORY_REGISTRY else "")

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
        if cleanup_done is not None and cleanup_done != "True":
            self._report(
                FindingId.CLEANUP_INCOMPLETE,
                f"{_label(record)} ended without cleanup_done=True (cleanup_done={cleanup_done})",
                [record.start, ref],
                record,
            )
        elif cleanup_done is None or not record.cleaned:
            self._unproven_cleanup(record, ref, cleanup_done is None, not record.cleaned)
        for key in record.keys:
            pending = self.flush.pending_sched.pop(key, None)
            if pending is not None:
                self._report(
                    FindingId.FLUSH_TASK_LEAK,
                    f"{_label(record)} ended with a scheduled flush never run nor cancelled",
                    [pending, ref],
                    record,
                )
            stuck = self.flush.pending_start.pop(key, None)
            if stuck is not None:
                self._report(
                    FindingId.FLUSH_STUCK,
                    f"{_label(record)} ended with a flush_start that never got its flush_done",
                    [stuck, ref],
                    record,
                )
        if record.cancelled is not None:
            self._check_cancel_ignored(record, ref)
        self._check_overlap(record, ref, ts)
        self._close(record)

    # -- checks ---------------------------------------------------------------

    def _after_cancel_flush(self, rid: bytes, ref: int) -> None:
        record = self.flush.cancelled[rid]
        if record.final_flush_expected:
            record.final_flush_expected = False
            return
        record.post_cancel_flushes += 1
        record.last_post_cancel_flush = ref

    def _check_cancel_ignored(self, record: StreamRecord, end_ref: int | None) -> None:
        if record.cancelled is None or record.post_cancel_flushes <= POST_CANCEL_FLUSH_ALLOWANCE:
            return
        refs = [record.cancelled, record.last_post_cancel_flush]
        if end_ref is not None:
            refs.append(end_ref)
        self._report(
            FindingId.CANCEL_IGNORED,
            f"stream {record.trace} (session {record.session}) started "
            f"{record.post_cancel_flushes} more flushes after stream_cancelled",
            refs,
            record,
        )

    def _unproven_cleanup(
        self, record: StreamRecord, ref: int, missing_done: bool, missing_cleaned: bool
    ) -> None:
        if len(self._unproven) >= MAX_FINDINGS_PER_ID:
            self._unproven_dropped += 1
            return
        self._unproven.append(_Unproven(record, [record.start, ref], missing_done, missing_cleaned))

    def _check_overlap(self, record: StreamRecord, end_ref: int, end_ts: float | None) -> None:
        """At a stream's end: did it run on beside a newer stream of its session?

        Read from the stream ends only when neither stream's flushes are in the log:
        flushes say who emitted while the other was open (`_first_emit`), which is
        more exact (a newer stream may wait, unregistered, for this one to end).
        Healthy is the supersede: cancelled, and ended within the cancel wait of its
        successor's start (or no timestamps to say otherwise), or fenced off.
        """
        newer = record.newer_start
        if newer is None or record.fenced or record.released or record.overlap_reported:
            return
        if record.first_emit is not None or newer.first_emit is not None:
            return
        since = newer.start_ts
        if end_ts is None:
            end_ts = self.ts_at(end_ref)
        overlap = None if end_ts is None or since is None else end_ts - since
        if record.cancelled is not None:
            if overlap is None or overlap <= self.cancel_wait_s:
                return
            detail = (
                f"was cancelled but ended {overlap:.1f} s after the newer stream {newer.trace} "
                f"started, past the {self.cancel_wait_s:g} s cancel wait"
            )
        else:
            detail = f"was never cancelled and ran on after the newer stream {newer.trace} started"
            if overlap is not None:
                detail += f" ({overlap:.1f} s side by side)"
            detail += self._across(record.start, newer.start)
        self._report(
            FindingId.CONCURRENT_STREAMS,
            f"session {record.session}: stream {record.trace} {detail}",
            [record.start, newer.start, end_ref],
            record,
        )

    def _first_emit(self, rid: bytes, ref: int) -> None:
        record = self._by_rid.get(rid)
        if record is None or record.session is None:
            return
        record.first_emit = ref
        for other in self._open_by_session.get(record.session, ()):
            if other is record or other.fenced or other.released:
                continue
            if other.seq > record.seq:
                continue
            other.overlap_reported = True
            self._report(
                FindingId.CONCURRENT_STREAMS,
                f"session {record.session}: stream {record.trace} emitted while the "
                f"older stream {other.trace} was still open and not fenced"
                + self._across(other.start, record.start),
                [other.start, other.first_emit, record.start, ref],
                record,
            )
            return

    def _across(self, older: int | None, newer: int | None) -> str:
        """What it means that two streams of a session ran in different processes."""
        if older is None or newer is None:
            return ""
        a, b = self.input_of(older), self.input_of(newer)
        if a == b:
            return ""
        registries = {self._registry.get(a), self._registry.get(b)}
        if MEMORY_REGISTRY in registries:
            return (
                "; they ran in two processes (two log inputs), one at least with its registry "
                "in memory, so neither knew of the other's stream: a fleet needs one shared "
                "registry (--registry redis://…)"
            )
        if len(registries) == 1 and None not in registries:
            return f"; they ran in two processes sharing the registry {registries.pop()}"
        return "; they ran in two processes (two log inputs)"

    def _close(self, record: StreamRecord) -> None:
        if self.on_close is not None:
            self.on_close(record)
        if self._by_trace.get(record.trace) is record:
            del self._by_trace[record.trace]
        for key in record.keys:
            if self._by_rid.get(key) is record:
                del self._by_rid[key]
            self.flush.emitted.discard(key)
            self.flush.cancelled.pop(key, None)
        if record.session is not None:
            open_streams = self._open_by_session.get(record.session)
            if open_streams is not None:
                if record in open_streams:
                    open_streams.remove(record)
                if not open_streams:
                    del self._open_by_session[record.session]

    def _finding(
        self,
        finding_id: FindingId,
        message: str,
        refs: list[int | None],
        record: StreamRecord | None = None,
    ) -> Finding:
        return Finding(
            finding_id,
            message,
            session=record.session if record else None,
            trace=record.trace if record else None,
            refs=self.order_refs({r for r in refs if r is not None}),
        )

    def _report(
        self,
        finding_id: FindingId,
        message: str,
        refs: list[int | None],
        record: StreamRecord | None = None,
    ) -> None:
        if self._per_id[finding_id] >= MAX_FINDINGS_PER_ID:
            self.suppressed[finding_id] += 1
            return
        self._per_id[finding_id] += 1
        self.findings.append(self._finding(finding_id, message, refs, record))

    def judge_open(self, now: float | None, ts_of: Callable[[int], float | None]) -> list[Finding]:
        """Findings about what is still open at `now`, without changing any state.

        `--follow` calls this on every refresh; `finish()` once at the end.
        """
        judged: list[Finding] = []
        for record in self._by_trace.values():
            age = None if now is None or record.start_ts is None else now - record.start_ts
            if record.cancelled is not None and (
                record.post_cancel_flushes > POST_CANCEL_FLUSH_ALLOWANCE
            ):
                judged.append(
                    self._finding(
                        FindingId.CANCEL_IGNORED,
                        f"stream {record.trace} (session {record.session}) started "
                        f"{record.post_cancel_flushes} more flushes after stream_cancelled",
                        [record.cancelled, record.last_post_cancel_flush],
                        record,
                    )
                )
            elif age is not None and age > self.stale_after_s:
                kind = FindingId.STREAM_NOT_ENDED
                detail = f"open for {age:.1f} s with no stream_end"
                if record.cancelled is not None:
                    kind = FindingId.CANCEL_IGNORED
                    detail = "was cancelled and never ended"
                judged.append(
                    self._finding(
                        kind,
                        f"stream {record.trace} (session {record.session}) {detail}",
                        [record.start, record.cancelled, record.first_emit],
                        record,
                    )
                )
        for rid, ref in self.flush.pending_start.items():
            started = ts_of(ref)
            old = now is None or started is None or now - started >= FLUSH_STUCK_AFTER_S
            if old or self.input_of(ref) in self._loop_stuck:
                judged.append(
                    self._finding(
                        FindingId.FLUSH_STUCK,
                        f"flush_start for {rid.decode(errors='replace')} never got its flush_done",
                        [ref],
                        self._by_rid.get(rid),
                    )
                )
        for here, outage in self._outages.items():
            since = self.ts_at(outage.first)
            length = "" if now is None or since is None else f", {now - since:.1f} s after"
            judged.append(
                self._finding(
                    FindingId.REGISTRY_UNAVAILABLE,
                    f"{self._registry_name(here)} stopped answering and had not recovered by "
                    f"the end of the log (no registry_recovered{length}): {outage.summary()}",
                    [outage.first, outage.first_refused, outage.last],
                )
            )
        return judged

    def judge_totals(self) -> list[Finding]:
        """Findings about the run as a whole (cancel timeouts, batching)."""
        judged: list[Finding] = []
        stats = self.stats
        if stats.cancel_timeouts:
            waits = stats.cancel_wait_ms
            judged.append(
                self._finding(
                    FindingId.CANCEL_TIMEOUTS,
                    f"{stats.cancel_timeouts} new prompt(s) timed out waiting for the previous "
                    f"stream's cleanup (waited p50 {waits.quantile(0.5):.0f} ms, "
                    f"max {waits.max:.0f} ms)",
                    list(self._timeouts),
                )
            )
        judged += self._judge_cleanup()
        if stats.flushes >= 20 and stats.scheduled == 0 and stats.multi_token_flushes == 0:
            judged.append(
                self._finding(
                    FindingId.NO_BATCHING,
                    f"{stats.flushes} flushes, every one of a single token, and no flush_scheduled",
                    [],
                )
            )
        return judged

    def _judge_cleanup(self) -> list[Finding]:
        """The streams that lack cleanup the log records for others."""
        done, cleaned = self.stats.cleanup_recorded > 0, self.stats.buffers_cleaned > 0
        judged: list[Finding] = []
        for unproven in self._unproven:
            missing = [
                name
                for name, lacks in (
                    ("cleanup_done=True", unproven.missing_done and done),
                    ("event_buffers_cleaned", unproven.missing_cleaned and cleaned),
                )
                if lacks
            ]
            if missing:
                judged.append(
                    self._finding(
                        FindingId.CLEANUP_INCOMPLETE,
                        f"{_label(unproven.record)} ended without {' nor '.join(missing)}",
                        unproven.refs,
                        unproven.record,
                    )
                )
        return judged

    @property
    def cleanup_applies(self) -> bool:
        """Whether the log records cleanup at all (else the cleanup check cannot judge)."""
        return self.stats.cleanup_recorded > 0 or self.stats.buffers_cleaned > 0

    @property
    def jarvis_log(self) -> bool:
        """Whether a jarvis server wrote the log (lines no other server writes)."""
        return self._jarvis_lines > 0 or self.stats.watchdog_lines > 0

    def finish(self, end_ts: float | None, ts_of: Callable[[int], float | None]) -> None:
        """End of input: judge what is still open against the last timestamp seen."""
        now = end_ts if end_ts is not None else self.last_ts
        for finding in self.judge_open(now, ts_of) + self.judge_totals():
            if self._per_id[finding.id] >= MAX_FINDINGS_PER_ID:
                self.suppressed[finding.id] += 1
                continue
            self._per_id[finding.id] += 1
            self.findings.append(finding)
        if self._unproven_dropped and self.cleanup_applies:
            self.suppressed[FindingId.CLEANUP_INCOMPLETE] += self._unproven_dropped

    @property
    def open_streams(self) -> list[StreamRecord]:
        return list(self._by_trace.values())
