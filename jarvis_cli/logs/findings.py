"""Findings: what the lifecycle reconstruction can prove is wrong, with evidence."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: Per finding id, how many findings keep their own evidence (the rest are counted).
MAX_FINDINGS_PER_ID = 50


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class FindingId(enum.StrEnum):
    """Stable finding ids (part of the JSON contract)."""

    LOOP_BLOCKED = "loop_blocked"
    FLUSH_STUCK = "flush_stuck"
    STREAM_NOT_ENDED = "stream_not_ended"
    CONCURRENT_STREAMS = "concurrent_streams"
    CANCEL_IGNORED = "cancel_ignored"
    CANCEL_TIMEOUTS = "cancel_timeouts"
    CLEANUP_INCOMPLETE = "cleanup_incomplete"
    FLUSH_TASK_LEAK = "flush_task_leak"
    NO_BATCHING = "no_batching"
    REGISTRY_UNAVAILABLE = "registry_unavailable"
    #: Streams with a stream_start and no stream_end when the log ends, not (yet) old
    #: enough to be stream_not_ended: still running, or the start of a hang.
    STREAMS_OPEN = "streams_open"
    #: New prompts that waited long (half the cancel wait or more) for the previous
    #: stream's cleanup, and still got it in time: slow, not yet a timeout.
    SLOW_CANCELS = "slow_cancels"


SEVERITY: dict[FindingId, Severity] = {
    FindingId.LOOP_BLOCKED: Severity.ERROR,
    FindingId.FLUSH_STUCK: Severity.ERROR,
    FindingId.STREAM_NOT_ENDED: Severity.ERROR,
    FindingId.CONCURRENT_STREAMS: Severity.ERROR,
    FindingId.CANCEL_IGNORED: Severity.ERROR,
    FindingId.CANCEL_TIMEOUTS: Severity.WARNING,
    FindingId.CLEANUP_INCOMPLETE: Severity.ERROR,
    FindingId.FLUSH_TASK_LEAK: Severity.ERROR,
    FindingId.NO_BATCHING: Severity.WARNING,
    FindingId.REGISTRY_UNAVAILABLE: Severity.ERROR,
    FindingId.STREAMS_OPEN: Severity.WARNING,
    FindingId.SLOW_CANCELS: Severity.WARNING,
}

REMEDY: dict[FindingId, str] = {
    FindingId.LOOP_BLOCKED: (
        "Something blocks the event loop (time.sleep, threading.Lock, sync I/O in async "
        "code). The stack in the evidence names the frame: make it async or move it to a "
        "thread with asyncio.to_thread."
    ),
    FindingId.FLUSH_STUCK: (
        "A flush started and never finished: the flush path is blocked (a threading.Lock "
        "and time.sleep on the loop, as with --fault blocking-flush). Use `await "
        "asyncio.sleep` for the debounce and no lock held across an await."
    ),
    FindingId.STREAM_NOT_ENDED: (
        "A stream never reached stream_end: its finally did not run or hangs. Put cleanup "
        "in finally/cancellation handling, bound every await in it, and make sure the "
        "body runs even when the client leaves before the first byte."
    ),
    FindingId.CONCURRENT_STREAMS: (
        "Two streams of one session emitted at once. Register a new prompt only after "
        "cancelling the old stream and waiting (bounded) for its cleanup; fence a stream "
        "that overruns the wait so it cannot emit after its successor starts."
    ),
    FindingId.CANCEL_IGNORED: (
        "A stream kept flushing (or never ended) after stream_cancelled. Check the cancel "
        "event on every iteration of the producer and wait on it together with the token "
        "source, so a slow source cannot hide the cancel."
    ),
    FindingId.CANCEL_TIMEOUTS: (
        "The previous stream's cleanup overran the cancel wait. Choosing the bound: 1.0 s "
        "is faster but risks overlap if cleanup is slow, 2.0 s balances, 3-5 s is "
        "permissive; better, find what makes cleanup slow. Alert if this recurs."
    ),
    FindingId.CLEANUP_INCOMPLETE: (
        "A stream ended without full cleanup (no cleanup_done=True or no "
        "event_buffers_cleaned). Call cleanup_request_buffers(request_id) and the "
        "registry pop in the generator's finally, then log cleanup_done=True."
    ),
    FindingId.FLUSH_TASK_LEAK: (
        "A scheduled flush task was still pending when its stream ended and was never "
        "cancelled. Cancel the pending flush task in cleanup (cleanup_flush_task)."
    ),
    FindingId.NO_BATCHING: (
        "Tokens flow one per flush and no flush is ever scheduled: batching is off or "
        "broken. Debounce (75 ms) so the first token of a batch schedules the flush."
    ),
    FindingId.REGISTRY_UNAVAILABLE: (
        "The shared registry (Redis) was unreachable: prompts were refused with 503 during "
        "that time (streams already running finished). Check Redis: is it up and reachable "
        "from every worker (address, network, auth, maxclients), and what stalled it (its "
        "log, SLOWLOG, memory, persistence)? Each worker logs its own outage: the evidence "
        "names the file, hence the worker, that saw it."
    ),
    FindingId.STREAMS_OPEN: (
        "Streams were still open when the log ends. If the server was still streaming when "
        "the log was read, read it again once they finish; if they never end, their finally "
        "does not run or hangs (stream_not_ended after --stale-after)."
    ),
    FindingId.SLOW_CANCELS: (
        "The previous stream's cleanup took half the cancel wait or more: a little slower "
        "and new prompts time out waiting (cancel_timeouts). Where the evidence names a "
        "frame (the watchdog's loop_blocked stack while the new prompt waited), that code "
        "blocks the loop: make it async or move it to a thread."
    ),
}


#: The same remedies for a log a jarvis server did not write: they speak of the user's
#: code, since jarvis's functions and flags are not theirs.
REMEDY_FOR_YOUR_SERVER: dict[FindingId, str] = {
    **REMEDY,
    FindingId.FLUSH_STUCK: (
        "A flush started and never finished: the code that writes a batch to the client "
        "blocks. In async code, debounce with `await asyncio.sleep`, never time.sleep, and "
        "hold no threading.Lock (nor any lock) across an await."
    ),
    FindingId.CONCURRENT_STREAMS: (
        "Two streams of one session ran at once. Cancel the previous stream of the session "
        "before registering the new one, and wait for it to finish, bounded (asyncio.wait "
        "with a timeout: unlike wait_for it does not cancel what it waits on); if it "
        "overruns the wait, stop it from writing before the new one starts."
    ),
    FindingId.CANCEL_IGNORED: (
        "A stream kept producing (or never ended) after it was cancelled. In the "
        "generator, check the cancel signal on every iteration and wait on it together "
        "with the token source, so a slow source cannot hide the cancel."
    ),
    FindingId.CLEANUP_INCOMPLETE: (
        "A stream ended without the cleanup that other streams record. In the generator's "
        "finally, release the stream's buffers, its pending flush task and its registry "
        "entry, then log stream_end with cleanup_done=True."
    ),
    FindingId.FLUSH_TASK_LEAK: (
        "A scheduled flush task was still pending when its stream ended and was never "
        "cancelled. Cancel the stream's pending flush task in its cleanup."
    ),
}


#: Why cleanup cannot be judged in a log that never records it, and what to log.
CLEANUP_UNJUDGED = (
    "no stream_end in this log carries cleanup_done: log cleanup_done=True in stream_end "
    "once the stream's buffers and registry entry are released (or event_buffers_cleaned) "
    "to have cleanup judged"
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One log line that proves part of a finding."""

    file: str
    line: int
    text: str

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "text": self.text}


@dataclass(slots=True)
class Finding:
    """One problem, with the smallest set of lines that proves it."""

    id: FindingId
    message: str
    evidence: list[Evidence] = field(default_factory=list)
    session: str | None = None
    trace: str | None = None
    #: Line references still to resolve into `evidence` (see `Sources.resolve_findings`).
    refs: list[int] = field(default_factory=list)
    #: Whether a jarvis server wrote the log: the remedy names jarvis's code, else yours.
    jarvis_log: bool = True

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.id]

    @property
    def remedy(self) -> str:
        return (REMEDY if self.jarvis_log else REMEDY_FOR_YOUR_SERVER)[self.id]

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id.value,
            "severity": self.severity.label,
            "message": self.message,
            "session": self.session,
            "trace": self.trace,
            "evidence": [e.to_json() for e in self.evidence],
            "remedy": self.remedy,
        }


class CappedFindings:
    """The findings of one analysis, in the order they were judged: up to
    MAX_FINDINGS_PER_ID of each id are kept, the rest only counted (`suppressed`), so a
    log with a fault in every stream costs no more memory than one with fifty."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []
        self.suppressed: Counter[FindingId] = Counter()
        self._kept: Counter[FindingId] = Counter()
        #: How a finding lists its lines: file order, or (several inputs) merged by time.
        self.order_refs: Callable[[Iterable[int]], list[int]] = sorted

    def settle(self, finding: Finding) -> Finding:
        """`finding` with its lines listed once each, in order."""
        finding.refs = self.order_refs(set(finding.refs))
        return finding

    def report(self, finding: Finding | None) -> None:
        """Keep `finding`, or count it past its id's limit; None (no finding) is ignored.
        Lines are put in order only for what is kept: that can read the sources."""
        if finding is None:
            return
        if self._kept[finding.id] >= MAX_FINDINGS_PER_ID:
            self.suppressed[finding.id] += 1
            return
        self._kept[finding.id] += 1
        self.findings.append(self.settle(finding))
